"""PDF extraction next to embedding: what reading a 100-page PDF costs in an ingest.

A 100-page PDF is assembled from the pages of sample_corpus/2002-bush.pdf (a real
reportlab-typeset text PDF) with pypdfium2's page import, so no extra tool is needed. **extract**
= ``read_document`` (read, hash, pypdfium2 page by page; median of ``--repeats``), **ingest** =
one ``SearchIndex.add_paths`` of a folder holding only that PDF into a fresh index (read,
extract, embed, SQLite, FAISS, save), **embed** = ``embed_documents`` of the extracted Document
with the bundled all-MiniLM-L6-v2. The extraction share is one extraction timed right after
the ingest over the ingest time.

Then the peak RSS of extracting 100 vs 2,000 pages, each in a fresh process: pages are loaded
and closed one at a time, so memory should grow with the text kept, not with the page count.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_pdf.py [--pages 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (sys.path, offline environment)
from common import ROOT, machine, median


def build_pdf(pages: int, out: Path) -> None:
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(ROOT / "sample_corpus" / "2002-bush.pdf")
    pdf = pdfium.PdfDocument.new()
    while len(pdf) < pages:
        take = min(len(source), pages - len(pdf))
        pdf.import_pages(source, list(range(take)))
    pdf.save(str(out))
    pdf.close()
    source.close()


def peak_rss_mb(pdf: Path) -> float:
    """Peak resident memory added while extracting ``pdf``, in a fresh process (MB)."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from searchkit.ingest.documents import read_document
import pypdfium2

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024

before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")   # VmHWM restarts from the current RSS
doc = read_document({str(pdf)!r}, max_pages=10**6)
print(status("VmHWM:") - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory-only", action="store_true", help="only the 100 vs 2,000 pages RSS")
    args = ap.parse_args()

    from searchkit import SearchIndex
    from searchkit.config import Config, ModelConfig
    from searchkit.ingest.documents import read_document
    from searchkit.embedding.embedder import Embedder
    from searchkit.ingest.embedding_pass import embed_documents

    config = Config(model=ModelConfig(name="all-MiniLM-L6-v2"))
    embedder = Embedder.load(config.model)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "pdf"
        folder.mkdir()
        pdf = folder / "book.pdf"
        build_pdf(args.pages, pdf)
        small = tmp / "small.pdf"
        build_pdf(100, small)
        big = tmp / "big.pdf"
        build_pdf(2000, big)
        rss_small, rss_big = peak_rss_mb(small), peak_rss_mb(big)
        if args.memory_only:
            print(f"peak RSS added by extraction: 100 pages {rss_small:.1f} MB, "
                  f"2,000 pages {rss_big:.1f} MB")
            return
        doc = read_document(pdf)
        tokens = len(embedder.tokenize(doc.text))
        extracts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            doc = read_document(pdf)
            extracts.append(time.perf_counter() - t0)
        # One ingest: on a loaded 2-core machine embedding 100 pages takes minutes.
        cfg = Config(index=str(tmp / "ix"), model=config.model)
        with SearchIndex.open(config=cfg, create=True) as ix:
            ix._embedder = embedder  # share the loaded model: model load is not ingest
            t0 = time.perf_counter()
            ix.add_paths([folder])
            ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        read_document(pdf)
        extract_paired = time.perf_counter() - t0   # right after the ingest, same machine load
        t0 = time.perf_counter()
        embed_documents(embedder, [doc], config.chunking)
        embed = time.perf_counter() - t0

    extract = median(extracts)
    share = extract_paired / ingest
    print(f"machine: {machine()}")
    print(f"{args.pages}-page PDF: {len(doc.text):,} characters, {tokens:,} tokens; "
          f"extraction median of {args.repeats}, one ingest\n")
    print("| step | seconds | per page |")
    print("|---|---|---|")
    print(f"| extract (read, hash, pypdfium2) | {extract:.3f} | {extract / args.pages * 1000:.2f} ms |")
    print(f"| embed (MiniLM, late chunks) | {embed:.2f} | {embed / args.pages * 1000:.0f} ms |")
    print(f"| whole ingest (add_paths) | {ingest:.2f} | {ingest / args.pages * 1000:.0f} ms |")
    print(f"\nextraction share of ingest: {share * 100:.2f} %")
    print(f"peak RSS added by extraction: 100 pages {rss_small:.1f} MB, 2,000 pages {rss_big:.1f} MB")
    print(json.dumps({"extracts": extracts, "extract_paired": extract_paired, "ingest": ingest,
                      "embed": embed}))


if __name__ == "__main__":
    main()
