"""Fake-user injection (mtrec.data.poison) and the cohort fake-user filter against it."""

from __future__ import annotations

import numpy as np
import pytest

from mtrec.data.interactions import Catalog, Interactions, Prepared
from mtrec.data.poison import Attack, inject_fake_users, is_fake, pick_target, train_counts
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.run_config import RobustConfig
from mtrec.train.robust import suspicious_users


def zipf_prepared(n_users: int = 3000, n_items: int = 400, groups: int = 8,
                  seed: int = 0) -> Prepared:
    """Users with a taste (70 % of their items from one item group) over Zipf-popular items;
    the last interaction of each user is test, the one before valid (``loo``)."""
    rng = np.random.default_rng(seed)
    weight = 1.0 / np.arange(1, n_items + 1)
    group = rng.integers(0, groups, n_items)
    users, items = [], []
    for u in range(n_users):
        taste = weight * np.where(group == rng.integers(groups), 7.0, 1.0)
        n = int(rng.integers(5, 13))
        items.append(rng.choice(n_items, n, replace=False, p=taste / taste.sum()) + 1)
        users.append(np.full(n, u))
    item, user = np.concatenate(items), np.concatenate(users)
    lengths = np.array([len(i) for i in items])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    part = np.full(len(item), TRAIN, np.int8)
    part[offsets[1:] - 1], part[offsets[1:] - 2] = TEST, VALID
    m = len(item)
    data = Interactions(user=user, item=item.astype(np.int64), behaviors=np.ones(m, np.int64),
                        scenario=np.ones(m, np.int64), rating=np.full(m, np.nan, np.float32),
                        ts=np.full(m, -1, np.int64), part=part, offsets=offsets)
    catalog = Catalog(np.array(["", *(f"i{i}" for i in range(n_items))], dtype=object),
                      [""] * (n_items + 1), np.array([f"u{u}" for u in range(n_users)],
                                                     dtype=object), ("", "s"))
    return Prepared("zipf", "loo", catalog, data, {})


@pytest.fixture(scope="module")
def clean() -> Prepared:
    return zipf_prepared()


def test_pick_target_is_cold_and_fixed(clean: Prepared) -> None:
    target = pick_target(clean, seed=3)
    assert target == pick_target(clean, seed=3)
    assert 3 <= train_counts(clean.interactions, clean.catalog.n_items)[target] <= 5


@pytest.mark.parametrize("filler", ["random", "popular"])
def test_fake_users_are_appended_to_training_only(clean: Prepared, filler: str) -> None:
    target = pick_target(clean)
    poisoned = inject_fake_users(clean, Attack(target, share=0.02, filler=filler, pool=20))
    d, real = poisoned.interactions, clean.interactions
    n_real, fake = len(real.offsets) - 1, is_fake(poisoned)
    assert fake.sum() == 60 and not fake[:n_real].any() and fake[n_real:].all()
    assert len(poisoned.catalog.user_ids) == len(d.offsets) - 1 == n_real + 60
    for name in ("user", "item", "part", "offsets"):  # the real users are untouched
        assert np.array_equal(getattr(d, name)[:len(getattr(real, name))], getattr(real, name))
    rows = np.arange(len(real), len(d))
    assert (d.part[rows] == TRAIN).all() and (np.diff(d.user[rows]) >= 0).all()
    popular = np.argsort(-train_counts(real, clean.catalog.n_items), kind="stable")[:21]
    for u in range(n_real, n_real + 60):
        items = d.item[d.offsets[u]:d.offsets[u + 1]]
        assert items[-1] == target and target not in items[:-1]
        assert len(np.unique(items)) == len(items)
        if filler == "popular":
            assert np.isin(items[:-1], popular).all()


@pytest.mark.parametrize("filler", ["random", "popular"])
def test_cohort_filter_removes_fake_users_and_keeps_real_ones(clean: Prepared,
                                                              filler: str) -> None:
    config = RobustConfig(user_filter="cohort")
    poisoned = inject_fake_users(clean, Attack(pick_target(clean), share=0.02, filler=filler,
                                               pool=20))
    flagged, fake = suspicious_users(poisoned.interactions, config), is_fake(poisoned)
    assert (flagged & fake).sum() >= 0.9 * fake.sum(), (flagged & fake).sum()
    assert (flagged & ~fake).sum() <= 0.005 * (~fake).sum(), (flagged & ~fake).sum()


def test_cohort_filter_flags_no_one_on_clean_or_flat_data(clean: Prepared) -> None:
    config = RobustConfig(user_filter="cohort")
    assert suspicious_users(clean.interactions, config).sum() <= 0.002 * len(
        clean.catalog.user_ids)
    assert not suspicious_users(clean.interactions, RobustConfig()).any()  # filter off
    flat = zipf_prepared(n_users=600, n_items=60, groups=1)
    d = flat.interactions
    shuffled = Interactions(**{**d.__dict__, "item": np.random.default_rng(0).permutation(
        d.item)})  # popularity kept, no taste
    assert suspicious_users(shuffled, config).sum() <= 3
