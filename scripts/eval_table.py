"""Markdown tables from `searchkit eval --json` outputs, for BENCHMARKS.md.

Files of the same dataset are merged (modes run in separate invocations share one table).

    python3 scripts/eval_table.py out/*.json
"""

import json
import sys

ORDER = ["doc-first", "doc-long", "naive", "late", "late-long", "rerank"]
COLUMNS = ["ndcg@10", "recall@1", "recall@10", "mrr@10"]

sets: dict[str, dict] = {}
for path in sys.argv[1:]:
    data = json.load(open(path))
    merged = sets.setdefault(data["dataset"], {**data, "results": {}})
    merged["results"].update(data["results"])

for name, data in sets.items():
    print(f"**{name}** ({data['documents']} documents, {data['queries']} queries)\n")
    print("| mode | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for mode in ORDER:
        row = data["results"].get(mode)
        cells = [f"{row[c]:.3f}" for c in COLUMNS] if row else ["not run"] + [""] * (len(COLUMNS) - 1)
        print(f"| {mode} | " + " | ".join(cells) + " |")
    print()

passkey = {n: d for n, d in sets.items() if n.startswith("passkey")}
if passkey:
    names = sorted(passkey, key=lambda n: int(n.split("_")[-1].rstrip("w")))
    print("| mode | " + " | ".join(n.split("_")[-1] for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for mode in ORDER:
        cells = [f"{passkey[n]['results'][mode]['recall@1']:.2f}" if mode in passkey[n]["results"]
                 else "—" for n in names]
        print(f"| {mode} | " + " | ".join(cells) + " |")
