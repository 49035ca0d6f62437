"""Copy an index from one storage backend to another without embedding anything again.

Documents, chunks, vectors, metadata and the recorded model and chunking are read through the
source backend's read view and written through the target's write session, so any pair of
backends works (local → milvus to move to a server, milvus → local to come back). The target
must be empty or hold the same model: documents whose key is already there with the same
content hash are left alone, so a copy cut short resumes.

    python3 scripts/copy_index.py --index SRC_FOLDER --to-index DST_FOLDER \\
        --set-to backend=milvus --set-to milvus.uri=http://127.0.0.1:19530 [--config FILE]

``--set`` applies to the source, ``--set-to`` to the target (over the same configuration).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchkit.backends.factory import open_backend  # noqa: E402
from searchkit.config import load_config, with_settings  # noqa: E402
from searchkit.ingest.documents import Document  # noqa: E402
from searchkit.records import Chunk, EmbeddedDocument  # noqa: E402

BATCH = 64


def _settings(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def copy(source, target, batch: int = BATCH) -> int:
    """Copy every document of ``source`` missing from ``target``; returns how many."""
    with source.snapshot() as view:
        manifest = view.manifest()
        ids = view.vectors("documents")[0].tolist()
    copied = 0
    with target.write() as session:
        recorded = session.manifest().get("model")
        if recorded and recorded != manifest.get("model"):
            raise SystemExit(f"{target.location} holds another model ({recorded.get('name')})")
        if not recorded:
            session.record(model=manifest.get("model"), chunking=manifest.get("chunking"))
        session.prepare()
        have = session.states()
        for start in range(0, len(ids), batch):
            part = ids[start:start + batch]
            with source.snapshot() as view:
                rows = view.documents(part)
                vectors = dict(zip(*(a.tolist() if i == 0 else list(a)
                                     for i, a in enumerate(view.vectors("documents", part)))))
                chunk_rows, chunk_vectors = view.chunks_of(part, len(next(iter(vectors.values()))))
            chunks: dict[int, list[Chunk]] = {}
            for row, vector in zip(chunk_rows, chunk_vectors):
                chunks.setdefault(row.doc_id, []).append(Chunk(
                    row.ordinal, row.tok_start, row.tok_end, row.char_start, row.char_end, vector))
            todo, old = [], []
            for doc_id in part:
                r = rows.get(doc_id)
                if r is None or have.get(r.key, (None, None))[1] == r.content_hash:
                    continue
                if r.key in have:
                    old.append(have[r.key][0])
                doc = Document(key=r.key, text=r.text, title=r.title, kind=r.kind,
                               content_hash=r.content_hash, path=r.path, size=r.size,
                               mtime=r.mtime, metadata=r.metadata)
                todo.append(EmbeddedDocument(doc, r.n_tokens, vectors[doc_id],
                                             tuple(chunks.get(doc_id, ()))))
            if todo:
                session.replace(old, todo)
                copied += len(todo)
    return copied


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, help="source index folder")
    ap.add_argument("--to-index", required=True, help="target index folder (or name, on a server)")
    ap.add_argument("--config", default=None, help="config file for both")
    ap.add_argument("--set", dest="source_set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--set-to", dest="target_set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    base = load_config(args.config)
    source_config = with_settings(dataclasses.replace(base, index=args.index), _settings(args.source_set))
    target_config = with_settings(dataclasses.replace(base, index=args.to_index), _settings(args.target_set))
    source = open_backend(source_config.backend, args.index, source_config)
    target = open_backend(target_config.backend, args.to_index, target_config, create=True)
    started = time.perf_counter()
    try:
        n = copy(source, target)
    finally:
        source.close()
        target.close()
    print(f"copied {n} documents from {source.location} to {target.location} "
          f"in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
