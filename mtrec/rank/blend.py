"""``blend``: the ranking score is the objective's weighted sum of the per-task scores.

The scores are on their own scales (next-item probability, binary probabilities, a
predicted rating, expected engagement), so the weights are scale-dependent.  Without an
objective the model's first task ranks alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

import numpy as np

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


def resolve_objective(objective: Mapping[str, float] | None,
                      tasks: Sequence[str]) -> dict[str, float]:
    """Task weights to rank by; an unknown task is a ``ValueError`` naming the known ones.

    >>> resolve_objective(None, ("next_item", "like"))
    {'next_item': 1.0}
    """
    if not objective:
        return {tasks[0]: 1.0}
    unknown = [t for t in objective if t not in tasks]
    if unknown:
        raise ValueError(f"objective names task(s) {', '.join(unknown)} the model was not "
                         f"trained for; its tasks: {', '.join(tasks)}")
    return dict(objective)


class Blend:
    name: ClassVar[str] = "blend"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {})

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        total = candidates.total
        if candidates.scores:  # cold-start candidates keep their trending weight
            total = np.zeros(len(candidates))
            for task, w in resolve_objective(request.objective, context.tasks).items():
                total = total + w * candidates.scores[task]
        order = np.argsort(-np.asarray(total), kind="stable")
        ranked = replace(candidates, total=np.asarray(total, np.float64))
        in_order = bool((order[1:] > order[:-1]).all())  # retrieval's order often is already
        return ranked if in_order else ranked.take(order)
