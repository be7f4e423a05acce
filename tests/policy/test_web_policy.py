"""The web page shows the long-term policy's list beside the default one, for a bundle with a
policy (a bundle without one: tests/serve/test_web.py, where the panel stays hidden)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from tests.serve.test_web import (
    KEY,
    browser,
    open_page,
    post,
    pytestmark,
    serving,
    sync_api,
    use_key,
)

__all__ = ["browser", "pytestmark"]  # (the fixture and the skip marks of the page tests)


@pytest.fixture(scope="module")
def policy_url(trained: Any) -> Iterator[str]:
    home, _ = trained
    with serving(create_app(ServeSettings(api_key=KEY),
                            Engine.from_bundle(home / "bundle"))) as url:
        yield url


def test_page_shows_the_policy_list_beside_the_default(browser: Any, policy_url: str) -> None:
    tab = open_page(browser, policy_url)
    page = tab.page
    sync_api.expect(page.locator("#health")).to_contain_text("long-term policy")
    use_key(page, KEY)
    rows = page.locator("#policy-recs tbody tr")
    sync_api.expect(rows).to_have_count(10)
    assert page.locator("#policy-panel").is_visible()
    user = page.locator("#user-id").input_value()
    answer = post(policy_url, "/v1/recommend", {"user_id": user, "k": 10, "policy": True})
    for i, item in enumerate(answer["items"]):  # the policy's list, in its order
        assert item["item_id"] in rows.nth(i).locator("td").nth(1).inner_text()
    default = post(policy_url, "/v1/recommend", {"user_id": user, "k": 10})
    shown = page.locator("#recs tbody tr")
    for i, item in enumerate(default["items"]):  # and the default list beside it
        assert item["item_id"] in shown.nth(i).locator("td").nth(1).inner_text()
    page.context.close()
    assert not tab.unexpected(401), tab.errors
