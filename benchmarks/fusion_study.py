"""Offline study of hybrid fusion rules over the evidence dumped by ``fusion_dump.py``.

Every rule ranks the same candidates the product sees for a query (the union of each list's
top ``--depth``), and every learned rule is scored leave-one-set-out: fitted on the other
sets, scored on the held-out one. See benchmarks/README.md ("Fusion study") for the protocol.

    python3 benchmarks/fusion_study.py DUMP_DIR [--sets git_whatis,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from searchkit.retrieval import fusion  # noqa: E402

SETS = ("git_whatis", "man_whatis", "pg_refpurpose", "passkey_sotu_512w", "passkey_sotu_2048w",
        "passkey_sotu_8192w", "passkey_sotu_32768w")
# Columns of a dump's ``feats``: document cosine, best late chunk cosine, document BM25,
# best chunk BM25.
COLUMN = {"dense": 0, "late": 1, "keyword": 2, "chunk_keyword": 3}


@dataclass
class Batch:
    """One set's queries as padded candidate arrays (what the product sees, per query)."""

    name: str
    scores: np.ndarray    # (Q, C, L) list scores with floors
    present: np.ndarray   # (Q, C, L)
    tops: np.ndarray      # (Q, L, depth)
    sizes: np.ndarray     # (Q, L)
    mask: np.ndarray      # (Q, C) a real candidate
    rel: np.ndarray       # (Q, C) grade of each candidate
    exact: np.ndarray     # (Q, C, 4) exact dump features of each candidate
    n_rel: np.ndarray     # (Q,) relevant documents of the query (in or out of the candidates)
    n_terms: np.ndarray   # (Q,)
    ideal: np.ndarray     # (Q,) DCG@10 of the ideal ranking over the whole set
    target: float = 0.0   # the best fixed rule's nDCG@10 on this set minus MARGIN (the goal)


def top_lists(data, lists: tuple[str, ...], depth: int,
              chunk_depth: int) -> list[dict[str, dict[int, float]]]:
    """Each query's candidate lists as the product builds them: top ``depth`` per list (BM25
    lists: only documents that match a term); the late list is each document's best among
    the top ``chunk_depth`` chunks by vector."""
    feats = data["feats"]
    out = []
    for q in range(feats.shape[0]):
        found = {}
        if "late" in lists:
            late: dict[int, float] = {}
            for d, v in zip(data["chunk_top_doc"][q, :chunk_depth], data["chunk_top_score"][q, :chunk_depth]):
                late.setdefault(int(d), float(v))
            found["late"] = late
        for name in (n for n in lists if n != "late"):
            col = feats[q, :, COLUMN[name]]
            idx = np.argsort(-col, kind="stable")[:depth]
            if name in ("keyword", "chunk_keyword"):
                idx = idx[col[idx] > 0]
            found[name] = {int(i): float(col[i]) for i in idx}
        out.append(found)
    return out


# What the product reads (searchkit/retrieval/searcher.py), each switchable to what it read
# before: every candidate's own best late chunk (--late exact) or only the documents with a
# chunk in the top chunk list (--late list, the rest at its floor); the passage stage's BM25
# of the best window of two adjacent chunks (--passage window), of the best single chunk
# (chunk), or the better of the two (max).
LATE_EXACT = [True]
PASSAGE = ["window"]


def load(path: Path, lists: tuple[str, ...], depth: int, chunk_depth: int) -> Batch:
    data = np.load(path)
    feats, rel = data["feats"], data["rel"]
    per_query = [fusion.gather(found, depth, lists)
                 for found in top_lists(data, lists, depth, chunk_depth)]
    q, c, width = len(per_query), max(len(e.ids) for e in per_query), len(lists)
    scores = np.zeros((q, c, width))
    present = np.zeros((q, c, width), dtype=bool)
    mask = np.zeros((q, c), dtype=bool)
    grades = np.zeros((q, c))
    exact = np.zeros((q, c, 4))
    for row, ev in enumerate(per_query):
        n = len(ev.ids)
        scores[row, :n], present[row, :n], mask[row, :n] = ev.scores, ev.present, True
        grades[row, :n] = rel[row, ev.ids]
        exact[row, :n] = feats[row, ev.ids]
        if PASSAGE[0] != "chunk":
            # The passage stage reads the best two-chunk window instead of the best chunk,
            # or the better of the two.
            window = data["window_bm25"][row, ev.ids]
            col = COLUMN["chunk_keyword"]
            exact[row, :n, col] = window if PASSAGE[0] == "window" else \
                np.maximum(window, exact[row, :n, col])
        if LATE_EXACT[0] and "late" in lists:
            # Every candidate's own best chunk, not only those with a chunk in the top list.
            scores[row, :n, lists.index("late")] = feats[row, ev.ids, COLUMN["late"]]
    return Batch(path.stem, scores, present, np.stack([e.tops for e in per_query]),
                 np.stack([e.sizes for e in per_query]), mask, grades, exact,
                 (rel > 0).sum(1), data["n_terms"], ideal_dcg(rel))


def ideal_dcg(rel: np.ndarray) -> np.ndarray:
    best = np.sort(rel, axis=1)[:, ::-1][:, :10].astype(float)
    return ((2 ** best - 1) / np.log2(np.arange(2, 2 + best.shape[1]))).sum(1)


# -- metrics ---------------------------------------------------------------------------------

def measure(batch: Batch, score: np.ndarray) -> dict[str, float]:
    """nDCG@10 and recall@1 of a (Q, C) score matrix (ties: candidate order)."""
    s = np.where(batch.mask, score, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :10]
    gains = np.take_along_axis(batch.rel, order, 1)
    gains = np.where(np.take_along_axis(batch.mask, order, 1), gains, 0.0)
    disc = 1.0 / np.log2(np.arange(2, 2 + order.shape[1]))
    dcg = ((2 ** gains - 1) * disc).sum(1)
    ndcg = np.where(batch.ideal > 0, dcg / np.maximum(batch.ideal, 1e-12), 0.0)
    r1 = (gains[:, 0] > 0) / np.maximum(batch.n_rel, 1)
    return {"ndcg10": float(ndcg.mean()), "recall1": float(r1.mean())}


# -- fixed rules ----------------------------------------------------------------------------

def col(batch: Batch, lists: tuple[str, ...], name: str) -> int:
    return lists.index(name)


def rule_single(name: str) -> Callable:
    def rule(batch: Batch, lists: tuple[str, ...]) -> np.ndarray:
        return batch.exact[:, :, COLUMN[name]] if name not in ("keyword", "chunk_keyword") \
            else batch.scores[:, :, col(batch, lists, name)]
    return rule


def rule_weighted(w: float, dense: str = "dense") -> Callable:
    """The old default: (1 - w)·cosine + w·BM25 / best BM25, floors for missing candidates."""
    def rule(batch: Batch, lists: tuple[str, ...]) -> np.ndarray:
        d = batch.scores[:, :, col(batch, lists, dense)] if dense in lists else dense_rerank(batch)
        k = batch.scores[:, :, col(batch, lists, "keyword")]
        top = batch.tops[:, col(batch, lists, "keyword"), :1]
        return (1 - w) * d + w * np.where(top > 0, k / np.maximum(top, 1e-12), 0.0)
    return rule


def dense_rerank(batch: Batch, chunk_weight: float = 0.5) -> np.ndarray:
    """searchkit's ``--rerank late``: the document-vector list rescored with each document's
    best chunk (averaged); documents outside that list get the lowest rescored value."""
    inside = batch.present[:, :, 0]
    value = (1 - chunk_weight) * batch.exact[:, :, 0] + chunk_weight * batch.exact[:, :, 1]
    floor = np.where(inside, value, np.inf).min(1, keepdims=True)
    return np.where(inside, value, floor - 1e-6)


def rule_rrf(names: tuple[str, ...], k: int = 60, weights: tuple[float, ...] | None = None) -> Callable:
    def rule(batch: Batch, lists: tuple[str, ...]) -> np.ndarray:
        total = np.zeros(batch.mask.shape)
        for j, name in enumerate(names):
            c = col(batch, lists, name)
            s = np.where(batch.present[:, :, c], batch.scores[:, :, c], -np.inf)
            ranks = np.argsort(np.argsort(-s, axis=1, kind="stable"), axis=1) + 1
            w = weights[j] if weights else 1.0
            total += np.where(batch.present[:, :, c], w / (k + ranks), 0.0)
        return total
    return rule


# -- learned rules --------------------------------------------------------------------------

# Feature sets tried by the study; "full" is the shipped one.
SPECS = ("fixed", "own", "full", "rank", "rankfull")


def features(scores: np.ndarray, present: np.ndarray, tops: np.ndarray, sizes: np.ndarray,
             spec: str = "full", names: tuple[str, ...] = fusion.LISTS) -> np.ndarray:
    """Per-candidate features ``(..., n, F)`` of the linear fusion model.

    Leading dimensions are batch dimensions (the study scores many queries at once; a search
    passes one). The base features are each list's score on a common footing: cosines as they
    are, BM25 divided by the list's best. ``fixed`` stops there (a fixed linear mix);
    ``own`` multiplies each base feature by its own list's confidence (the gap between its
    first and second and its first and last score); ``full`` by every list's confidence and
    by whether the lists agree on their first candidate. ``rank`` adds each candidate's
    reciprocal rank in each list (0 when missing), and ``rankfull`` does both.
    """
    width = scores.shape[-1]
    kw = [j for j, name in enumerate(names) if name.endswith("keyword")]
    top1 = tops[..., 0]
    base = scores.copy()
    norm = tops.copy()
    for j in kw:
        best = top1[..., j]
        safe = np.where(best > 0, best, 1.0)
        base[..., j] = np.where(best[..., None] > 0, scores[..., j] / safe[..., None], 0.0)
        norm[..., j, :] = np.where(best[..., None] > 0, tops[..., j, :] / safe[..., None], 0.0)
    parts = [base]
    if spec in ("rank", "rankfull"):
        masked = np.where(present, scores, -np.inf)
        ranks = np.argsort(np.argsort(-masked, axis=-2, kind="stable"), axis=-2, kind="stable")
        parts.append(np.where(present, 1.0 / (ranks + 1.0), 0.0))
    grid = np.concatenate(parts, -1)
    if spec in ("fixed", "rank"):
        return grid
    gap1 = norm[..., 0] - norm[..., 1]                       # (..., L)
    gap_last = norm[..., 0] - norm[..., -1]                  # (..., L)
    if spec == "own":
        return np.concatenate([grid, base * gap1[..., None, :], base * gap_last[..., None, :]], -1)
    first = np.argmax(np.where(present, scores, -np.inf), axis=-2)  # (..., L) row of each list's top
    has = sizes > 0
    agree = [((first[..., a] == first[..., b]) & has[..., a] & has[..., b]).astype(float)
             for a in range(width) for b in range(a + 1, width)]
    conf = np.concatenate([gap1, gap_last, np.stack(agree, -1)], -1)   # (..., K)
    inter = grid[..., :, None] * conf[..., None, None, :]                 # (..., n, G, K)
    return np.concatenate([grid, inter.reshape(*inter.shape[:-2], -1)], -1)



def design(batch: Batch, spec: str) -> np.ndarray:
    return features(batch.scores, batch.present, batch.tops, batch.sizes, spec)


def fit(batches: list[Batch], spec: str, l2: float) -> np.ndarray:
    """Weights maximising the softmax likelihood of the relevant candidates (listwise), each
    training set weighing the same in total, each of its queries alike."""
    xs, ys, ms, ws = [], [], [], []
    for b in batches:
        x = design(b, spec)
        keep = (b.rel > 0).any(1)
        xs.append(x[keep])
        ys.append(b.rel[keep] > 0)
        ms.append(b.mask[keep])
        ws.append(np.full(keep.sum(), 1.0 / max(keep.sum(), 1) / len(batches)))
    width = max(x.shape[1] for x in xs)
    x = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in xs])
    y = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in ys])
    m = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in ms])
    w = np.concatenate(ws)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        s = np.where(m, x @ theta, -np.inf)
        top = s.max(1, keepdims=True)
        e = np.where(m, np.exp(s - top), 0.0)
        p = e / e.sum(1, keepdims=True)
        sp = np.where(y, s, -np.inf)
        ep = np.where(y, np.exp(sp - sp.max(1, keepdims=True)), 0.0)
        py = ep / ep.sum(1, keepdims=True)
        lse_all = top[:, 0] + np.log(e.sum(1))
        lse_pos = sp.max(1) + np.log(np.where(y, np.exp(sp - sp.max(1, keepdims=True)), 0).sum(1))
        value = float((w * (lse_all - lse_pos)).sum() + l2 * theta @ theta)
        grad = np.einsum("q,qcf,qc->f", w, x, p - py) + 2 * l2 * theta
        return value, grad

    theta0 = np.zeros(x.shape[2])
    theta0[:3] = 1.0
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x


def leave_one_out(batches: dict[str, Batch], spec: str, l2: float) -> dict[str, dict[str, float]]:
    out = {}
    for name, held in batches.items():
        theta = fit([b for n, b in batches.items() if n != name], spec, l2)
        out[name] = measure(held, design(held, spec) @ theta)
    return out


GRID = {"late_share": (0.0, 0.25, 0.5), "kw_low": (0.1, 0.15, 0.2, 0.25),
        "kw_high": (0.5, 0.7, 0.9), "kw_gap": (0.1, 0.15, 0.2, 0.25, 0.3),
        "vector_gap_scale": (0.0, 2.0, 5.0)}


# The objective: mean nDCG@10 over the training sets (each weighing the same), less
# REGRET[0] times the mean shortfall below each training set's goal (its best fixed rule minus
# MARGIN). 0, the shipped fit, is the plain mean; 5 was tried (BENCHMARKS.md): it moved which
# set falls short, not by how much.
MARGIN = 0.005
REGRET = [0.0]   # the weight (a list: --regret-weight sets it)


def objective(values: list[float], batches: list[Batch]) -> float:
    shortfall = [max(0.0, b.target - v) for v, b in zip(values, batches)]
    return float(np.mean(values) - REGRET[0] * np.mean(shortfall))


# Weight of each query's score margin in the fitting objective (--margin-weight): where nDCG@10
# is flat (sets at their ceiling), prefer the rule that puts the relevant document further
# ahead of the best other one.
MARGIN_WEIGHT = [0.0]


def fit_value(b: Batch, score: np.ndarray) -> float:
    """What the fit maximises for one set: nDCG@10, plus MARGIN_WEIGHT times the mean margin of
    the best relevant candidate over the best other one (clipped to ±0.1)."""
    value = measure(b, score)["ndcg10"]
    if MARGIN_WEIGHT[0]:
        s = np.where(b.mask, score, -np.inf)
        rel = np.where(b.rel > 0, s, -np.inf).max(1)
        other = np.where(b.rel > 0, -np.inf, s).max(1)
        ok = np.isfinite(rel) & np.isfinite(other)
        value += MARGIN_WEIGHT[0] * float(np.clip(rel[ok] - other[ok], -0.1, 0.1).mean()) if ok.any() else 0.0
    return value


def grid_search(batches: list[Batch], second: dict | None = None,
                head: int = 20) -> tuple[dict[str, float], float]:
    """The gated-rule parameters with the best :func:`objective` over ``batches`` (each set alike),
    with the passage stage ``second`` applied after it when given."""
    import itertools
    best, best_value = {}, -1.0
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values))
        value = objective([fit_value(b, two_stage(b, params, second, head) if second else
                                     fusion.gated(b.scores, b.tops, **params))
                           for b in batches], batches)
        if value > best_value:
            best, best_value = params, value
    return best, best_value


HEAD_GRID = {"low": (0.0, 0.1, 0.2, 0.4), "high": (0.0, 0.2, 0.4, 0.8, 1.6),
             "centre": (0.05, 0.1, 0.2, 0.3)}


def head_mask(first: np.ndarray, mask: np.ndarray, head: int) -> np.ndarray:
    """The top ``head`` candidates of each query by the first-stage score."""
    order = np.argsort(-np.where(mask, first, -np.inf), axis=1, kind="stable")[:, :head]
    out = np.zeros(mask.shape, dtype=bool)
    np.put_along_axis(out, order, True, 1)
    return out & mask


def two_stage(b: Batch, params: dict, second: dict, head: int) -> np.ndarray:
    first = fusion.gated(b.scores, b.tops, **params)
    return fusion.head_boost(first, b.exact[:, :, 3], head_mask(first, b.mask, head), **second,
                             softness=params.get("softness", 0.03))


def head_search(batches: list[Batch], params: dict, head: int) -> dict[str, float]:
    import itertools
    best, best_value = {}, -1.0
    firsts = [(b, fusion.gated(b.scores, b.tops, **params)) for b in batches]
    heads = [head_mask(f, b.mask, head) for b, f in firsts]
    for values in itertools.product(*HEAD_GRID.values()):
        second = dict(zip(HEAD_GRID, values))
        if second["high"] < second["low"]:
            continue
        value = objective([fit_value(b, fusion.head_boost(f, b.exact[:, :, 3], h, **second,
                                                          softness=params.get("softness", 0.03)))
                           for (b, f), h in zip(firsts, heads)], batches)
        if value > best_value:
            best, best_value = second, value
    return best


def fit_two_stage(batches: list[Batch], head: int) -> tuple[dict, dict]:
    """Both stages by coordinate ascent: the first stage alone, the passage stage given it,
    then the first stage again given the passage stage, and the passage stage once more."""
    params, _ = grid_search(batches)
    second = head_search(batches, params, head)
    params, _ = grid_search(batches, second, head)
    return params, head_search(batches, params, head)


def gated_rows(batches: dict[str, Batch], head: int) -> dict[str, dict[str, dict[str, float]]]:
    loso, loso2 = {}, {}
    for name, held in batches.items():
        if len(batches) < 2:
            break
        train = [b for n, b in batches.items() if n != name]
        params, _ = grid_search(train)
        loso[name] = {**measure(held, fusion.gated(held.scores, held.tops, **params)),
                      "params": params}
        joint, second = fit_two_stage(train, head)
        loso2[name] = {**measure(held, two_stage(held, joint, second, head)),
                       "params": {**joint, **second}}
        print(f"  held out {name}: {loso2[name]}", file=sys.stderr)
    first_only, _ = grid_search(list(batches.values()))
    params, second = fit_two_stage(list(batches.values()), head)
    print(f"gated: parameters fitted on all sets {params} {second}", file=sys.stderr)
    rows = {"gated, all sets": {n: measure(b, fusion.gated(b.scores, b.tops, **first_only))
                                for n, b in batches.items()},
            "gated + chunk BM25 head, all sets": {n: measure(b, two_stage(b, params, second, head))
                                                  for n, b in batches.items()}}
    if loso:
        rows["gated LOSO"] = loso
        rows["gated + chunk BM25 head LOSO"] = loso2
    return rows


def selected_rows(variants: dict[str, tuple[dict[str, Batch], int]]
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """Like :func:`gated_rows` (the two-stage rule only) over several variants, each a set of
    batches and a head size (dump folders that differ only in their passage windows, e.g. the
    weight of adjacent query-word pairs; or another head): each fold also picks the variant
    whose fit scores best on its training sets, so the held-out set plays no part in that
    choice either; the shipped fit picks it over all sets. Ties go to the variant given first."""
    names = list(next(iter(variants.values()))[0])

    def fitted(batches: list[Batch], head: int) -> tuple[float, dict, dict]:
        joint, second = fit_two_stage(batches, head)
        value = objective([fit_value(b, two_stage(b, joint, second, head)) for b in batches], batches)
        return value, joint, second

    loso = {}
    for name in names:
        best = None
        for label, (batches, head) in variants.items():
            value, joint, second = fitted([b for n, b in batches.items() if n != name], head)
            if best is None or value > best[0] + 1e-12:
                best = (value, label, joint, second)
        _, label, joint, second = best
        held, head = variants[label][0][name], variants[label][1]
        loso[name] = {**measure(held, two_stage(held, joint, second, head)),
                      "params": {**joint, **second}, "variant": label}
        print(f"  held out {name}: {loso[name]}", file=sys.stderr)
    best = None
    for label, (batches, head) in variants.items():
        value, joint, second = fitted(list(batches.values()), head)
        print(f"  all sets, {label}: objective {value:.5f}", file=sys.stderr)
        if best is None or value > best[0] + 1e-12:
            best = (value, label, joint, second)
    _, label, joint, second = best
    batches, head = variants[label]
    print(f"gated: parameters fitted on all sets, variant {label}: {joint} {second}", file=sys.stderr)
    return {"gated + chunk BM25 head, all sets": {n: measure(b, two_stage(b, joint, second, head))
                                                  for n, b in batches.items()},
            "gated + chunk BM25 head LOSO": loso}


def loso_verdict(table: dict, name: str, target: float) -> str:
    row = table.get("gated + chunk BM25 head LOSO", {}).get(name)
    if row is None:
        return "-"
    return f"{'met' if row['ndcg10'] >= target - 1e-9 else 'missed'} ({row['ndcg10'] - target:+.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dumps", type=Path, help="folder of <set>.npz from fusion_dump.py")
    parser.add_argument("--variants", default="",
                        help="comma-separated dump folders that differ from DUMPS only in their "
                             "passage windows: each fold (and the shipped fit) picks the variant "
                             "that fits its training sets best")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--depth", type=int, default=50, help="candidates per list (search.rerank_depth)")
    parser.add_argument("--chunk-depth", type=int, default=0,
                        help="documents of the top N chunks by vector join the candidates (the "
                             "late list; 0, the product since 2026-12-03: none)")
    parser.add_argument("--head", type=int, default=20,
                        help="first-stage candidates whose chunks get BM25 scores")
    parser.add_argument("--heads", default="",
                        help="comma-separated head sizes: each fold (and the shipped fit) picks "
                             "the one that fits its training sets best (with --variants: every "
                             "pair of folder and head)")
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--regret-weight", type=float, default=REGRET[0],
                        help="weight of the shortfall below each set's target (0: plain mean)")
    parser.add_argument("--specs", default="")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--shipped", action="store_true",
                        help="score the shipped numbers (fusion.SHIPPED) and the fixed rules only")
    parser.add_argument("--softness", default="",
                        help="comma-separated gate widths to add to the grid (default: 0.03 only)")
    parser.add_argument("--margin-weight", type=float, default=MARGIN_WEIGHT[0],
                        help="weight of the relevant document's score margin in the fit")
    parser.add_argument("--late", choices=("exact", "list"), default="exact",
                        help="every candidate's own best late-chunk cosine, or only the late "
                             "list's documents (the rest at its floor)")
    parser.add_argument("--passage", choices=("chunk", "window", "max"), default="window",
                        help="passage BM25 of the best chunk, of the best two adjacent chunks, "
                             "or the better of the two")
    args = parser.parse_args()
    LATE_EXACT[0] = args.late == "exact"
    MARGIN_WEIGHT[0] = args.margin_weight
    if args.softness:
        GRID["softness"] = tuple(float(v) for v in args.softness.split(","))
    PASSAGE[0] = args.passage
    lists = fusion.LISTS
    names = [s for s in args.sets.split(",") if (args.dumps / f"{s}.npz").exists()]
    start = time.perf_counter()
    batches = {n: load(args.dumps / f"{n}.npz", lists, args.depth, args.chunk_depth) for n in names}
    print(f"loaded {', '.join(names)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    rules = {
        "bm25": rule_single("keyword"),
        "dense (doc-long)": rule_single("dense"),
        "late-long": rule_single("late"),
        "rerank late": lambda b, l: dense_rerank(b),
        "hybrid weighted 0.2 (old default)": rule_weighted(0.2),
        "hybrid weighted 0.2 over rerank": rule_weighted(0.2, dense="rerank"),
        "rrf dense+keyword": rule_rrf(("dense", "keyword")),
        "rrf dense+late+keyword": rule_rrf(("dense", "late", "keyword")),
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label, rule in rules.items():
        table[label] = {n: measure(b, rule(b, lists)) for n, b in batches.items()}
    REGRET[0] = args.regret_weight
    for n, b in batches.items():   # each set's goal, from its own fixed rules
        b.target = max(table[label][n]["ndcg10"] for label in rules) - MARGIN
    if args.shipped:
        # Score the numbers in searchkit/retrieval/fusion.py as they are: no fitting, so a
        # set none of them was fitted on is a held-out test.
        w = fusion.SHIPPED
        first = dict(late_share=w.late_share, kw_low=w.keyword_low, kw_high=w.keyword_high,
                     kw_gap=w.keyword_gap, vector_gap_scale=w.vector_gap_scale)
        second = dict(low=w.passage_low, high=w.passage_high, centre=w.passage_gap)
        table["adaptive, shipped numbers"] = {n: measure(b, two_stage(b, first, second, w.head))
                                              for n, b in batches.items()}
        args.specs = ""
    elif args.variants or args.heads:
        folders = {str(args.dumps): batches}
        for folder in (Path(v) for v in args.variants.split(",") if v):
            folders[str(folder)] = {n: load(folder / f"{n}.npz", lists, args.depth, args.chunk_depth)
                                    for n in names}
        heads = [int(h) for h in args.heads.split(",")] if args.heads else [args.head]
        table.update(selected_rows({f"{folder} head {head}": (loaded, head)
                                    for folder, loaded in folders.items() for head in heads}))
    else:
        table.update(gated_rows(batches, args.head))
    for spec in [s for s in args.specs.split(",") if s]:
        if len(batches) > 1:
            table[f"adaptive[{spec}] LOSO"] = leave_one_out(batches, spec, args.l2)
        theta = fit(list(batches.values()), spec, args.l2)
        table[f"adaptive[{spec}] all sets"] = {n: measure(b, design(b, spec) @ theta)
                                               for n, b in batches.items()}
        print(f"{spec}: weights fitted on all sets {np.round(theta, 4).tolist()}", file=sys.stderr)
    head = "| rule | " + " | ".join(names) + " |"
    print(head + " mean |\n|---|" + "---:|" * (len(names) + 1))
    for label, row in table.items():
        print(f"| {label} | " + " | ".join(f"{row[n]['ndcg10']:.3f} / {row[n]['recall1']:.2f}"
                                         for n in names) + f" | {np.mean([row[n]['ndcg10'] for n in names]):.3f} |")
    fixed = list(rules)
    if args.shipped:
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))
        return
    print("\nSummary, nDCG@10 (recall@1): the old default, adaptive fusion fitted without the set "
          "(LOSO) and with the shipped numbers (all sets), the best fixed rule, BM25\n")
    print("| set | old default | adaptive LOSO | adaptive shipped | best fixed rule | BM25 | "
          "LOSO ≥ best − 0.005 |\n|---|---:|---:|---:|---|---:|---|")
    def cell(label: str, n: str) -> str:
        return f"{table[label][n]['ndcg10']:.3f} ({table[label][n]['recall1']:.2f})"

    for n in names:
        best = max(fixed, key=lambda label: table[label][n]["ndcg10"])  # noqa: B023
        loso = cell("gated + chunk BM25 head LOSO", n) if len(names) > 1 else "-"
        print(f"| {n} | {cell('hybrid weighted 0.2 (old default)', n)} | {loso} | "
              f"{cell('gated + chunk BM25 head, all sets', n)} | {best}: {cell(best, n)} | "
              f"{cell('bm25', n)} | {loso_verdict(table, n, batches[n].target)} |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
