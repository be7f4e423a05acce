"""``cold_start``: with no history to encode, start from what is trending."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


class ColdStart:
    """Candidates that did not come from the model (an unknown user, an empty session)
    become the scenario's trending items (all scenarios when none was asked for)."""

    name: ClassVar[str] = "cold_start"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {})

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        if not candidates.cold_start or len(candidates):
            return candidates
        scenario = request.scenario if request.scenario_given else None
        top = context.trending(scenario, request.fetch)
        codes = np.array([c for c, _ in top], dtype=np.int64)
        total = np.array([w for _, w in top], dtype=np.float64)
        return Candidates(codes, {}, total, cold_start=True)
