"""A compressed approximate index for large catalogs: FAISS IVF over quantised codes, with
the candidates re-scored at full precision.

The index holds only compact codes (product or scalar quantisation, ``IndexConfig.codec``)
in ``nlist`` inverted lists; a query visits the ``nprobe`` nearest lists, takes the
``rescore`` best candidates by their approximate scores, and re-scores them with the
full-precision vectors that a row source returns (the serving catalog's own table, so the
float vectors are not held twice).  Without a row source the store keeps a float32 copy
(correct, not compressed).

``faiss`` (the ``faiss-cpu`` package) is imported only when such an index is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mtrec.serve.index import IndexConfig

RowSource = Callable[[np.ndarray], np.ndarray]  # int64 codes [n] -> float32 vectors [n, D]

CODEC = re.compile(r"^(SQ8|SQ6|SQ4|SQfp16|PQ\d+(x[48])?)$")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a dependency of mtrec
        raise RuntimeError("the ivf index needs faiss: pip install faiss-cpu") from exc
    return faiss


def lists_for(n: int, nlist: int) -> int:
    """The number of inverted lists: ``nlist`` if set, else about 4 sqrt(n), at most n/39
    (FAISS wants 39 training points per list).

    >>> lists_for(1_000_000, 0), lists_for(1_000, 0), lists_for(10, 7)
    (4000, 25, 7)
    """
    if nlist:
        return nlist
    return max(1, min(int(4 * np.sqrt(n)), n // 39))


class IvfStore:
    """FAISS ``IVF{nlist},{codec}`` under inner product, ids = item codes, re-scored."""

    def __init__(self, dim: int, config: IndexConfig, rows: RowSource | None) -> None:
        self.dim, self.config, self.rows = dim, config, rows
        self.index: Any = None
        self.present: set[int] = set()
        self.copy: dict[int, np.ndarray] = {}  # only without a row source

    def __len__(self) -> int:
        return len(self.present)

    def _train(self, vectors: np.ndarray) -> None:
        faiss = _faiss()
        nlist = lists_for(len(vectors), self.config.nlist)
        try:
            index = faiss.index_factory(self.dim, f"IVF{nlist},{self.config.codec}",
                                        faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"index.codec {self.config.codec!r} does not fit vectors of "
                             f"dimension {self.dim} ({str(exc).splitlines()[-1]})") from exc
        if hasattr(index, "do_polysemous_training"):
            # FAISS's default for PQ codes: a code-reordering pass for Hamming filtering,
            # unused here, that was most of a build's time
            index.do_polysemous_training = False
        rng = np.random.default_rng(self.config.seed)
        # enough for the lists and for the codes' own quantisers (256 centroids each)
        sample = min(len(vectors), max(self.config.train_per_list * nlist, 39 * 256))
        rows = np.sort(rng.choice(len(vectors), sample, replace=False))
        index.cp.seed = self.config.seed
        try:
            index.train(vectors[rows])
        except RuntimeError as exc:
            raise ValueError(f"index IVF{nlist},{self.config.codec} cannot be trained on "
                             f"{sample} vectors (index.nlist {self.config.nlist}, 0: auto; "
                             f"{str(exc).strip().splitlines()[-1]})") from exc
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # fast remove on re-describe
        index.nprobe = self.config.nprobe
        self.index = index

    def add(self, vectors: np.ndarray, codes: np.ndarray) -> None:
        if not len(codes):
            return
        if self.index is None:
            self._train(vectors)
        old = np.array([c for c in codes.tolist() if c in self.present], dtype=np.int64)
        if len(old):
            self.index.remove_ids(old)
        self.index.add_with_ids(vectors, codes)
        self.present.update(codes.tolist())
        if self.rows is None:
            self.copy.update(zip(codes.tolist(), vectors.copy(), strict=True))

    def full(self, codes: np.ndarray) -> np.ndarray:
        """Full-precision vectors of ``codes`` (from the row source, else the copy)."""
        if self.rows is not None:
            return np.asarray(self.rows(codes), dtype=np.float32)
        return np.stack([self.copy[c] for c in codes.tolist()]).astype(np.float32)

    def search(self, queries: np.ndarray, k: int,
               exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.present)
        dropped = {c for c in exclude.tolist() if c in self.present}
        k = min(k, n - len(dropped))
        if k <= 0 or self.index is None:
            empty = np.empty((queries.shape[0], 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        fetch = min(max(self.config.rescore, k) + len(dropped), n)
        self.index.nprobe = self.config.nprobe
        _, labels = self.index.search(queries, fetch)
        out_codes = np.zeros((queries.shape[0], k), dtype=np.int64)
        out_scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        for b, row in enumerate(labels):
            cand = np.array([c for c in row.tolist() if c > 0 and c not in dropped],
                            dtype=np.int64)
            if not len(cand):
                continue
            scores = self.full(cand) @ queries[b]
            order = np.lexsort((cand, -scores))[:k]
            out_codes[b, : len(order)], out_scores[b, : len(order)] = cand[order], scores[order]
        return out_codes, out_scores

    def vector(self, code: int) -> np.ndarray:
        if code not in self.present:
            raise KeyError(code)
        return self.full(np.array([code], dtype=np.int64))[0].copy()

    def codes(self) -> np.ndarray:
        return np.array(sorted(self.present), dtype=np.int64)

    def nbytes(self) -> int:
        """Bytes of the index as FAISS serialises it (codes, ids, lists, quantisers)."""
        if self.index is None:
            return 0
        return int(_faiss().serialize_index(self.index).nbytes)
