"""Cold CLI: wall time of ``searchkit query`` as a fresh process, and where the time goes.

Builds a small index once (``--corpus``, default sample_corpus/18th-century), then runs each
command as a new process, ``--repeats`` times, interleaved: the bare interpreter, ``import
searchkit.cli``, ``searchkit --help``, ``searchkit info``, ``searchkit query``, and a staged
process that times each step of a query in order (imports, open, model load, FAISS load,
query embedding, search). ``--rev REV`` also runs the same commands on another commit of the
checkout (exported with ``git archive``), to compare before and after a change.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_cold_cli.py [--repeats 5] [--rev HEAD~1]
    python3 -X importtime -m searchkit --help 2> importtime.txt      # the import tree itself
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import median

QUERY = "the army and the navy"

STAGES = r"""
import json, sys, time
t = {}; t0 = time.perf_counter()
def mark(name):
    global t0
    now = time.perf_counter(); t[name] = now - t0; t0 = now
import searchkit.cli; mark("import searchkit")
import torch; mark("import torch")
import sentence_transformers; mark("import sentence_transformers")
from searchkit import SearchIndex, load_config
ix = SearchIndex.open(sys.argv[1], config=load_config(discover=False)); mark("open index")
ix.embedder; mark("load model")
ix.backend.ann("documents"); ix.backend.ann("chunks"); mark("load FAISS")
ix.embedder.encode_queries([sys.argv[2]]); mark("first query embedding")
ix.search(sys.argv[2]); mark("search (warm embedding + FAISS + SQLite)")
print(json.dumps(t))
"""


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{cmd} failed: {out.stderr[-2000:]}")
    return seconds, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=common.ROOT / "sample_corpus" / "18th-century")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rev", action="append", default=[], help="also measure this commit")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="searchkit-cold-"))
    index = tmp / "index"
    py = sys.executable
    run([py, "-m", "searchkit", "index", str(args.corpus.resolve()), "--index", str(index),
         "--model", "all-MiniLM-L6-v2", "-q"], common.ROOT)
    trees = {"this checkout": common.ROOT}
    for rev in args.rev:
        folder = tmp / f"rev-{rev.replace('/', '_')}"
        folder.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=common.ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        trees[rev] = folder
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "import searchkit.cli": [py, "-c", "import searchkit.cli"],
        "searchkit --help": [py, "-m", "searchkit", "--help"],
        "searchkit info": [py, "-m", "searchkit", "info", "--index", str(index), "-q"],
        "searchkit query": [py, "-m", "searchkit", "query", QUERY, "--index", str(index), "-q"],
    }
    times = {(tree, name): [] for tree in trees for name in commands}
    stages: dict[str, list[dict]] = {tree: [] for tree in trees}
    jobs = [(tree, name) for tree in trees for name in commands] + [(tree, "stages") for tree in trees]
    for rep in range(args.repeats):
        for tree, name in jobs[rep % len(jobs):] + jobs[:rep % len(jobs)]:
            if name == "stages":
                _, out = run([py, "-c", STAGES, str(index), QUERY], trees[tree])
                stages[tree].append(json.loads(out.strip().splitlines()[-1]))
            else:
                seconds, _ = run(commands[name], trees[tree])
                times[(tree, name)].append(seconds)
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    print(common.machine())
    print(f"\nWall time of a fresh process, median of {args.repeats} (seconds)\n")
    print("| command | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for name in commands:
        print(f"| `{name}` | " + " | ".join(f"{median(times[(t, name)]):.2f}" for t in trees) + " |")
    for tree in trees:
        print(f"\nStages of one query in a fresh process ({tree}), median of {args.repeats} (seconds)\n")
        print("| stage | seconds |\n|---|---|")
        for stage in stages[tree][0]:
            print(f"| {stage} | {median([s[stage] for s in stages[tree]]):.2f} |")


if __name__ == "__main__":
    main()
