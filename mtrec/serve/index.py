"""Maximum inner-product search over item vectors: exact (numpy) or approximate (an hnswlib
HNSW graph, or a compressed FAISS IVF index re-scored at full precision, ``serve/compressed.py``).

Item codes are ints ``1..N``; code 0 is padding and is never stored nor returned as a real
result (it only pads a batch row that an approximate search could not fill, with score -inf).

The kind of index is chosen once, at :meth:`ItemIndex.build`: a catalog of at most
``IndexConfig.exact_max`` items is searched exactly, a larger one approximately: by default
with an HNSW graph (``hnswlib``, space ``"ip"``), or with ``ann = "ivf"`` by quantised codes
in inverted lists (FAISS), far smaller in memory.  :meth:`ItemIndex.add` never switches
kinds: an exact index that grows past ``exact_max`` stays exact (correct, only slower); call
``build`` again to rebuild it.  ``hnswlib`` and ``faiss`` are imported only when their index
is built.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mtrec.serve.compressed import CODEC, IvfStore, RowSource
from mtrec.serve.rows import with_room

PAD_CODE = 0


@dataclass(frozen=True)
class IndexConfig:
    """Index settings; ``m``, ``ef_construction`` and ``ef_search`` are hnswlib parameters.

    ``num_threads`` is the hnswlib thread count for adds and queries (0: all cores); with 1 the
    graph built from a given seed and insertion order is deterministic.
    """

    exact_max: int = 200_000
    m: int = 32
    ef_construction: int = 200
    ef_search: int = 512  # recall@10 0.987 vs exact on the 1M-item benchmark (256: 0.950)
    seed: int = 0
    num_threads: int = 0
    # The engine's pass over a catalog of at most ``exact_max`` items: "half" scans half-
    # precision copies and re-scores the candidates in float32 (mtrec.serve.scan).
    scan: Literal["float32", "half", "int8"] = "half"
    # Past ``exact_max``: "hnsw" (float32 vectors in an hnswlib graph) or "ivf" (FAISS
    # IVF{nlist},{codec}; ``nlist`` 0 picks about 4 sqrt(N)); a query visits ``nprobe``
    # lists and re-scores its ``rescore`` best candidates at full precision.
    ann: Literal["hnsw", "ivf"] = "hnsw"
    codec: str = "PQ112"
    nlist: int = 0
    nprobe: int = 48
    rescore: int = 200
    train_per_list: int = 40

    def lookup(self) -> IndexConfig:
        """The config for the lookup indexes (similar items, search, similar users): their
        vectors are other widths than the retrieval table's, so a compressed codec sized for
        that table would not fit them; they stay HNSW past ``exact_max``."""
        return replace(self, ann="hnsw")

    def __post_init__(self) -> None:
        if self.scan not in ("float32", "half", "int8"):
            raise ValueError(f"index.scan must be 'float32', 'half' or 'int8', got "
                             f"{self.scan!r}")
        if self.ann not in ("hnsw", "ivf"):
            raise ValueError(f"index.ann must be 'hnsw' or 'ivf', got {self.ann!r}")
        if not isinstance(self.codec, str) or not CODEC.match(self.codec):
            raise ValueError(f"index.codec must be SQ8, SQ6, SQ4, SQfp16, PQ<m>, PQ<m>x4 or "
                             f"PQ<m>x8 (FAISS names; m divides the vectors' width), got "
                             f"{self.codec!r}")
        minimum = {"exact_max": 0, "m": 1, "ef_construction": 1, "ef_search": 1, "seed": 0,
                   "num_threads": 0, "nlist": 0, "nprobe": 1, "rescore": 1,
                   "train_per_list": 39}
        for name, lo in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"index.{name} must be an int, got {type(value).__name__}")
            if value < lo:
                raise ValueError(f"index.{name} must be >= {lo}, got {value}")


class _Store(Protocol):
    def __len__(self) -> int: ...
    def add(self, vectors: np.ndarray, codes: np.ndarray) -> None: ...
    def search(self, queries: np.ndarray, k: int,
               exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def vector(self, code: int) -> np.ndarray: ...
    def codes(self) -> np.ndarray: ...
    def nbytes(self) -> int: ...


def _top_k(scores: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first, equal scores by smaller code.

    A partition finds the k-th best score; every item scoring at least that much is a candidate
    (so ties at the cut are all considered) and only the candidates are sorted.
    """
    n = scores.shape[0]
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(n)
    return cand[np.lexsort((codes[cand], -scores[cand]))[:k]]


class _ExactStore:
    """A float32 matrix with spare capacity (doubling), its row codes and a code -> row dict."""

    def __init__(self, dim: int, capacity: int) -> None:
        capacity = max(capacity, 1)
        self.matrix = np.zeros((capacity, dim), dtype=np.float32)
        self.row_codes = np.zeros(capacity, dtype=np.int64)
        self.rows: dict[int, int] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def _reserve(self, need: int) -> None:
        capacity = self.matrix.shape[0]
        if need <= capacity:
            return
        capacity = max(need, 2 * capacity)
        matrix = np.empty((capacity, self.matrix.shape[1]), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        row_codes = np.zeros(capacity, dtype=np.int64)
        row_codes[: self.size] = self.row_codes[: self.size]
        self.matrix, self.row_codes = matrix, row_codes

    def add(self, vectors: np.ndarray, codes: np.ndarray) -> None:
        code_list = codes.tolist()
        is_new = np.fromiter((c not in self.rows for c in code_list), dtype=bool,
                             count=len(code_list))
        old_rows = [self.rows[c] for c, new in zip(code_list, is_new, strict=True) if not new]
        self.matrix[old_rows] = vectors[~is_new]
        new_codes = codes[is_new]
        start, n_new = self.size, len(new_codes)
        self._reserve(start + n_new)
        self.matrix[start: start + n_new] = vectors[is_new]
        self.row_codes[start: start + n_new] = new_codes
        self.rows.update(zip(new_codes.tolist(), range(start, start + n_new), strict=True))
        self.size = start + n_new

    def search(self, queries: np.ndarray, k: int,
               exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.matrix[: self.size].T  # [B, n]
        row_codes = self.row_codes[: self.size]
        drop = {self.rows[c] for c in exclude.tolist() if c in self.rows}
        if drop:
            keep = np.ones(self.size, dtype=bool)
            keep[list(drop)] = False
            cols = np.flatnonzero(keep)
            scores, row_codes = scores[:, cols], row_codes[cols]
        k = min(k, row_codes.shape[0])
        out_codes = np.empty((queries.shape[0], k), dtype=np.int64)
        out_scores = np.empty((queries.shape[0], k), dtype=np.float32)
        for b in range(queries.shape[0]):
            pos = _top_k(scores[b], row_codes, k)
            out_codes[b], out_scores[b] = row_codes[pos], scores[b, pos]
        return out_codes, out_scores

    def vector(self, code: int) -> np.ndarray:
        return self.matrix[self.rows[code]].copy()

    def codes(self) -> np.ndarray:
        return np.sort(self.row_codes[: self.size])

    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.row_codes.nbytes)


class _HnswStore:
    """An hnswlib graph (labels = item codes) plus the set of codes it holds.

    Adding a code that is already present updates its vector in place (hnswlib ``add_items`` on
    an existing label re-links the point); nothing is ever marked deleted.
    """

    def __init__(self, dim: int, capacity: int, config: IndexConfig) -> None:
        import hnswlib

        self.config = config
        self.threads = config.num_threads or -1
        self.index: Any = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(max_elements=max(capacity, 1), M=config.m,
                              ef_construction=config.ef_construction, random_seed=config.seed)
        self.present: set[int] = set()

    def __len__(self) -> int:
        return len(self.present)

    def add(self, vectors: np.ndarray, codes: np.ndarray) -> None:
        new = [c for c in codes.tolist() if c not in self.present]
        need = len(self.present) + len(new)
        capacity = self.index.get_max_elements()
        if need > capacity:
            self.index.resize_index(max(need, 2 * capacity))
        if len(codes):
            self.index.add_items(vectors, codes, num_threads=self.threads)
        self.present.update(new)

    def search(self, queries: np.ndarray, k: int,
               exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dropped = np.array(sorted({c for c in exclude.tolist() if c in self.present}),
                           dtype=np.int64)
        n = len(self.present)
        fetch = min(k + len(dropped), n)  # over-fetch so excluded items do not shrink the result
        k = min(k, n - len(dropped))
        if k <= 0:
            empty = np.empty((queries.shape[0], 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        self.index.set_ef(max(self.config.ef_search, fetch))
        labels, distances = self.index.knn_query(queries, k=fetch, num_threads=self.threads)
        labels = labels.astype(np.int64)
        scores = (1.0 - distances.astype(np.float64)).astype(np.float32)  # ip distance = 1 - dot
        bad = np.isin(labels, dropped)
        order = np.lexsort((labels, -scores, bad), axis=-1)[:, :k]
        labels = np.take_along_axis(labels, order, axis=-1)
        scores = np.take_along_axis(scores, order, axis=-1)
        bad = np.take_along_axis(bad, order, axis=-1)
        labels[bad], scores[bad] = PAD_CODE, -np.inf  # only if the graph returned too few
        return labels, scores

    def vector(self, code: int) -> np.ndarray:
        if code not in self.present:
            raise KeyError(code)
        return np.asarray(self.index.get_items([code]), dtype=np.float32)[0]

    def codes(self) -> np.ndarray:
        return np.array(sorted(self.present), dtype=np.int64)

    def nbytes(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "hnsw.bin"
            self.index.save_index(str(path))
            return path.stat().st_size


def _check_items(vectors: np.ndarray, codes: np.ndarray,
                 dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to contiguous float32 [M, D] vectors and int64 [M] codes."""
    vecs = np.asarray(vectors)
    cds = np.asarray(codes)
    if vecs.ndim != 2 or vecs.shape[1] < 1:
        raise ValueError(f"vectors must be 2-D [M, D] with D >= 1, got shape {vecs.shape}")
    if dim is not None and vecs.shape[1] != dim:
        raise ValueError(f"vectors dimension mismatch: expected {dim}, got {vecs.shape[1]}")
    if cds.ndim != 1 or cds.shape[0] != vecs.shape[0]:
        raise ValueError(f"codes must be 1-D with one code per vector row ({vecs.shape[0]}), "
                         f"got shape {cds.shape}")
    if len(cds) and not np.issubdtype(cds.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {cds.dtype}")
    cds = cds.astype(np.int64, copy=False)
    if len(cds) and cds.min() < 1:
        raise ValueError(f"codes must be >= 1 (0 is padding), got {cds.min()}")
    if len(np.unique(cds)) != len(cds):
        raise ValueError("codes must be unique within one call")
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if not np.isfinite(vecs).all():
        raise ValueError("vectors must be finite (no NaN or inf)")
    return vecs, cds


class ItemIndex:
    """Top-k maximum inner-product search over item vectors; safe to share between threads.

    Learned state (set by :meth:`build`) ends in ``_``: ``kind_`` ("exact" or "hnsw"), ``dim_``.

    >>> index = ItemIndex(IndexConfig()).build(np.eye(3, dtype=np.float32), np.array([1, 2, 3]))
    >>> index.search(np.array([0.0, 1.0, 0.0], dtype=np.float32), k=2)
    (array([2, 1]), array([1., 0.], dtype=float32))
    >>> index.search(np.array([0.0, 1.0, 0.0], dtype=np.float32), k=5, exclude=np.array([2]))
    (array([1, 3]), array([0., 0.], dtype=float32))
    """

    kind_: Literal["exact", "hnsw", "ivf"]
    dim_: int
    _store_: _Store

    def __init__(self, config: IndexConfig, rows: RowSource | None = None) -> None:
        self.config, self.rows = config, rows  # rows: full-precision vectors for "ivf"
        self._lock = threading.Lock()

    def _built_store(self) -> _Store:
        store: _Store | None = getattr(self, "_store_", None)
        if store is None:
            raise RuntimeError("ItemIndex is not built: call build(vectors, codes) first")
        return store

    def build(self, vectors: np.ndarray, codes: np.ndarray) -> ItemIndex:
        """(Re)build from float32 [M, D] vectors and unique int64 [M] codes >= 1; returns self.

        Exact search when ``M <= config.exact_max``, else ``config.ann``.
        """
        vecs, cds = _check_items(vectors, codes, None)
        dim, n = vecs.shape[1], vecs.shape[0]
        store: _Store
        kind: Literal["exact", "hnsw", "ivf"]
        if n <= self.config.exact_max:
            kind, store = "exact", _ExactStore(dim, with_room(n))
        elif self.config.ann == "ivf":
            kind, store = "ivf", IvfStore(dim, self.config, self.rows)
        else:
            kind, store = "hnsw", _HnswStore(dim, with_room(n), self.config)
        store.add(vecs, cds)
        with self._lock:
            self.kind_, self.dim_, self._store_ = kind, dim, store
        return self

    def set_ef_search(self, ef: int) -> None:
        """HNSW search breadth (recall against time) from now on; exact search ignores it."""
        config = replace(self.config, ef_search=ef)  # validates
        with self._lock:
            self.config = config
            store = getattr(self, "_store_", None)
            if isinstance(store, _HnswStore | IvfStore):
                store.config = config

    def set_nprobe(self, nprobe: int, rescore: int | None = None) -> None:
        """IVF lists visited (and candidates re-scored) from now on; other kinds ignore it."""
        config = replace(self.config, nprobe=nprobe,
                         rescore=self.config.rescore if rescore is None else rescore)
        with self._lock:
            self.config = config
            store = getattr(self, "_store_", None)
            if isinstance(store, IvfStore):
                store.config = config

    def nbytes(self) -> int:
        """Bytes of the index's vectors and structures as its library serialises them
        (exact: the matrix).  Left out for every kind: the per-item bookkeeping beside them
        (hnswlib's label map and locks, FAISS's id hashtable, the set of codes)."""
        store = self._built_store()
        with self._lock:
            return store.nbytes()

    def add(self, vectors: np.ndarray, codes: np.ndarray) -> None:
        """Add items, or replace the vectors of codes already present; searchable at once.

        The index kind never changes here: an exact index grown past ``exact_max`` stays exact.
        """
        store = self._built_store()
        vecs, cds = _check_items(vectors, codes, self.dim_)
        with self._lock:
            store.add(vecs, cds)

    def search(self, query: np.ndarray, k: int,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` codes with the largest inner product with ``query``, best first.

        ``query`` is [D] (returns int64 codes [k'] and float32 scores [k']) or [B, D] (returns
        [B, k'] arrays), with ``k' = min(k, items not excluded)``.  Codes in ``exclude`` (one
        1-D array shared by every row) are never returned.  Exact ties go to the smaller code.
        An HNSW row the graph could not fill is padded with code 0 and score -inf.
        """
        store = self._built_store()
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        q = np.asarray(query, dtype=np.float32)
        if q.ndim not in (1, 2):
            raise ValueError(f"query must be [D] or [B, D], got shape {q.shape}")
        if q.shape[-1] != self.dim_:
            raise ValueError(f"query dimension mismatch: expected {self.dim_}, got {q.shape[-1]}")
        if not np.isfinite(q).all():
            raise ValueError("query must be finite (no NaN or inf)")
        ex = np.zeros(0, dtype=np.int64) if exclude is None else np.asarray(exclude).ravel()
        if len(ex) and not np.issubdtype(ex.dtype, np.integer):
            raise ValueError(f"exclude must hold integer codes, got dtype {ex.dtype}")
        queries = np.ascontiguousarray(q.reshape(-1, self.dim_))
        with self._lock:
            codes, scores = store.search(queries, int(k), ex.astype(np.int64, copy=False))
        return (codes[0], scores[0]) if q.ndim == 1 else (codes, scores)

    def __len__(self) -> int:
        store: _Store | None = getattr(self, "_store_", None)
        if store is None:
            return 0
        with self._lock:
            return len(store)

    def vector(self, code: int) -> np.ndarray:
        """A copy of the float32 [D] vector stored for ``code``; KeyError if it is absent."""
        store = self._built_store()
        with self._lock:
            try:
                return store.vector(int(code))
            except KeyError:
                raise KeyError(f"item code {code} is not in the index "
                               f"({len(store)} items)") from None

    def codes(self) -> np.ndarray:
        """All codes in the index, sorted ascending, as int64."""
        store = self._built_store()
        with self._lock:
            return store.codes()
