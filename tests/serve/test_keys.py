"""Scoped API keys, rate limits, trusted hosts and CORS over the tiny served bundle.

The scope table below is the contract: a test fails when a route is added to the OpenAPI
without an entry, and every route is called with no key, with a key of each other scope and
with the right one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.serve.keys import SCOPES, ApiKey, Bucket, Keyring, hash_key, load_keys
from tests.serve.conftest import Served

LOCAL = "http://localhost"
# every operation of the OpenAPI and the scope it needs (None: open to anyone)
NEEDS: dict[tuple[str, str], str | None] = {
    ("GET", "/v1/health"): None,
    ("GET", "/v1/similar-items"): None,
    ("GET", "/v1/search"): None,
    ("GET", "/v1/trending"): None,
    ("POST", "/v1/recommend"): "read",
    ("POST", "/v1/score"): "read",
    ("GET", "/v1/users"): "read",
    ("GET", "/v1/users/{user_id}/history"): "read",
    ("GET", "/v1/similar-users"): "read",
    ("POST", "/v1/events"): "write:events",
    ("POST", "/v1/items"): "write:items",
    ("GET", "/v1/quarantine"): "admin",
    ("POST", "/v1/quarantine/review"): "admin",
}
KEYS = {scope: f"key-{scope}" for scope in SCOPES}


def _keys(**limits: Any) -> tuple[ApiKey, ...]:
    return tuple(ApiKey(scope, hash_key(key), frozenset({scope}), **limits)
                 for scope, key in KEYS.items())


@pytest.fixture(scope="module")
def engine(served: Served) -> Engine:
    return Engine.from_bundle(served.bundle)


def _client(engine: Engine, **settings: Any) -> TestClient:
    app: FastAPI = create_app(ServeSettings(**settings), engine)
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.fixture()
def client(engine: Engine) -> Iterator[TestClient]:
    with _client(engine, keys=_keys()) as c:
        yield c


def _call(client: TestClient, method: str, path: str, served: Served,
          key: str | None) -> int:
    user, item = served.data.user_ids[0], served.data.item_ids[0]
    url = path.replace("{user_id}", user)
    params = {"item_id": item, "q": "x", "user_id": user}
    bodies = {"/v1/recommend": {"user_id": user}, "/v1/score": {"user_id": user,
                                                                 "items": [item]},
              "/v1/events": {"events": [{"user_id": user, "item_id": item}]},
              "/v1/items": {"items": [{"item_id": "n", "text": "t"}]},
              "/v1/quarantine/review": {"ids": [1], "action": "drop"}}
    headers = {} if key is None else {"X-API-Key": key}
    return client.request(method, url, params=params, json=bodies.get(path),
                          headers=headers).status_code


def test_the_scope_table_covers_every_route_of_the_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    documented = {(m.upper(), p): op.get("x-scope") for p, ops in paths.items()
                  for m, op in ops.items()}
    assert documented == NEEDS


def test_every_route_checks_its_scope(client: TestClient, served: Served) -> None:
    for (method, path), scope in NEEDS.items():
        anonymous = _call(client, method, path, served, None)
        if scope is None:
            assert anonymous not in (401, 403), (method, path)
            continue
        assert anonymous == 401, (method, path, anonymous)
        assert _call(client, method, path, served, "not-a-key") == 401, (method, path)
        for other in set(SCOPES) - {scope, "admin"}:
            assert _call(client, method, path, served, KEYS[other]) == 403, (method, path, other)
        for good in (scope, "admin"):
            status = _call(client, method, path, served, KEYS[good])
            assert status not in (401, 403, 429), (method, path, good, status)


def test_the_key_is_checked_before_the_body_is_read(client: TestClient) -> None:
    """Regression: a keyed route answered a body that was not JSON with 422 before it
    looked at the key (the check was a dependency, solved after the body is parsed)."""
    for path in ("/v1/recommend", "/v1/events", "/v1/items", "/v1/quarantine/review"):
        r = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 401, (path, r.text)
    # with the right key, the same body is the client's error, said as such
    r = client.post("/v1/recommend", content=b"{not json",
                    headers={"Content-Type": "application/json", "X-API-Key": KEYS["read"]})
    assert r.status_code == 422 and r.json()["error"] == "invalid request"


def test_a_route_outside_the_guarded_route_class_is_refused_at_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import APIRouter

    from mtrec.serve import routers
    from mtrec.serve.routers.common import GuardedRoute

    plain = APIRouter()

    @plain.get("/leak")
    def leak() -> dict[str, str]:  # a route that would skip the key check
        return {}

    monkeypatch.setattr(routers, "ROUTERS", (*routers.ROUTERS, plain))
    with pytest.raises(TypeError, match="/leak is not a GuardedRoute"):
        routers.include_routes(FastAPI())
    raw = APIRouter(route_class=GuardedRoute)  # a plain Starlette route on a guarded router
    raw.add_route("/raw", lambda request: None)
    monkeypatch.setattr(routers, "ROUTERS", (*routers.ROUTERS[:-1], raw))
    with pytest.raises(TypeError, match="/raw is not a GuardedRoute"):
        routers.include_routes(FastAPI())


def test_a_server_without_keys_refuses_user_data_and_says_why(engine: Engine,
                                                              served: Served) -> None:
    with _client(engine) as client:
        r = client.get("/v1/users")
        assert r.status_code == 401 and "--keys" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "X-API-Key"
        assert client.get("/v1/health").status_code == 200


def test_errors_name_the_key_and_scope(client: TestClient) -> None:
    r = client.get("/v1/users", headers={"X-API-Key": KEYS["write:events"]})
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden",
                        "detail": "key 'write:events' lacks the 'read' scope"}


def test_rate_limited_key_gets_429_with_retry_after(engine: Engine) -> None:
    with _client(engine, keys=_keys(rate=0.5, burst=2)) as client:
        read = {"X-API-Key": KEYS["read"]}
        assert [client.get("/v1/users", headers=read).status_code for _ in range(2)] == [200,
                                                                                        200]
        r = client.get("/v1/users", headers=read)
        assert r.status_code == 429 and r.headers["retry-after"] == "2", r.text
        assert "0.5" in r.json()["detail"]
        # another key has its own bucket
        assert client.get("/v1/users", headers={"X-API-Key": KEYS["admin"]}).status_code == 200


def test_bucket_refills_at_its_rate() -> None:
    bucket = Bucket(rate=2.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token in half a second
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # capped at burst


def test_keys_file_round_trip_and_hash_at_rest(tmp_path: Path) -> None:
    made = ApiKey("shop", hash_key("s3cret"), frozenset({"read", "write:events"}), 5.0, 10)
    path = tmp_path / "keys.toml"
    path.write_text(made.toml())
    assert load_keys(path) == (made,)
    assert "s3cret" not in path.read_text()
    ring = Keyring(load_keys(path))
    found = ring.find("s3cret")
    assert found is not None and found.allows("write:events") and not found.allows("admin")


BAD_FILES = [
    ("[[key]]\nname = 'a'\n", "sha256"),
    ("[[key]]\nname = 'a'\nsha256 = '%s'\nscopes = ['reed']\n" % ("0" * 64), "'scopes'"),
    ("[[key]]\nname = 'a'\nsha256 = '%s'\nscopes = ['read']\nrate = -1\n" % ("0" * 64),
     "'rate'"),
    ("[[key]]\nname = 'a'\nsha256 = '%s'\nscopes = ['read']\ncolour = 1\n" % ("0" * 64),
     "colour"),
    ("[[key]]\nname = 'a'\nsha256 = '%s'\nscopes = ['read']\n" % ("0" * 64) * 2, "two keys"),
    ("key = [", "not valid TOML"),
    ("", "one or more [[key]]"),
]


@pytest.mark.parametrize(("text", "named"), BAD_FILES)
def test_bad_key_files_name_the_file_and_field(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"keys\.toml") as info:
        load_keys(path)
    assert named in str(info.value)


def test_untrusted_host_is_refused(engine: Engine) -> None:
    with _client(engine, keys=_keys()) as client:
        r = client.get("/v1/health", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and "attacker.example" in r.json()["detail"]
        assert client.get("/v1/health", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/v1/health", headers={"Host": "[::1]:8000"}).status_code == 200
    with _client(engine, allowed_hosts=("*.shop.example",)) as client:
        assert client.get("/v1/health", headers={"Host": "api.shop.example"}).status_code == 200
        assert client.get("/v1/health", headers={"Host": "localhost"}).status_code == 400


PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "x-api-key, content-type"}


def test_cors_is_closed_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://shop.example"}
    r = client.options("/v1/recommend", headers={**origin, **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in client.get("/v1/health", headers=origin).headers


def test_cors_allows_the_configured_origins_only(engine: Engine) -> None:
    with _client(engine, cors_origins=("https://shop.example",)) as client:
        ok = client.options("/v1/recommend", headers={"Origin": "https://shop.example",
                                                      **PREFLIGHT})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
        other = client.options("/v1/recommend", headers={"Origin": "https://evil.example",
                                                         **PREFLIGHT})
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code == 400 and other.json() == {
            "error": "bad request", "detail": "Disallowed CORS origin"}


@pytest.mark.parametrize(("entry", "named"), [
    ({"name": 'x"y'}, "'name'"),
    ({"rate": 5e-324}, "'rate'"),
    ({"trending_budget": 1e12}, "'trending_budget'"),
])
def test_keys_that_would_break_the_file_or_the_server_are_refused(entry: dict[str, Any],
                                                                  named: str) -> None:
    """A quote in a name wrote an unreadable file; a rate of 5e-324 answered 500."""
    from mtrec.serve.keys import parse_key

    base = {"name": "k", "sha256": "0" * 64, "scopes": ["read"]}
    with pytest.raises(ValueError, match=named):
        parse_key({**base, **entry}, "test")


def test_a_directory_as_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_keys(tmp_path)
