"""What a ranking stage sees: the request, the candidates so far, and the catalog.

A stage is one class with ``name`` and ``rank(request, candidates, context) ->
candidates``; it is built from its options (``stage.option`` pairs of the rank config) and
may reorder, drop, rescore or annotate candidates.  Stages never raise HTTP errors: a
``ValueError`` names what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple, Protocol

import numpy as np
import torch


class Step(NamedTuple):
    """One interaction of a user's sequence."""

    code: int  # item code
    bits: int  # behaviour bits (1 << index in BEHAVIORS)
    scenario: int  # scenario code
    ts: int = -1  # seconds since the epoch; -1 = unknown


@dataclass(frozen=True)
class RankRequest:
    """Top ``k`` after ``history`` in ``scenario``, by ``objective`` (task weights; None:
    the model's first task)."""

    history: Sequence[Step]
    k: int
    scenario: int
    objective: dict[str, float] | None = None
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    category: str | None = None
    candidates: int = 200  # retrieval candidates ranked by the stages
    user: str | None = None  # whose history it is (a precomputed state may serve)
    scenario_given: bool = True  # False: the default scenario (cold start: all of them)
    policy: bool = False  # re-order by the bundle's ranking policy (mtrec.rank.policy)

    @property
    def fetch(self) -> int:
        """Candidates to retrieve (more under a category filter, which drops some)."""
        return max(self.candidates, self.k) * (4 if self.category else 1)


@dataclass(frozen=True)
class Candidates:
    """Items being ranked, best first once a stage has ordered them."""

    codes: np.ndarray  # [C] item codes
    scores: dict[str, np.ndarray]  # per task, [C] served scores
    total: np.ndarray  # [C] the ranking score
    because: tuple[tuple[tuple[int, float], ...], ...] = ()  # per code: (history code, cos)
    cold_start: bool = False  # no history: the candidates did not come from the model

    def take(self, index: np.ndarray) -> Candidates:
        """The candidates at ``index`` (a selection or an order)."""
        index = np.asarray(index, dtype=np.int64)
        because = tuple(self.because[i] for i in index) if self.because else ()
        return replace(self, codes=self.codes[index], total=self.total[index],
                       scores={t: v[index] for t, v in self.scores.items()}, because=because)

    def head(self, k: int) -> Candidates:
        """The first ``k`` candidates."""
        return replace(self, codes=self.codes[:k], total=self.total[:k],
                       scores={t: v[:k] for t, v in self.scores.items()},
                       because=self.because[:k])

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class RankContext:
    """What stages may read of the catalog (offline: the bundle's; online: the live one)."""

    vectors: torch.Tensor  # [N + 1, dim] item-tower vectors
    categories: Sequence[str]  # per code ("" = none)
    trending: Callable[[int | None, int], list[tuple[int, float]]]  # (scenario, k) -> codes
    tasks: tuple[str, ...]  # the model's tasks, first = the default objective


class Stage(Protocol):
    name: ClassVar[str]

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates: ...


def read_options(stage: str, given: Mapping[str, float],
                 defaults: Mapping[str, float]) -> dict[str, float]:
    """``defaults`` updated by ``given``; an option the stage does not know is an error.

    >>> read_options("diversity", {"weight": 0.5}, {"weight": 0.3})
    {'weight': 0.5}
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"rank stage {stage!r} has no option {unknown[0]!r}; its options: "
                         f"{', '.join(defaults) or 'none'}")
    return {**defaults, **given}
