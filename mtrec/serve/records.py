"""What the serving engine takes and gives: requests, items, events, hits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mtrec.rank.base import RankRequest
from mtrec.recommender import Recommendation


class Encoder(Protocol):
    """What the engine needs of a text encoder (``mtrec.text.encoder.TextEncoder``)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...



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
    key: str | None = None  # the name of the API key that posted it
    received: float | None = None  # the server's clock when it was posted
    status: str = "ok"  # ok (applied), quarantined, released (a copy applied), dropped
    reason: str | None = None  # why it was quarantined


Ask = RankRequest  # one recommendation request (the ranking pipeline's)
Hit = Recommendation  # a recommendation with the history items most like it (id, cosine)
