"""The web page at ``/`` in a real browser: Debian's Chromium driven by Playwright (headless).

The app runs in a real uvicorn server on a free loopback port over the tiny served bundle,
with an API key (all scopes).  As a merchandiser uses the page, it must: send the API key
box's value as X-API-Key on every request and say, on a 401, that the server needs a key
with the read (or write) scope; show a user's history (behaviours and a readable time) and
recommendations (scores to 3 significant digits, per-task scores readable, explanations by
item title); answer a search and add an item; clear stale results on any error and say
what happened (status and the API's detail); label an unknown user's cold-start (trending)
list as such; accept k from 1 to the API's MAX_K; and fit a 390 px wide screen.

Skipped when ``/usr/bin/chromium`` (``apt-get install chromium``; ``make install`` tries)
or the ``playwright`` package is missing.  ``MTREC_WEB_SCREENSHOTS=/tmp`` saves full-page
screenshots there (``web-desktop.png``, ``web-cold.png``, ``web-error.png``,
``web-390.png``, ``web-390-cold.png``) to look at.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from mtrec.data.schema import BEHAVIORS
from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.serve.events import EventLog
from mtrec.serve.schemas import MAX_K
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
KEY = "secret"
# Reads of user data that need a key with the read scope.
READS = re.compile(r"/v1/(users|similar-users|recommend|score)\b")

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing (pip install -e '.[dev]')")
expect = sync_api.expect

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} is missing (Debian: apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def base_url(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app in a uvicorn server on a free loopback port (a background thread)."""
    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    engine = Engine.from_bundle(served.bundle, encoder=encoder)
    log = EventLog(tmp_path_factory.mktemp("web") / "ev.db")
    try:
        with serving(create_app(ServeSettings(api_key=KEY), engine, log)) as url:
            yield url
    finally:
        log.close()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` in a uvicorn server on a free loopback port (a background thread)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the uvicorn server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def get(base_url: str, path: str, key: str | None = None) -> tuple[int, Any]:
    """Status and JSON body of a GET straight to the server (not through the page)."""
    request = urllib.request.Request(base_url + path, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def post(base_url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(),
                                     headers={"X-API-Key": KEY,
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@dataclass
class Tab:
    """A page with what it logged: errors, and each API request's X-API-Key."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (url, key)

    def unexpected(self, *statuses: int) -> list[str]:
        """Errors other than HTTP answers with ``statuses`` (and Chromium's console line
        for each such failed load)."""
        allowed = tuple(f"HTTP {s}:" for s in statuses)
        console = tuple(f"status of {s} " for s in statuses)
        return [e for e in self.errors if not e.startswith(allowed)
                and not (e.startswith("console: Failed to load resource")
                         and any(c in e for c in console))]


def open_page(browser: Any, base_url: str, width: int = 1280, height: int = 900) -> Tab:
    """The page, loaded with an empty API key box (reads of user data need a key)."""
    assert get(base_url, "/v1/users?limit=1")[0] == 401
    context = browser.new_context(viewport={"width": width, "height": height},
                                  is_mobile=width < 600, has_touch=width < 600)
    tab = Tab(context.new_page())
    page = tab.page
    page.set_default_timeout(10_000)
    page.on("console", lambda m: tab.errors.append(f"console: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: tab.errors.append(f"pageerror: {e}"))
    page.on("response", lambda r: tab.errors.append(f"HTTP {r.status}: {r.url}")
            if r.status >= 400 else None)
    page.on("request", lambda r: tab.requests.append((r.url, r.headers.get("x-api-key")))
            if "/v1/" in r.url else None)

    page.goto(base_url + "/")
    return tab


def use_key(page: Any, key: str) -> Any:
    """Type ``key`` in the API key box and use it; the answer of the recommendation it
    triggers (JSON)."""
    page.fill("#api-key", key)
    with page.expect_response(lambda r: r.url.endswith("/v1/recommend")) as answer:
        page.click("#key-form button")
    return answer.value.json()


def recommend(page: Any, user: str, k: int | None = None) -> Any:
    """Ask the page for ``user``'s recommendations; the API's answer (JSON)."""
    page.fill("#user-id", user)
    if k is not None:
        page.fill("#k", str(k))
    with page.expect_response(lambda r: r.url.endswith("/v1/recommend")) as answer:
        page.click("#user-form button")
    expect(page.locator("#user-status")).not_to_have_text("loading…")
    return answer.value.json()


def sig3(x: float) -> str:
    """What the page shows for ``x`` between 0.001 and 1000: 3 significant digits."""
    assert 1e-3 <= abs(x) < 1e3, x
    return f"{x:#.3g}".rstrip(".")  # 0.840, 33.0, 100


def shot(page: Any, name: str) -> None:
    if folder := os.environ.get("MTREC_WEB_SCREENSHOTS"):
        page.screenshot(path=str(Path(folder) / f"web-{name}.png"), full_page=True)


def no_horizontal_scroll(page: Any, width: int) -> None:
    scroll = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide at a {width} px viewport"


def test_page_needs_the_key_recommends_searches_and_adds_an_item(
        browser: Any, base_url: str, served: Served) -> None:
    tab = open_page(browser, base_url)
    page = tab.page
    rows = page.locator("#recs tbody tr")

    # Without a key, reads are refused: the page says which key it needs and shows nothing.
    expect(page.locator("#user-error")).to_contain_text(
        "this server needs an API key with read scope")
    expect(page.locator("#health")).to_contain_text("60 items")
    assert rows.count() == 0 and page.locator("#history li").count() == 0
    assert all(key is None for _, key in tab.requests), tab.requests
    sent_before, refused = len(tab.requests), len(tab.errors)

    # With the key: the first user, their history and recommendations.
    recs = use_key(page, KEY)
    user = served.data.user_ids[0]
    assert page.locator("#user-id").input_value() == user
    expect(rows).to_have_count(10)
    assert not recs["cold_start"] and len(recs["items"]) == 10
    assert not page.locator("#user-error").inner_text()
    assert not page.locator("#recs-label").is_visible()
    status, history = get(base_url, f"/v1/users/{user}/history", KEY)
    assert status == 200
    steps = history["items"]
    titles = {h["item_id"]: h["text"] for h in steps}

    # History: latest first, each with its behaviours and a readable time.
    items = page.locator("#history li")
    expect(items).to_have_count(min(30, len(steps)))
    for row, step in zip(items.all()[:5], reversed(steps), strict=False):
        assert step["behaviors"] and set(step["behaviors"]) <= set(BEHAVIORS), step
        assert step["ts"] is not None  # the planted data has timestamps
        text = row.inner_text()
        assert step["text"] in text and step["item_id"] in text
        chips = row.locator(".chip").all_inner_texts()
        assert chips == step["behaviors"], (chips, step)
        when = datetime.fromtimestamp(step["ts"], UTC)
        assert f"{when.day} {when:%b %Y}, {when:%H:%M} UTC" in text, text

    # Recommendations: scores to 3 significant digits; per-task scores readable (the
    # probabilities as percentages); explanations by the history items' titles.
    for i, rec in enumerate(recs["items"]):
        cells = rows.nth(i).locator("td")
        assert rec["text"] in cells.nth(1).inner_text()
        assert cells.nth(2).inner_text() == sig3(rec["score"])
        per_task = cells.nth(3).inner_text()
        assert f"next item\n{sig3(100 * rec['scores']['next_item'])}%" in per_task, per_task
        assert f"click\n{sig3(100 * rec['scores']['click'])}%" in per_task, per_task
        assert f"rating\n{sig3(rec['scores']['rating'])}" in per_task, per_task
        because = cells.nth(4).inner_text()
        assert rec["because"], rec
        for b in rec["because"]:
            assert b["text"] == titles[b["item_id"]], b
            assert f"{b['text']}\n{b['similarity']:.2f}" in because, because
            assert b["item_id"] not in because, because  # the title, not the raw id

    # Search for a word the planted items use.
    word = served.data.category_words[0][0]
    page.fill("#query", word)
    page.click("#search-form button")
    page.locator("#search-results li").first.wait_for()
    assert page.locator("#search-results li").count() > 0
    assert not page.locator("#search-error").is_visible()

    # Add an item through the form; it is found by search and has neighbours at once.
    new_id = f"web-{uuid.uuid4().hex[:8]}"
    page.fill("#new-id", new_id)
    page.fill("#new-text", f"quartz lantern {new_id} zebra")
    page.click("#item-form button")
    page.locator("#new-similar li").first.wait_for()
    assert page.locator("#item-status").inner_text() == f"added {new_id}"
    assert new_id in page.locator("#new-search li").first.inner_text()
    assert page.locator("#new-similar li").count() > 0

    # Every request since the key was typed carried it, reads included.
    after = tab.requests[sent_before:]
    assert any(READS.search(url) for url, _ in after)
    assert all(key == KEY for _, key in after), after
    no_horizontal_scroll(page, 1280)
    shot(page, "desktop")
    page.context.close()
    assert not tab.unexpected(401), tab.errors  # the 401s: the reads before the key
    assert not tab.errors[refused:], tab.errors


def test_page_k_bounds_cold_start_and_errors(browser: Any, base_url: str,
                                            served: Served) -> None:
    tab = open_page(browser, base_url)
    page = tab.page
    rows = page.locator("#recs tbody tr")
    use_key(page, KEY)
    expect(rows).to_have_count(10)
    user = served.data.user_ids[1]

    # k: what the API allows, 1 to MAX_K; outside it the browser does not send the form.
    k = page.locator("#k")
    assert (k.get_attribute("min"), k.get_attribute("max")) == ("1", str(MAX_K))
    recs = recommend(page, user, MAX_K)
    assert len(recs["items"]) > 10  # all the candidates the tiny catalog has
    expect(rows).to_have_count(len(recs["items"]))
    recommend(page, user, 1)
    expect(rows).to_have_count(1)
    for bad in (0, MAX_K + 1):
        sent = len(tab.requests)
        page.fill("#k", str(bad))
        page.click("#user-form button")
        page.wait_for_timeout(300)
        assert not k.evaluate("e => e.checkValidity()")
        assert len(tab.requests) == sent  # nothing sent
        expect(rows).to_have_count(1)

    # An unknown user: the API's cold-start list, labelled as such; no history.
    recs = recommend(page, f"nobody-{uuid.uuid4().hex[:6]}", 10)
    assert recs["cold_start"]
    expect(rows).to_have_count(len(recs["items"]))
    for i, rec in enumerate(recs["items"]):
        cells = rows.nth(i).locator("td")
        assert cells.nth(1).inner_text().split()[-1] == rec["item_id"]
        assert cells.nth(2).inner_text() == sig3(rec["score"])
    expect(page.locator("#recs-label")).to_have_text("cold start (trending)")
    expect(page.locator("#user-status")).to_contain_text("cold-start list (trending")
    expect(page.locator("#history li")).to_have_text(re.compile("not a known user"))
    assert not page.locator("#user-error").inner_text()
    shot(page, "cold")

    # An error clears the stale results and says what happened: status and the API's detail.
    recommend(page, user, 10)
    expect(rows).to_have_count(10)
    recommend(page, "u" * 201, 10)  # longer than the API's 200 characters
    expect(page.locator("#user-error")).to_contain_text("HTTP 422 (invalid request)")
    expect(page.locator("#user-error")).to_contain_text("user_id")
    assert rows.count() == 0 and page.locator("#history li").count() == 0
    assert not page.locator("#recs-label").is_visible()
    shot(page, "error")

    # A wrong key: reads and writes say which scope they need; nothing stale stays.
    recommend(page, user, 10)
    expect(rows).to_have_count(10)
    page.fill("#api-key", "wrong")
    page.click("#key-form button")
    expect(page.locator("#user-error")).to_contain_text(
        "HTTP 401: this server needs an API key with read scope")
    expect(rows).to_have_count(0)
    page.fill("#new-id", "web-refused")
    page.fill("#new-text", "never added")
    page.click("#item-form button")
    expect(page.locator("#item-status")).to_contain_text(
        "HTTP 401: this server needs an API key with write:items scope")
    expect(page.locator("#item-status")).to_have_class("error")
    page.context.close()
    assert not tab.unexpected(401, 404, 422), tab.errors


def test_page_fits_a_390_px_screen(browser: Any, base_url: str, served: Served) -> None:
    tab = open_page(browser, base_url, width=390, height=844)
    page = tab.page
    rows = page.locator("#recs tbody tr")
    expect(page.locator("#user-error")).to_contain_text("read scope")
    no_horizontal_scroll(page, 390)
    use_key(page, KEY)
    expect(rows).to_have_count(10)
    # Each recommendation a card: title, score, per-task scores and explanations all shown.
    first = rows.first.locator("td")
    for i in range(5):
        assert first.nth(i).is_visible()
    box = rows.first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.fill("#query", served.data.category_words[0][0])
    page.click("#search-form button")
    page.locator("#search-results li").first.wait_for()
    no_horizontal_scroll(page, 390)
    shot(page, "390")

    recommend(page, f"nobody-{uuid.uuid4().hex[:6]}", 10)
    expect(page.locator("#recs-label")).to_have_text("cold start (trending)")
    no_horizontal_scroll(page, 390)
    shot(page, "390-cold")
    recommend(page, "u" * 201, 10)
    expect(page.locator("#user-error")).to_contain_text("HTTP 422")
    no_horizontal_scroll(page, 390)
    page.context.close()
    assert not tab.unexpected(401, 404, 422), tab.errors


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".opblock"),
                                                ("/redoc", "[data-section-id]")])
def test_docs_pages_render_without_internet(browser: Any, base_url: str, path: str,
                                            rendered: str) -> None:
    """Regression (issue 19): /docs was a blank page on a machine without internet (Swagger
    UI came from a CDN).  Requests to any other host are refused here, as offline."""
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []

    def offline(route: Any) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            outside.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", offline)
    page.goto(base_url + path)
    page.wait_for_selector(rendered, timeout=15_000)
    assert page.locator(rendered).count() >= 5  # one per operation or section
    assert "/v1/recommend" in page.content()
    # nothing the page needs comes from elsewhere: ReDoc's script only asks its CDN for
    # the footer's logo (an image; the page renders without it)
    assert all(o.startswith("image ") for o in outside), outside
    context.close()
