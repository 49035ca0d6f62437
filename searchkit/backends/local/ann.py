"""FAISS indexes over L2-normalised vectors (inner product = cosine): flat, IVF and HNSW.

The FAISS file is a cache of the vectors kept in SQLite: any index here can be rebuilt from
``(ids, vectors)``. Flat and IVF remove ids in place; HNSW cannot, so removed ids stay in the
graph as tombstones that the caller filters out until the next rebuild.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ...config import ANN_KINDS, AnnConfig

log = logging.getLogger("searchkit")

KINDS = ANN_KINDS
# FAISS's OpenMP threads when searchkit was imported: what builds and batched searches use.
DEFAULT_THREADS = faiss.omp_get_max_threads()
# FAISS warns below ~39 training points per centroid; below that IVF clusters are noise.
MIN_POINTS_PER_LIST = 39


@dataclass(frozen=True)
class AnnParams:
    """The resolved structure of one FAISS index."""

    kind: str
    nlist: int | None = None
    hnsw_m: int | None = None
    ef_construction: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def choose_params(config: AnnConfig, n_vectors: int, table: str | None = None,
                  dim: int | None = None) -> AnnParams:
    """Pick the index structure for a collection size.

    ``auto`` keeps exact search up to ``auto_flat_max`` vectors, then moves to IVF (which, unlike
    HNSW, removes in place). The documents' index also leaves exact search once scanning it
    would read more than ``auto_flat_mb_documents`` MB of vectors (``n_vectors · dim · 4``
    bytes): every dense and hybrid query starts with that scan, while the chunk index (read
    exactly for passages and the late chunk's evidence) keeps the count alone. IVF's ``nlist``
    defaults to about 4·√n, capped so every list gets enough training points; with too few
    vectors to train even one list, IVF waits as flat (exact) until a later write brings enough.
    """
    kind = config.type
    if kind == "auto":
        flat = n_vectors <= config.auto_flat_max
        if table == "documents" and dim:
            flat = flat and n_vectors * dim * 4 <= config.auto_flat_mb_documents * 2 ** 20
        kind = "flat" if flat else "ivf"
    if kind == "ivf" and n_vectors < MIN_POINTS_PER_LIST:
        kind = "flat"
    if kind == "ivf":
        nlist = config.nlist or max(1, int(4 * math.sqrt(max(n_vectors, 1))))
        nlist = max(1, min(nlist, n_vectors // MIN_POINTS_PER_LIST or 1))
        return AnnParams("ivf", nlist=nlist)
    if kind == "hnsw":
        return AnnParams("hnsw", hnsw_m=config.hnsw_m, ef_construction=config.ef_construction)
    return AnnParams("flat")


def why_not(kind: str, n_vectors: int) -> str | None:
    """Why :func:`choose_params` does not give ``kind`` to a table of ``n_vectors``, or None."""
    if kind == "ivf" and n_vectors < MIN_POINTS_PER_LIST:
        return (f"{n_vectors} vectors are too few to train IVF (it needs {MIN_POINTS_PER_LIST}): "
                "flat (exact) until a write brings enough, then IVF")
    return None


def params_of(index: faiss.Index) -> AnnParams:
    """The structure of a FAISS index built by :meth:`VectorIndex.build` (read from a file).

    Raises:
        ValueError: the index is of a kind searchkit never writes.
    """
    if isinstance(index, faiss.IndexIVFFlat):
        return AnnParams("ivf", nlist=int(index.nlist))
    if isinstance(index, faiss.IndexIDMap):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return AnnParams("hnsw", hnsw_m=int(inner.hnsw.nb_neighbors(1)),
                             ef_construction=int(inner.hnsw.efConstruction))
        if isinstance(inner, faiss.IndexFlat):
            return AnnParams("flat")
    raise ValueError(f"not a searchkit FAISS index ({type(index).__name__})")


class VectorIndex:
    """One FAISS index with 64-bit ids, plus the query-time knobs."""

    def __init__(self, index: faiss.Index, params: AnnParams):
        self.index = index
        self.params = params
        # Search parameters without a selector, kept by (nprobe, efSearch): every query of an
        # index asks with the same ones, and FAISS only reads them.
        self._unfiltered: dict[tuple[int | None, int | None], Any] = {}

    # -- building -------------------------------------------------------------------------

    @classmethod
    def build(cls, params: AnnParams, dim: int, ids: np.ndarray, vectors: np.ndarray) -> "VectorIndex":
        """A new index of ``params.kind`` holding ``vectors`` under ``ids`` (IVF is trained on them)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if params.kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif params.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = params.ef_construction
            index = faiss.IndexIDMap2(hnsw)
        elif params.kind == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
            if len(vectors) < params.nlist:
                raise ValueError(f"IVF with nlist={params.nlist} needs at least that many vectors")
            index.train(_training_sample(vectors, params.nlist))
        else:
            raise ValueError(f"unknown index type {params.kind!r}")
        result = cls(index, params)
        if len(ids):
            result.add(ids, vectors)
        return result

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids in place; False for HNSW, whose removed ids stay as tombstones."""
        if self.params.kind == "hnsw" or len(ids) == 0:
            return self.params.kind != "hnsw"
        self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        return True

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    # -- searching ------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None,
               ef_search: int | None = None,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query row; missing results have id -1.

        ``allowed`` restricts the search to those ids with a FAISS id selector, applied during
        the search (flat: exact; IVF and HNSW: among the vectors they visit, so a very
        selective filter may return fewer than ``k``: the caller tops up).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        ntotal = self.ntotal
        k = max(1, min(k, ntotal)) if ntotal else 1
        if ntotal == 0 or (allowed is not None and len(allowed) == 0):
            return (np.full((len(queries), 1), -np.inf, dtype=np.float32),
                    np.full((len(queries), 1), -1, dtype=np.int64))
        # IndexIDMap2 applies a selector to its own (external) ids and forwards the rest to
        # the index it wraps. How many threads a search uses is the calling thread's setting
        # (see set_threads): readers search one query at a time on one thread.
        if allowed is None:
            key = (nprobe, max(ef_search, k) if ef_search else None)
            params = self._unfiltered.get(key)
            if params is None:
                params = self._unfiltered[key] = self._search_params(k, nprobe, ef_search)
            return self.index.search(queries, k, params=params)
        # The selector must outlive the search: keep a reference in this frame.
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        return self.index.search(queries, k,
                                 params=self._search_params(k, nprobe, ef_search, sel=selector))

    def _search_params(self, k: int, nprobe: int | None, ef_search: int | None,
                       **kwargs: Any) -> Any:
        if self.params.kind == "ivf":
            if nprobe:
                kwargs["nprobe"] = min(nprobe, self.params.nlist or nprobe)
            return faiss.SearchParametersIVF(**kwargs)
        if self.params.kind == "hnsw":
            if ef_search:
                kwargs["efSearch"] = max(ef_search, k)
            return faiss.SearchParametersHNSW(**kwargs)
        return faiss.SearchParameters(**kwargs) if kwargs else None

    def copy(self) -> "VectorIndex":
        """An independent copy (to change while others search the original)."""
        return VectorIndex(faiss.clone_index(self.index), self.params)

    # -- files ----------------------------------------------------------------------------

    def save(self, path: Path) -> int:
        """Write atomically: a temporary file in the same folder, fsync, then rename over ``path``.

        Returns the CRC-32 of the file as written, for :meth:`load` to verify.
        """
        path = Path(path)
        # Not mkstemp: its 0600 mode would lock other users out of a shared index (they would
        # rebuild from SQLite on every open); os.open with 0666 honours the umask as the database does.
        tmp = str(path.parent / f"{path.name}.{secrets.token_hex(4)}.tmp")
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            faiss.write_index(self.index, tmp)
            crc = file_crc32(tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return crc

    @classmethod
    def load(cls, path: Path, crc32: int | None = None) -> "VectorIndex":
        """Read a FAISS file written by :meth:`save`; its structure is read from the file itself.

        With ``crc32`` (what :meth:`save` returned) the file is checked first: FAISS itself
        would load a file with a flipped bit inside the vector data without complaint.

        Raises:
            ValueError: the file is missing, truncated, corrupt, or not one of searchkit's kinds.
        """
        if crc32 is not None:
            try:
                if file_crc32(path) != crc32:
                    raise ValueError("checksum mismatch: the file changed after it was written")
            except OSError:
                raise ValueError("missing" if not os.path.exists(path) else "unreadable") from None
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:
            missing = not os.path.exists(path)
            log.debug("faiss.read_index(%s): %s", path, exc)
            raise ValueError("missing" if missing else "truncated or corrupt") from None
        return cls(index, params_of(index))

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def ids(self) -> np.ndarray:
        """Every id the index holds (tombstones included), unsorted."""
        if isinstance(self.index, faiss.IndexIDMap):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
        lists = self.index.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(self.index.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)

    def memory_bytes(self) -> int:
        """Approximate bytes the index holds in RAM (its serialised size)."""
        return int(faiss.serialize_index(self.index).nbytes)


def set_threads(n: int) -> None:
    """Set the OpenMP threads FAISS uses in the calling thread (OpenMP keeps the setting per
    thread). Flat, IVF and HNSW spread work over queries, so one query runs on one thread
    anyway; waking the OpenMP team for it cost 30-100 ms per query on busy cores
    (BENCHMARKS.md, "Query latency"). Readers set one thread once; a writer, which builds and
    trains, sets :data:`DEFAULT_THREADS` for the length of its write."""
    faiss.omp_set_num_threads(n)


def _training_sample(vectors: np.ndarray, nlist: int) -> np.ndarray:
    limit = 256 * nlist
    if len(vectors) <= limit:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), size=limit, replace=False)
    return vectors[np.sort(rows)]


def file_crc32(path: str | os.PathLike, block: int = 1 << 20) -> int:
    """CRC-32 of a file, read in blocks (zlib's CRC runs at several GB/s: a 1.5 GB index ~0.5 s)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            crc = zlib.crc32(chunk, crc)
    return crc
