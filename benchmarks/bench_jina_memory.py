"""Peak memory and time of one jina-embeddings-v2-small-en forward pass: native vs eager.

Architecture of small-en (hidden 512, 4 layers, 8 heads, intermediate 2048, vocab 30528) with
random weights; one input (batch 1, no padding) of 512, 2048 and 8192 tokens. Implementations:

- ``native``: searchkit.embedding.jinabert (SDPA, query blocks, ALiBi template views);
- ``sdpa-full``: the same module with slicing off (one [1, H, L, L] ALiBi mask per forward);
- ``eager``: a plain eager JinaBERT in this file, written like the remote code
  (bias + mask [1, H, L, L] built per forward; fp32 scores, softmax, probs @ V per layer).

Every measurement runs in a fresh subprocess: build the model, warm up on 16 tokens, reset the
process's peak RSS (``/proc/self/clear_refs``), run one forward and report the peak RSS over the
RSS just before it (what the forward itself added); then time a second, warm forward of the same
input. Median of --runs processes.

    python benchmarks/bench_jina_memory.py [--runs 3] [--lengths 512 2048 8192] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("native", "sdpa-full", "eager")


def eager_forward(sd, cfg, ids, mask):
    """Plain eager JinaBERT, from the state dict (the reference the native module replaces)."""
    import torch
    import torch.nn.functional as F

    B, L = ids.shape
    D, H, I, eps = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps
    d = D // H
    from searchkit.embedding.jinabert import alibi_slopes

    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.token_type_embeddings.weight"][torch.zeros_like(ids)]
    x = F.layer_norm(x, (D,), sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"], eps)
    pos = torch.arange(L)
    alibi = -alibi_slopes(H)[:, None, None] * (pos[None, :] - pos[:, None]).abs()  # [H,L,L]
    bias = alibi[None] + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # [B,H,L,L]
    del alibi
    for n in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{n}."
        q = F.linear(x, sd[p + "attention.self.query.weight"], sd[p + "attention.self.query.bias"]).view(B, L, H, d).transpose(1, 2)
        k = F.linear(x, sd[p + "attention.self.key.weight"], sd[p + "attention.self.key.bias"]).view(B, L, H, d).transpose(1, 2)
        v = F.linear(x, sd[p + "attention.self.value.weight"], sd[p + "attention.self.value.bias"]).view(B, L, H, d).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2))  # [B,H,L,L] fp32
        scores = scores / math.sqrt(d)
        scores = scores + bias
        probs = torch.softmax(scores, dim=-1)
        del scores
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(B, L, D)
        del probs
        a = F.linear(ctx, sd[p + "attention.output.dense.weight"], sd[p + "attention.output.dense.bias"])
        x = F.layer_norm(a + x, (D,), sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"], eps)
        g = F.linear(x, sd[p + "mlp.gated_layers.weight"])
        h = F.gelu(g[..., :I]) * g[..., I:]
        o = F.linear(h, sd[p + "mlp.wo.weight"], sd[p + "mlp.wo.bias"])
        x = F.layer_norm(o + x, (D,), sd[p + "mlp.layernorm.weight"], sd[p + "mlp.layernorm.bias"], eps)
    return x


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(impl: str, L: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from searchkit.embedding.jinabert import JinaBertConfig, JinaBertModel

    torch.manual_seed(0)
    cfg = JinaBertConfig()  # small-en
    model = JinaBertModel(cfg).eval().requires_grad_(False)
    if impl == "sdpa-full":
        model.block_elems = 2**62
    sd = model.state_dict()
    run = (lambda i, m: eager_forward(sd, cfg, i, m)) if impl == "eager" else model
    with torch.inference_mode():
        warm = torch.randint(5, cfg.vocab_size, (1, 16))
        run(warm, torch.ones_like(warm))
        ids = torch.randint(5, cfg.vocab_size, (1, L))
        mask = torch.ones_like(ids)
        base = _rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS to the current RSS
                f.write("5")
            reset = True
        except OSError:
            reset = False
        t0 = time.perf_counter()
        out = run(ids, mask)
        first = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert out.shape == (1, L, cfg.hidden_size) and bool(torch.isfinite(out).all())
        del out
        t0, c0 = time.perf_counter(), time.process_time()
        run(ids, mask)  # warm: shapes seen, allocator and pages primed
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"impl": impl, "L": L, "seconds": seconds, "cpu": cpu, "first": first, "peak_mb": peak, "base_mb": base,
            "reset": reset}


def measure(impl: str, L: int, runs: int) -> dict:
    results = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, __file__, "--worker", impl, str(L)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{impl} L={L} failed:\n{proc.stderr[-3000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  {impl:9s} L={L:5d}: {r['seconds']:.2f} s (cpu {r['cpu']:.2f} s), +{r['peak_mb'] - r['base_mb']:.0f} MB",
              file=sys.stderr, flush=True)
    return {
        "seconds": statistics.median(r["seconds"] for r in results),
        "first": statistics.median(r["first"] for r in results),
        "cpu": statistics.median(r["cpu"] for r in results),
        "added_mb": statistics.median(r["peak_mb"] - r["base_mb"] for r in results),
        "peak_mb": statistics.median(r["peak_mb"] for r in results),
        "reset": all(r["reset"] for r in results),
    }


def machine_info() -> str:
    import torch

    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()} {platform.release()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("IMPL", "L"), help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    ap.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return

    load_before = os.getloadavg()[0]
    rows = {(impl, L): measure(impl, L, args.runs) for L in args.lengths for impl in args.impls}
    load_after = os.getloadavg()[0]
    lines = [
        "## jina-embeddings-v2-small-en architecture: one input, CPU, fp32",
        "",
        f"Machine: {machine_info()}. Load average (1 min) {load_before:.1f} before, {load_after:.1f} after: "
        "other processes shared the CPUs, so times are indicative; memory figures are not affected.",
        "",
        f"Median of {args.runs} runs, each in a fresh process. *Time* = wall time of a warm forward (second call "
        "on the same input); *CPU time* = the process's CPU seconds for it (all threads; steadier than wall time "
        "when other processes compete for the cores); *first call* = the cold forward's wall time. *Added* = peak RSS during the first forward minus the RSS just "
        "before it (model weights, about 130 MB, and the torch runtime excluded); *peak RSS* = the process's "
        "peak from that forward's start.",
        "",
        "| tokens | implementation | added memory (MB) | peak RSS (MB) | memory vs eager | time (s) | CPU time (s) | CPU time vs eager | first call (s) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for L in args.lengths:
        eager = rows.get(("eager", L))
        for impl in args.impls:
            r = rows[(impl, L)]
            mem = f"{r['added_mb'] / eager['added_mb']:.2f}×" if eager else "-"
            cpu = f"{r['cpu'] / eager['cpu']:.2f}×" if eager else "-"
            lines.append(f"| {L} | {impl} | {r['added_mb']:.0f} | {r['peak_mb']:.0f} | {mem} | {r['seconds']:.2f} | "
                         f"{r['cpu']:.2f} | {cpu} | {r['first']:.2f} |")
    if not all(r["reset"] for r in rows.values()):
        lines += ["", "Note: the peak RSS could not be reset before the forward; *added* includes model building."]
    lines += ["", "Implementations: `native` = searchkit.embedding.jinabert (SDPA over query blocks, ALiBi "
              "template views); `sdpa-full` = the same with slicing off (one [1, H, L, L] mask, which stays cached "
              "between calls, so its warm time leaves out building it); `eager` = plain softmax(QKᵀ/√d + bias)V "
              "with fp32 [1, H, L, L] scores, as the remote code does.",
              "Command: `python benchmarks/bench_jina_memory.py" + (f" --runs {args.runs}" if args.runs != 3 else "") + "`", ""]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
