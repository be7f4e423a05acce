"""The HTTP edges: body limits (declared and streamed), 405 with ``Allow`` under /v1, error
bodies documented in the OpenAPI, the one-of rule in the request schema, and docs pages
whose assets are served from this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from tests.serve.conftest import Served

KEY = {"X-API-Key": "secret"}


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[TestClient]:
    app = create_app(ServeSettings(api_key="secret", max_body_bytes=100_000),
                     Engine.from_bundle(served.bundle))
    with TestClient(app, base_url="http://localhost", headers=KEY,
                    raise_server_exceptions=False) as c:
        yield c


def _chunks(total: int, size: int = 65_536) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    """Regression (issue 19): a chunked 3 MB body got 400 "error parsing the body"."""
    r = client.post("/v1/recommend", content=_chunks(300_000),
                    headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # sent chunked
    assert r.status_code == 413 and r.json()["error"] == "request too large"


def test_a_declared_body_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/events", content=b"x" * 100_001,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_a_streamed_body_under_the_limit_is_read_whole(client: TestClient,
                                                       served: Served) -> None:
    body = b'{"user_id": "%s", "k": 3}' % served.data.user_ids[0].encode()
    r = client.post("/v1/recommend", content=iter([body[:7], body[7:]]),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and len(r.json()["items"]) == 3


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/v1/recommend", "POST"),
    ("OPTIONS", "/v1/events", "POST"),
    ("DELETE", "/v1/items", "POST"),
    ("POST", "/v1/health", "GET"),
    ("HEAD", "/v1/trending", "GET"),
    ("PUT", "/v1/users/u1/history", "GET"),
])
def test_wrong_method_on_a_known_path_is_405_with_allow(client: TestClient, method: str,
                                                         path: str, allow: str) -> None:
    """Regression (issue 19): the web page's static mount answered 404, or 405 with
    ``allow: GET, HEAD``."""
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    if method != "HEAD":  # no body
        assert r.json()["error"] == "method not allowed" and method in r.json()["detail"]


def test_unknown_path_under_v1_is_a_json_404(client: TestClient) -> None:
    r = client.post("/v1/no-such-route", json={})
    assert r.status_code == 404 and r.json() == {"error": "not found",
                                                 "detail": "no route /v1/no-such-route"}


def test_openapi_documents_the_error_body_of_every_status(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            needed = {"404", "413", "422"} | ({"401", "403", "429"} if "x-scope" in op else set())
            for status in needed:
                content = op["responses"][status]["content"]["application/json"]
                assert content["schema"] == error, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_a_422_body_matches_the_documented_schema(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"user_id": "u", "k": 0})
    assert r.status_code == 422
    assert set(r.json()) == {"error", "detail"} and isinstance(r.json()["detail"], str)


def test_the_request_schema_states_exactly_one_of_user_or_items(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]
    assert schema["oneOf"] == [{"required": ["user_id"]}, {"required": ["items"]}]
    assert schema["properties"]["user_id"]["type"] == "string"  # not nullable
    for body in ({}, {"user_id": "u", "items": ["x"]}, {"user_id": None, "items": ["x"]},
                 {"user_id": "u", "items": None}):
        r = client.post("/v1/recommend", json=body)
        assert r.status_code == 422, body


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_this_server(client: TestClient, page: str) -> None:
    html = client.get(page).text
    assert "cdn" not in html.lower() and "googleapis" not in html
    assets = [part.split('"')[0] for part in html.split('"/docs-assets/')[1:]]
    assert assets, html
    for asset in assets:
        r = client.get(f"/docs-assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 1000, asset


def test_every_route_refuses_unknown_query_parameters(client: TestClient) -> None:
    """As unknown body fields are: a misspelt ``?kk=5`` must not be ignored in silence."""
    paths = client.get("/openapi.json").json()["paths"]
    for path, ops in paths.items():
        for method in ops:
            r = client.request(method.upper(), path.replace("{user_id}", "u"),
                               params={"bogus": "1"})
            assert r.status_code == 422 and "'bogus'" in r.json()["detail"], (method, path)
