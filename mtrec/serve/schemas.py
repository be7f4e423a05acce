"""Request and response bodies of the HTTP API (unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from mtrec.data.schema import BEHAVIORS

Behavior = Literal["view", "click", "like", "cart", "collect", "purchase", "rate", "review"]
assert get_args(Behavior) == BEHAVIORS  # the data layer's list, spelled out for the schema
MAX_K = 1000
MAX_ITEMS = 1000
MAX_EVENTS = 10_000
MAX_TS = 95_617_584_000.0  # 5000-01-01
ID = Field(min_length=1, max_length=200)
MAX_WEIGHT = 1e6  # ranking only depends on the weights' ratios; larger ones overflow float32
# NaN / Infinity (which Python's JSON parser accepts) would make every score null
Weight = Annotated[float, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]


def _integral(value: Any) -> Any:
    """3.0 is 3 (JSON Schema counts it an integer); 3.5, "3" and true stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integral = Annotated[int, BeforeValidator(_integral)]
RowId = Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_integral)]  # an event row


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _one_of_user_or_items(schema: dict[str, Any]) -> None:
    """The schema says what the validator enforces: exactly one of ``user_id`` and
    ``items``, neither null."""
    for name in ("user_id", "items"):
        prop = schema["properties"][name]
        prop.update(next(v for v in prop.pop("anyOf") if v.get("type") != "null"))
        prop.pop("default", None)
    schema["oneOf"] = [{"required": ["user_id"]}, {"required": ["items"]}]


class RecommendRequest(Strict):
    """Exactly one of ``user_id`` (a known user) and ``items`` (an anonymous session)."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra=_one_of_user_or_items)

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [name for name in ("user_id", "items") if name in data]
            if len(given) != 1:
                raise ValueError("give exactly one of user_id (a known user) or items "
                                 "(a session)")
            if data[given[0]] is None:
                raise ValueError(f"{given[0]} may not be null")
        return data

    user_id: str | None = Field(default=None, min_length=1, max_length=200,
                                description="a known user; or give `items`")
    items: list[str] | None = Field(default=None, max_length=MAX_ITEMS,
                                    description="an anonymous session: item ids, oldest first")
    scenario: str | None = None
    k: Integral = Field(default=10, ge=1, le=MAX_K)
    objective: dict[str, Weight] | None = Field(
        default=None, description="weights over task scores, e.g. {\"next_item\": 1}; "
                                  f"each finite, at most {MAX_WEIGHT:g} in size")
    exclude_seen: bool = True
    category: str | None = None
    policy: bool = Field(default=False, description=(
        "re-order the candidates by the bundle's ranking policy, trained for long-term value "
        "(`mtrec policy train`); a bundle without one answers 422"))


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
    behavior: Behavior = "click"
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
    quarantined: int = Field(default=0, description="of the stored events, those held for "
                             "review (not applied) by the burst rule")


class Health(Strict):
    status: str
    items: int
    users: int
    tasks: list[str]
    events_stored: int
    events_quarantined: int  # held for review: GET /v1/quarantine (admin)
    index: str  # next-item retrieval: exact, hnsw or ivf
    scan: str  # the exact catalog pass: float32, half or int8 (unused past exact_max)
    policy: bool = False  # the bundle has a ranking policy (/v1/recommend "policy": true)


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


class HeldEvent(Strict):
    id: int  # the store's row id (give it to /v1/quarantine/review)
    user_id: str
    item_id: str
    behavior: str
    scenario: str | None
    ts: float | None
    event_id: str | None
    key: str | None  # the API key that posted it
    received: float | None  # the server's clock at arrival
    reason: str


class QuarantineResponse(Strict):
    count: int  # all quarantined events (this page holds at most ``limit``)
    events: list[HeldEvent]


class ReviewRequest(Strict):
    ids: list[RowId] = Field(min_length=1, max_length=MAX_EVENTS)
    action: Literal["release", "drop"] = Field(
        description="release: applied as if just posted; drop: kept, never applied")


class Reviewed(Strict):
    reviewed: int
    not_quarantined: int  # ids that were not (or no longer) quarantined: left as they are
