"""Ingest throughput of the Ray executor against the local one, side by side in one run.

Each repeat indexes the same git_whatis pages into fresh folders, in a rotating order:

- ``local``: ``ingest.executor: local`` (the model in this process, as ``searchkit index``);
- ``ray-1`` / ``ray-2``: ``ingest.executor: ray`` with 1 and 2 model actors on a local Ray
  cluster that is already running (its start-up is timed once, apart: ``ray_start_s``).

Each Ray run includes starting its actors and loading the model in each, as every
``searchkit index --executor ray`` does. Throughput counts the documents' content tokens.

    HF_HUB_OFFLINE=1 python3 benchmarks/bench_ray.py [--docs 60] [--repeats 2] [--cpus 2]
    HF_HUB_OFFLINE=1 python3 benchmarks/bench_ray.py --gpus 1      # actors on GPUs (gpus_per_worker: 1)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sets sys.path and the offline environment)
from common import eval_texts, machine, median

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, IngestConfig, ModelConfig, RayConfig  # noqa: E402


def run_once(records: list[dict], config: Config) -> tuple[float, int]:
    folder = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        start = time.perf_counter()
        with SearchIndex.open(folder, dataclasses.replace(config, index=str(folder)), create=True) as ix:
            report = ix.add_records(records)
        return time.perf_counter() - start, report.tokens
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray worker")
    parser.add_argument("--device", default="cpu", help="model.device for the local executor")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()

    import ray

    records = [{"id": key, "text": text} for key, text in eval_texts("git_whatis", args.docs)]
    start = time.perf_counter()
    ray.init(num_cpus=args.cpus, num_gpus=1 if args.gpus else None, include_dashboard=False,
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                                       "HF_HUB_OFFLINE": "1"}})
    ray_start = time.perf_counter() - start

    model = ModelConfig(name=args.model, device=args.device)
    variants = {"local": Config(model=model)}
    for n in (int(w) for w in args.workers.split(",")):
        variants[f"ray-{n}"] = Config(
            model=dataclasses.replace(model, device="cuda" if args.gpus else "cpu"),
            ingest=IngestConfig(executor="ray"),
            ray=RayConfig(workers=n, cpus_per_worker=1.0, gpus_per_worker=args.gpus))
    # Untimed: the first build with model.runtime auto exports the ONNX model; do it before the clock.
    run_once(records[:2], variants["local"])
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    tokens = 0
    names = list(variants)
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            secs, tokens = run_once(records, variants[name])
            seconds[name].append(secs)
            print(f"repeat {repeat} {name}: {secs:.1f} s, {tokens / secs:,.0f} tokens/s", flush=True)
    result = {
        "machine": machine(), "docs": len(records), "tokens": tokens,
        "ray_start_s": round(ray_start, 2),
        "seconds_median": {k: round(median(v), 2) for k, v in seconds.items()},
        "tokens_per_s": {k: round(tokens / median(v)) for k, v in seconds.items()},
        "vs_local": {k: round(median(seconds["local"]) / median(v), 2) for k, v in seconds.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
