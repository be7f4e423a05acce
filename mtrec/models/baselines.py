"""Non-neural next-item baselines: popularity and item-based k-nearest neighbours.

Both follow the scikit-learn contract (``__init__`` assigns, ``fit`` returns self, learned
state ends in ``_``) and score item codes ``1..N`` for a list of user histories, so they are
ranked by :func:`mtrec.eval.protocols.evaluate_scorer` exactly as the neural model is.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from mtrec.data.interactions import Interactions
from mtrec.data.split import TRAIN


class NotFittedError(RuntimeError):
    """``score`` was called before ``fit``."""


def _train_rows(data: Interactions, parts: tuple[int, ...]) -> np.ndarray:
    return np.flatnonzero(np.isin(data.part, parts))


class Popularity:
    """Every user gets the items with the most training interactions.

    >>> import types
    >>> data = types.SimpleNamespace(item=np.array([1, 2, 2, 3]), part=np.zeros(4, int),
    ...                              user=np.array([0, 0, 1, 1]))
    >>> Popularity().fit(data, n_items=3).score([np.array([1])]).tolist()
    [[1.0, 2.0, 1.0]]
    """

    def __init__(self, parts: tuple[int, ...] = (TRAIN,)) -> None:
        self.parts = parts

    def fit(self, data: Interactions, n_items: int) -> Popularity:
        items = data.item[_train_rows(data, self.parts)]
        self.counts_ = np.bincount(items, minlength=n_items + 1)[1:].astype(np.float32)
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        if not hasattr(self, "counts_"):
            raise NotFittedError("Popularity.score called before fit")
        row = torch.from_numpy(self.counts_)
        return row.unsqueeze(0).expand(len(histories), -1).clone()


class ItemKNN:
    """Item-based collaborative filtering (Sarwar et al., 2001; Deshpande & Karypis, 2004).

    Similarity of items i, j is the cosine of their user columns with a shrink term,
    ``|U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink)``, kept for each item's ``neighbors`` most
    similar items.  A user's score for item j sums the similarities of j to the items in the
    user's history, the ``k``-th most recent weighted ``decay ** k`` (``decay = 1``: the
    classic unweighted sum).
    """

    def __init__(self, neighbors: int = 100, shrink: float = 10.0, decay: float = 1.0,
                 parts: tuple[int, ...] = (TRAIN,)) -> None:
        self.neighbors, self.shrink, self.decay, self.parts = neighbors, shrink, decay, parts

    def fit(self, data: Interactions, n_items: int) -> ItemKNN:
        if self.neighbors < 1 or self.shrink < 0 or not 0 < self.decay <= 1:
            raise ValueError("ItemKNN needs neighbors >= 1, shrink >= 0 and 0 < decay <= 1; "
                             f"got {self.neighbors}, {self.shrink}, {self.decay}")
        rows = _train_rows(data, self.parts)
        users, items = data.user[rows], data.item[rows] - 1
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (users, items)),
                               shape=(int(data.user.max()) + 1, n_items))
        matrix.data[:] = 1.0  # a repeated (user, item) pair counts once
        co = (matrix.T @ matrix).tocsr()
        co.setdiag(0.0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
        co = co.tocoo()
        sim = co.data / (norms[co.row] * norms[co.col] + self.shrink)
        self.similarity_ = _top_k_rows(sp.csr_matrix((sim.astype(np.float32), (co.row, co.col)),
                                                     shape=(n_items, n_items)), self.neighbors)
        return self

    def score(self, histories: list[np.ndarray]) -> torch.Tensor:
        if not hasattr(self, "similarity_"):
            raise NotFittedError("ItemKNN.score called before fit")
        rows, cols, weights = [], [], []
        for b, items in enumerate(histories):
            age = np.arange(len(items))[::-1]
            rows.append(np.full(len(items), b))
            cols.append(items - 1)
            weights.append(self.decay ** age)
        query = sp.csr_matrix((np.concatenate(weights).astype(np.float32),
                               (np.concatenate(rows), np.concatenate(cols))),
                              shape=(len(histories), self.similarity_.shape[0]))
        return torch.from_numpy(np.asarray((query @ self.similarity_).todense(), np.float32))


def _top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row."""
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        data, idx = matrix.data[start:end], matrix.indices[start:end]
        if len(data) > k:
            keep = np.argpartition(-data, k - 1)[:k]
            data, idx = data[keep], idx[keep]
        rows.append(np.full(len(data), r))
        cols.append(idx)
        vals.append(data)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=matrix.shape)
