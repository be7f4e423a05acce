"""The HTTP API over a tiny bundle trained on planted data (a random tiny BERT as encoder).

Checks answers, not just status codes: a user's recommendations exclude their history and
follow the planted taste; a posted event changes the next recommendation; a new item is
found by search and similar-items at once; every bad request is a 4xx with a JSON message.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mtrec.data.synthetic import SyntheticData
from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.serve.events import EventLog
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served

KEY = {"X-API-Key": "secret"}
LOCAL = "http://localhost"  # a Host the server trusts by default


@pytest.fixture()
def client(served: Served, tmp_path: Path) -> Iterator[TestClient]:
    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    engine = Engine.from_bundle(served.bundle, encoder=encoder)
    app = create_app(ServeSettings(api_key="secret"), engine, EventLog(tmp_path / "ev.db"))
    with TestClient(app, raise_server_exceptions=False, base_url=LOCAL, headers=KEY) as c:
        yield c


def _user_items(data: SyntheticData, user: str) -> set[str]:
    events = data.result.events
    users = np.array(events.column("user_id").to_pylist())
    return set(np.array(events.column("item_id").to_pylist())[users == user].tolist())


def test_health_and_docs(client: TestClient) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["items"] == 60 and health["users"] == 120
    assert health["tasks"] == ["next_item", "click", "rating"]
    assert "/v1/recommend" in client.get("/openapi.json").json()["paths"]
    assert client.get("/").status_code == 200 and "mtrec" in client.get("/").text


def test_start_up_objects_are_frozen_while_serving(served: Served, tmp_path: Path) -> None:
    """Regression: a full collection over the ~400,000 start-up objects paused a worker for
    ~240 ms (the slowest POST /v1/items took 175 ms); frozen, collections skip them."""
    app = create_app(ServeSettings(), Engine.from_bundle(served.bundle))
    with TestClient(app):
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0  # released at shutdown


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/v1/health")
    client.get("/v1/similar-items", params={"item_id": "nope"})
    text = client.get("/v1/metrics").text
    assert 'mtrec_requests_total{route="/health",status="200"} 1.0' in text
    assert 'mtrec_requests_total{route="/similar-items",status="404"} 1.0' in text
    assert "mtrec_request_seconds_bucket" in text
    timing = client.get("/v1/health").headers["server-timing"]
    assert timing.startswith("app;dur=") and float(timing.split("=")[1]) >= 0


def test_recommend_a_known_user(client: TestClient, served: Served) -> None:
    user = served.data.user_ids[0]
    body = client.post("/v1/recommend", json={"user_id": user, "k": 5}).json()
    ids = [r["item_id"] for r in body["items"]]
    assert len(ids) == 5 == len(set(ids)) and not body["cold_start"]
    assert not set(ids) & _user_items(served.data, user)
    scores = [r["score"] for r in body["items"]]
    assert scores == sorted(scores, reverse=True)
    first = body["items"][0]
    assert set(first["scores"]) == {"next_item", "click", "rating"}
    assert first["because"] and all(b["item_id"] in _user_items(served.data, user)
                                    for b in first["because"])


def test_objective_reorders_by_the_weighted_tasks(client: TestClient, served: Served) -> None:
    user = served.data.user_ids[1]
    body = client.post("/v1/recommend", json={"user_id": user, "k": 8,
                                              "objective": {"rating": 1.0}}).json()
    ratings = [r["scores"]["rating"] for r in body["items"]]
    assert [r["score"] for r in body["items"]] == pytest.approx(ratings)
    assert ratings == sorted(ratings, reverse=True)


def test_unknown_user_gets_trending_not_an_error(client: TestClient) -> None:
    body = client.post("/v1/recommend", json={"user_id": "nobody", "k": 3}).json()
    trending = client.get("/v1/trending?k=3").json()["items"]
    assert body["cold_start"] and [r["item_id"] for r in body["items"]] == [
        t["item_id"] for t in trending]


def test_session_of_items(client: TestClient, served: Served) -> None:
    items = list(served.data.item_ids[:3])
    body = client.post("/v1/recommend", json={"items": items, "k": 4}).json()
    assert len(body["items"]) == 4 and not {r["item_id"] for r in body["items"]} & set(items)


def test_posted_events_change_the_next_recommendation(client: TestClient,
                                                      served: Served) -> None:
    user = served.data.user_ids[2]
    before = client.post("/v1/recommend", json={"user_id": user, "k": 10}).json()["items"]
    picked = before[0]["item_id"]
    events = [{"user_id": user, "item_id": picked, "behavior": "click"}]
    assert client.post("/v1/events", json={"events": events}, headers=KEY).json() == {
        "stored": 1, "duplicates": 0, "quarantined": 0}
    after = client.post("/v1/recommend", json={"user_id": user, "k": 10}).json()["items"]
    assert picked not in [r["item_id"] for r in after]  # now seen, so excluded
    history = client.get(f"/v1/users/{user}/history").json()["items"]
    assert history[-1]["item_id"] == picked
    assert client.get("/v1/health").json()["events_stored"] == 1


def test_a_retried_batch_with_event_ids_is_stored_once(client: TestClient,
                                                        served: Served) -> None:
    user, items = served.data.user_ids[3], served.data.item_ids[:3]
    known = len(client.get(f"/v1/users/{user}/history").json()["items"])
    events = [{"user_id": user, "item_id": i, "event_id": f"retry-{n}"}
              for n, i in enumerate(items[:2])]
    first = client.post("/v1/events", json={"events": events}, headers=KEY).json()
    assert first == {"stored": 2, "duplicates": 0, "quarantined": 0}
    # the client lost that answer and posts again, with one more event
    again = [*events, {"user_id": user, "item_id": items[2], "event_id": "retry-2"}]
    assert client.post("/v1/events", json={"events": again}, headers=KEY).json() == {
        "stored": 1, "duplicates": 2, "quarantined": 0}
    history = [i["item_id"] for i in client.get(f"/v1/users/{user}/history").json()["items"]]
    assert history[-3:] == list(items) and len(history) == known + 3
    assert client.get("/v1/health").json()["events_stored"] == 3
    # without ids, nothing tells a retry from a repeat: both are stored
    bare = [{"user_id": user, "item_id": items[0]}]
    for _ in range(2):
        assert client.post("/v1/events", json={"events": bare}, headers=KEY).json()[
            "stored"] == 1
    assert client.get("/v1/health").json()["events_stored"] == 5


def test_new_item_is_searchable_and_similar_at_once(client: TestClient) -> None:
    text = "zebra quartz lantern"
    written = client.post("/v1/items", json={"items": [{"item_id": "new-1", "text": text}]},
                          headers=KEY).json()
    assert written["written"] == 1 and written["codes"] == [61]
    hits = client.get("/v1/search", params={"q": text, "k": 3}).json()["items"]
    assert hits[0]["item_id"] == "new-1" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    similar = client.get("/v1/similar-items", params={"item_id": "new-1", "k": 3}).json()
    assert len(similar["items"]) == 3 and "new-1" not in [i["item_id"] for i in similar["items"]]
    session = client.post("/v1/recommend", json={"items": ["new-1"], "k": 3}).json()
    assert len(session["items"]) == 3


def test_score_and_similar_users(client: TestClient, served: Served) -> None:
    user, items = served.data.user_ids[0], list(served.data.item_ids[:4])
    body = client.post("/v1/score", json={"user_id": user, "items": items}).json()
    assert set(body["scores"]) == {"next_item", "click", "rating"}
    assert all(len(v) == 4 for v in body["scores"].values())
    users = client.get("/v1/similar-users", params={"user_id": user, "k": 5}).json()["users"]
    assert len(users) == 5 and user not in [u["user_id"] for u in users]


BAD: list[tuple[str, str, dict[str, Any], int]] = [
    ("post", "/v1/recommend", {"json": {"user_id": "u", "k": 0}}, 422),
    ("post", "/v1/recommend", {"json": {"user_id": "u", "k": 10**6}}, 422),
    ("post", "/v1/recommend", {"json": {"user_id": "u", "colour": "red"}}, 422),
    ("post", "/v1/recommend", {"json": {"user_id": 5}}, 422),
    ("post", "/v1/recommend", {"json": {"items": ["no-such-item"]}}, 404),
    ("post", "/v1/recommend", {"json": {"user_id": "u", "scenario": "nowhere"}}, 404),
    ("post", "/v1/recommend", {"json": {}}, 422),
    ("post", "/v1/recommend", {"content": b"{not json", "headers": {
        "Content-Type": "application/json"}}, 422),
    ("post", "/v1/recommend", {"json": {"user_id": "u", "objective": {"fly": 1.0}}}, 422),
    ("get", "/v1/similar-items?item_id=nope", {}, 404),
    ("get", "/v1/search?q=", {}, 422),
    ("post", "/v1/events", {"json": {"events": [{"user_id": "u", "item_id": "x"}]},
                            "headers": {"X-API-Key": ""}}, 401),
    ("post", "/v1/events", {"json": {"events": []}, "headers": KEY}, 422),
    ("post", "/v1/items", {"json": {"items": [{"item_id": "a", "text": "t"}]},
                           "headers": {"X-API-Key": "wrong"}}, 401),
    ("post", "/v1/items", {"content": b"x" * 3_000_000, "headers": {
        **KEY, "Content-Type": "application/json"}}, 413),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD,
                         ids=[f"{m} {p} {s}" for m, p, _, s in BAD])
def test_bad_requests_are_4xx_with_a_json_message(client: TestClient, method: str, path: str,
                                                  kwargs: dict[str, Any], status: int) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"]


def test_bad_event_is_refused_and_nothing_is_stored(client: TestClient,
                                                    served: Served) -> None:
    user, item = served.data.user_ids[0], served.data.item_ids[0]
    events = [{"user_id": user, "item_id": item}, {"user_id": user, "item_id": "nope"}]
    response = client.post("/v1/events", json={"events": events}, headers=KEY)
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert client.get("/v1/health").json()["events_stored"] == 0


def test_category_filter_keeps_only_that_category(client: TestClient, served: Served) -> None:
    data = served.data
    wanted = data.category_names[int(data.item_category[0])]
    category = dict(zip(data.item_ids, (data.category_names[c] for c in data.item_category),
                        strict=True))
    body = client.post("/v1/recommend", json={"user_id": data.user_ids[3], "k": 5,
                                              "category": wanted}).json()
    assert body["items"] and all(category[r["item_id"]] == wanted for r in body["items"])


def test_engine_state_matches_the_offline_recommender(served: Served) -> None:
    """Regression (review): the engine built user states without time gaps, so serving
    scored differently from `Recommender` and from evaluation."""
    engine = Engine.from_bundle(served.bundle)
    for user in served.data.user_ids[:5]:
        scen = engine.scenario(None)
        served_query = engine.state(engine.history(user), scen).query
        offline_query = engine.rec.state(engine.rec.steps(user), scen).query
        assert torch.allclose(served_query, offline_query, atol=1e-5)


def test_the_recommend_reply_built_without_validation_fits_its_schema(
        client: TestClient, served: Served) -> None:
    """``_recommended`` builds its reply with ``model_construct`` (no validation): every value
    must already be what the strict schema takes (str and float, not numpy scalars)."""
    from mtrec.serve import schemas as s
    from mtrec.serve.routers.recommend import _ask, _recommended

    service = client.app.state.service  # type: ignore[attr-defined]
    for body in (s.RecommendRequest(user_id=served.data.user_ids[0], k=5),
                 s.RecommendRequest(items=list(served.data.item_ids[:2]), k=3),
                 s.RecommendRequest(user_id="nobody", k=2)):
        ask = _ask(service, body)
        hits = service.engine.recommend_many([ask])[0]
        reply = _recommended(body, hits, cold=not ask.history, service=service)
        checked = s.RecommendResponse.model_validate(reply.model_dump(), strict=True)
        assert checked == reply and len(checked.items) == body.k
        assert isinstance(checked.items[0].score, float)
