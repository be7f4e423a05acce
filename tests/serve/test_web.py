"""The web page at ``/`` in a real browser: Debian's Chromium driven by Playwright (headless).

The app runs in a real uvicorn server on a free loopback port over the tiny served bundle.
The page must show a user's history and recommendations (with per-task scores), answer a
search, and add an item through its form (API key in X-API-Key), then show it found by
search and with similar items, all without a console error.

Skipped when ``/usr/bin/chromium`` (``apt-get install chromium``; ``make install`` tries)
or the ``playwright`` package is missing.  ``MTREC_WEB_SCREENSHOT=/tmp/page.png`` saves a
full-page screenshot of the final state.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.serve.events import EventLog
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing (pip install -e '.[dev]')")

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
    app = create_app(ServeSettings(api_key="secret"), engine, log)
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
        log.close()


def test_page_recommends_searches_and_adds_an_item(base_url: str, served: Served) -> None:
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.on("console", lambda m: errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url}")
                    if r.status >= 400 else None)
            page.goto(base_url + "/")

            # On load: health, the first user, their history and recommendations.
            rows = page.locator("#recs tbody tr")
            rows.first.wait_for()
            assert "60 items" in page.locator("#health").inner_text()
            assert page.locator("#user-id").input_value() == served.data.user_ids[0]
            assert rows.count() == 10
            for i in range(rows.count()):
                per_task = rows.nth(i).locator("td").nth(3).inner_text()
                assert all(t in per_task for t in ("next_item", "click", "rating")), per_task
            assert rows.first.locator("td").nth(4).inner_text().strip()  # because you saw
            assert page.locator("#history li").count() > 0
            assert not page.locator("#user-error").inner_text()

            # Search for a word the planted items use.
            word = served.data.category_words[0][0]
            page.fill("#query", word)
            page.click("#search-form button")
            page.locator("#search-results li").first.wait_for()
            assert page.locator("#search-results li").count() > 0

            # Add an item through the form; it is found by search and has neighbours at once.
            new_id = f"web-{uuid.uuid4().hex[:8]}"
            page.fill("#new-id", new_id)
            page.fill("#new-text", f"quartz lantern {new_id} zebra")
            page.fill("#api-key", "secret")
            page.click("#item-form button")
            page.locator("#new-similar li").first.wait_for()
            assert page.locator("#item-status").inner_text() == f"added {new_id}"
            assert new_id in page.locator("#new-search li").first.inner_text()
            assert page.locator("#new-similar li").count() > 0

            if shot := os.environ.get("MTREC_WEB_SCREENSHOT"):
                page.screenshot(path=shot, full_page=True)
        finally:
            browser.close()
    assert not errors, errors

