"""``filter``: drop the items the request excludes and those outside its category."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


def _member(codes: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """``np.isin(codes, exclude)`` by binary search (a fraction of its cost at this size).

    >>> _member(np.array([3, 1, 7]), np.array([7, 3])).tolist()
    [True, False, True]
    """
    if not len(exclude):
        return np.zeros(len(codes), dtype=bool)
    ex = np.sort(exclude)
    at = np.minimum(np.searchsorted(ex, codes), len(ex) - 1)
    return ex[at] == codes


class Filter:
    name: ClassVar[str] = "filter"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {})

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        keep = ~_member(candidates.codes, request.exclude)
        if request.category:
            cats = context.categories
            keep &= np.array([cats[c] == request.category for c in candidates.codes],
                             dtype=bool)
        return candidates if keep.all() else candidates.take(np.flatnonzero(keep))
