"""What the serving engine takes and gives: requests, items, events, hits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from mtrec.recommender import Recommendation


class Encoder(Protocol):
    """What the engine needs of a text encoder (``mtrec.text.encoder.TextEncoder``)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


class Step(NamedTuple):
    """One interaction of a user's sequence."""

    code: int  # item code
    bits: int  # behaviour bits (1 << index in BEHAVIORS)
    scenario: int  # scenario code
    ts: int = -1  # seconds since the epoch; -1 = unknown


@dataclass(frozen=True)
class NewItem:
    item_id: str
    text: str
    category: str = ""


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    behavior: str = "click"
    scenario: str | None = None
    ts: float | None = None  # seconds since the epoch
    event_id: str | None = None  # the client's id: stored once however often it is posted


@dataclass(frozen=True)
class Ask:
    """One recommendation request: top ``k`` after ``history`` by ``objective``."""

    history: Sequence[Step]
    k: int
    scenario: int
    objective: dict[str, float] | None = None
    exclude: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    category: str | None = None
    candidates: int = 200  # retrieval candidates ranked by the objective
    user: str | None = None  # whose history it is (a precomputed state may serve)

    @property
    def fetch(self) -> int:
        """Candidates to retrieve (more under a category filter, which drops some)."""
        return max(self.candidates, self.k) * (4 if self.category else 1)


@dataclass(frozen=True)
class Hit(Recommendation):
    """A recommendation with the history items most like it (id, cosine)."""

    because: list[tuple[str, float]] = field(default_factory=list)
