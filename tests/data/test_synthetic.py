"""Tests of the synthetic dataset generator and the structure it plants."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from mtrec.data import schema
from mtrec.data.synthetic import SyntheticConfig, SyntheticData, generate


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(SyntheticConfig())


def _tables(d: SyntheticData) -> list[pa.Table]:
    return [d.result.items, d.result.users, d.result.events]


def test_same_seed_gives_identical_tables() -> None:
    a = generate(SyntheticConfig(n_users=60, seed=3))
    b = generate(SyntheticConfig(n_users=60, seed=3))
    for ta, tb in zip(_tables(a), _tables(b), strict=True):
        assert ta.equals(tb)
    assert np.array_equal(a.user_taste, b.user_taste)
    assert np.array_equal(a.item_category, b.item_category)


def test_different_seed_gives_different_tables() -> None:
    a = generate(SyntheticConfig(n_users=60, seed=3))
    b = generate(SyntheticConfig(n_users=60, seed=4))
    assert not a.result.events.equals(b.result.events)
    assert not a.result.items.equals(b.result.items)
    assert not np.array_equal(a.user_taste, b.user_taste)


def test_tables_match_schema(data: SyntheticData) -> None:
    for name in ("items", "users", "events"):
        table = getattr(data.result, name)
        assert table.schema.equals(schema.SCHEMAS[name])
        assert schema.validate(table, name).num_rows == table.num_rows
    assert data.result.dataset == "synthetic"
    assert data.result.files == []
    assert data.result.notes == []  # every event's user and item has metadata
    assert not data.result.log.bad_rows


def test_counts_within_configured_ranges(data: SyntheticData) -> None:
    cfg = data.config
    assert data.result.users.num_rows == cfg.n_users
    assert data.result.items.num_rows == cfg.n_items
    assert data.user_taste.shape == (cfg.n_users,)
    assert data.item_category.shape == (cfg.n_items,)
    assert set(data.user_taste.tolist()) <= set(range(cfg.n_categories))
    assert set(data.item_category.tolist()) == set(range(cfg.n_categories))
    ev = data.result.events.to_pydict()
    views = Counter(u for u, b in zip(ev["user_id"], ev["behavior"], strict=True) if b == "view")
    low, high = cfg.events_per_user
    assert set(views) == set(data.user_ids)
    assert all(low <= n <= high for n in views.values())
    assert set(ev["scenario"]) == set(cfg.scenarios)
    assert set(ev["behavior"]) <= {"view", "click", "cart", "collect", "purchase", "rate"}
    assert ev["seq"] == list(range(len(ev["seq"])))


def test_users_interact_mostly_with_their_taste(data: SyntheticData) -> None:
    ev = data.result.events.to_pydict()
    user_index = {u: i for i, u in enumerate(data.user_ids)}
    item_index = {it: i for i, it in enumerate(data.item_ids)}
    hits: dict[str, list[bool]] = defaultdict(list)
    for u, it, b in zip(ev["user_id"], ev["item_id"], ev["behavior"], strict=True):
        if b == "view":
            taste = data.user_taste[user_index[u]]
            hits[u].append(bool(data.item_category[item_index[it]] == taste))
    assert len(hits) == data.config.n_users
    for u, h in hits.items():
        assert sum(h) / len(h) >= 0.7, u


def test_item_text_carries_its_category_words(data: SyntheticData) -> None:
    items = data.result.items.to_pydict()
    all_words = [set(w) for w in data.category_words]
    for a in range(len(all_words)):  # the vocabularies do not overlap
        for b in range(a + 1, len(all_words)):
            assert not all_words[a] & all_words[b]
    for i, item_id in enumerate(items["item_id"]):
        c = int(data.item_category[data.item_ids.index(item_id)])
        assert items["category"][i] == data.category_names[c]
        assert json.loads(items["attributes"][i]) == {"category_index": c}
        for text in (items["title"][i], items["text"][i]):
            tokens = set(text.split())
            assert tokens & all_words[c]
            others = set().union(*(w for k, w in enumerate(all_words) if k != c))
            assert not tokens & others
        assert items["price"][i] > 0
        assert items["scenario"][i] in data.config.scenarios


def test_funnel_is_monotonic(data: SyntheticData) -> None:
    counts = Counter(data.result.events.column("behavior").to_pylist())
    assert counts["view"] >= counts["click"] >= counts["cart"] >= counts["purchase"] > 0
    assert counts["click"] >= counts["collect"] > 0
    assert counts["click"] >= counts["rate"] > 0
    # Per (user, item) funnel: a purchase always follows a cart, a cart a click.
    ev = data.result.events.to_pydict()
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for u, it, b in zip(ev["user_id"], ev["item_id"], ev["behavior"], strict=True):
        need = {"click": "view", "cart": "click", "collect": "click", "purchase": "cart",
                "rate": "click"}.get(b)
        assert need is None or need in seen[(u, it)], (u, it, b)
        seen[(u, it)].add(b)


def test_ratings_are_higher_for_taste_items(data: SyntheticData) -> None:
    ev = data.result.events.to_pydict()
    user_index = {u: i for i, u in enumerate(data.user_ids)}
    item_index = {it: i for i, it in enumerate(data.item_ids)}
    fav: list[float] = []
    other: list[float] = []
    for u, it, b, v in zip(ev["user_id"], ev["item_id"], ev["behavior"], ev["value"],
                           strict=True):
        if b == "rate":
            is_fav = data.item_category[item_index[it]] == data.user_taste[user_index[u]]
            (fav if is_fav else other).append(v)
        else:
            assert v == 1.0
    assert fav and other
    assert all(v in (1, 2, 3, 4, 5) for v in fav + other)
    assert min(fav) > max(other)


def test_timestamps_non_decreasing_per_user(data: SyntheticData) -> None:
    ev = data.result.events.to_pydict()
    last: dict[str, datetime] = {}
    for u, ts in zip(ev["user_id"], ev["ts"], strict=True):
        assert ts is not None and ts >= data.config.start
        assert ts >= last.get(u, ts), u
        last[u] = ts
    # Each user's events are contiguous (emitted user by user).
    order = [u for i, u in enumerate(ev["user_id"]) if i == 0 or ev["user_id"][i - 1] != u]
    assert len(order) == len(set(order))


def test_switches_drop_timestamps_and_text() -> None:
    d = generate(SyntheticConfig(n_users=5, n_items=10, with_timestamps=False, with_text=False))
    assert d.result.events.column("ts").null_count == d.result.events.num_rows
    assert d.result.items.column("created_at").null_count == 10
    assert d.result.items.column("title").null_count == 10
    assert d.result.items.column("text").null_count == 10
    assert d.result.items.column("category").null_count == 0


def test_users_have_attributes(data: SyntheticData) -> None:
    for attrs in data.result.users.column("attributes").to_pylist():
        parsed = json.loads(attrs)
        assert 18 <= parsed["age"] < 70
        assert parsed["gender"] in ("f", "m")


def test_single_category_edge_case() -> None:
    d = generate(SyntheticConfig(n_users=4, n_items=3, n_categories=1, events_per_user=(5, 5)))
    assert (d.user_taste == 0).all() and (d.item_category == 0).all()
    assert Counter(d.result.events.column("behavior").to_pylist())["view"] == 20


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 3}, "n_items"),
        ({"n_categories": 0}, "n_categories"),
        ({"n_categories": 99}, "n_categories"),
        ({"events_per_user": (5, 2)}, "events_per_user"),
        ({"events_per_user": (0, 2)}, "events_per_user"),
        ({"scenarios": ()}, "scenarios"),
        ({"scenarios": ("home", " ")}, "scenarios"),
        ({"taste_strength": 1.5}, "taste_strength"),
        ({"p_click": -0.1}, "p_click"),
        ({"p_purchase": 2.0}, "p_purchase"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**kwargs)  # type: ignore[arg-type]
