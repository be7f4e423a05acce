"""Request and response bodies of the HTTP API (unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000
MAX_ITEMS = 1000
MAX_EVENTS = 10_000
MAX_TS = 95_617_584_000.0  # 5000-01-01
ID = Field(min_length=1, max_length=200)
MAX_WEIGHT = 1e6  # ranking only depends on the weights' ratios; larger ones overflow float32
# NaN / Infinity (which Python's JSON parser accepts) would make every score null
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(Strict):
    user_id: str | None = Field(default=None, min_length=1, max_length=200,
                                description="a known user; or give `items`")
    items: list[str] | None = Field(default=None, max_length=MAX_ITEMS,
                                    description="an anonymous session: item ids, oldest first")
    scenario: str | None = None
    k: int = Field(default=10, ge=1, le=MAX_K)
    objective: dict[str, Weight] | None = Field(
        default=None, description="weights over task scores, e.g. {\"next_item\": 1}; "
                                  f"each finite, at most {MAX_WEIGHT:g} in size")
    exclude_seen: bool = True
    category: str | None = None


class TaskScores(Strict):
    scores: dict[str, float]


class Because(Strict):
    item_id: str
    similarity: float
    text: str = Field(description="the history item's title (empty: it has none)")


class RecommendedItem(Strict):
    item_id: str
    score: float
    scores: dict[str, float]
    text: str
    because: list[Because]


class RecommendResponse(Strict):
    user_id: str | None
    cold_start: bool = Field(description="true when the answer is trending (no history)")
    items: list[RecommendedItem]


class ScoreRequest(Strict):
    user_id: str = ID
    items: list[str] = Field(min_length=1, max_length=MAX_ITEMS)
    scenario: str | None = None


class ScoreResponse(Strict):
    user_id: str
    items: list[str]
    scores: dict[str, list[float]]


class ScoredItem(Strict):
    item_id: str
    score: float
    text: str


class ItemsResponse(Strict):
    items: list[ScoredItem]


class ScoredUser(Strict):
    user_id: str
    score: float


class UsersResponse(Strict):
    users: list[ScoredUser]


class ItemIn(Strict):
    item_id: str = ID
    text: str = Field(min_length=1, max_length=10_000)
    category: str = Field(default="", max_length=200)


class ItemsRequest(Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class ItemsWritten(Strict):
    written: int
    codes: list[int]


class EventIn(Strict):
    user_id: str = ID
    item_id: str = ID
    behavior: str = "click"
    scenario: str | None = None
    ts: float | None = Field(default=None, allow_inf_nan=False, ge=0, le=MAX_TS,
                             description="seconds since the epoch (up to the year 5000)")
    event_id: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="the client's id for the event: posted again (a retry after a lost "
                    "answer), it is not stored twice")


class EventsRequest(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsWritten(Strict):
    stored: int  # new events stored
    duplicates: int = 0  # events whose event_id was already stored (skipped)


class Health(Strict):
    status: str
    items: int
    users: int
    tasks: list[str]
    events_stored: int
    index: str  # next-item retrieval: exact, hnsw or ivf
    scan: str  # the exact catalog pass: float32, half or int8 (unused past exact_max)


class HistoryItem(Strict):
    item_id: str
    text: str
    behaviors: list[str] = Field(description="what the user did with the item, e.g. "
                                             "[\"view\", \"click\"] (a funnel on one item "
                                             "is one interaction)")
    ts: float | None = Field(description="seconds since the epoch; null: unknown")


class HistoryResponse(Strict):
    user_id: str
    items: list[HistoryItem]


class ErrorBody(Strict):
    error: str
    detail: str
