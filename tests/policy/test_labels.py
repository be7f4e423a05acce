"""Engagement labels and features at a time cut, against brute-force references."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from mtrec.data.interactions import prepare
from mtrec.data.split import SplitConfig
from mtrec.data.store import Store
from mtrec.policy.labels import (
    DAY,
    EngagementConfig,
    EngagementError,
    cut_examples,
    default_cut,
    feature_names,
    split_users,
    training_cuts,
    user_features,
)
from tests.policy.logs import START, engagement_logs


def _reference(data, cut, config):  # one user at a time, plain Python
    end = int(data.ts.max()) + 1
    out = {}
    for u in sorted(set(data.user[data.ts < cut].tolist())):
        ts = data.ts[data.user == u]
        bought = data.has_behavior("purchase")[data.user == u]
        after = np.sort(ts[ts >= cut])
        nxt = after[0] if len(after) else None
        window = (ts >= cut) & (ts < cut + config.horizon * DAY)
        out[u] = ([float(nxt is not None and nxt < cut + d * DAY) for d in config.return_days],
                  len({(t - cut) // DAY for t in ts[window]}), int((window & bought).sum()),
                  ((nxt if nxt is not None else end) - cut) / DAY, nxt is not None)
    return out


def test_labels_match_a_brute_force_reference():
    data = engagement_logs(n_users=60).interactions
    config = EngagementConfig(return_days=(1, 7), horizon_days=7)
    cut = START + 40 * DAY + 3_600
    ex = cut_examples(data, cut, config)
    ref = _reference(data, cut, config)
    assert ex.user.tolist() == sorted(ref)
    for k, u in enumerate(ex.user.tolist()):
        returned, days, buys, wait, seen = ref[u]
        assert ex.returned[k].tolist() == returned
        assert (ex.active_days[k], ex.purchases[k], bool(ex.observed[k])) == (days, buys, seen)
        assert ex.time_to_return[k] == pytest.approx(wait, rel=1e-6)
    assert 0.2 < ex.returned[:, 1].mean() < 0.9  # both classes: churners and loyal users


def test_inputs_come_from_before_the_cut_only():
    """Leakage: rewriting every event at or after the cut changes no feature."""
    prepared = engagement_logs(n_users=80)
    data = prepared.interactions
    cut = START + 30 * DAY
    users = np.unique(data.user[data.ts < cut])
    later = data.ts >= cut
    rng = np.random.default_rng(1)
    changed = dataclasses.replace(
        data, item=np.where(later, rng.integers(1, 40, len(data)), data.item),
        behaviors=np.where(later, 1 << 5, data.behaviors))
    assert np.array_equal(user_features(data, users, cut), user_features(changed, users, cut))
    assert not np.array_equal(user_features(data, users, cut + 5 * DAY),
                              user_features(changed, users, cut + 5 * DAY))


def test_features_match_their_definitions():
    data = engagement_logs(n_users=30).interactions
    cut = START + 20 * DAY
    users = np.unique(data.user[data.ts < cut])
    x = user_features(data, users, cut)
    names = feature_names(data)
    assert x.shape == (len(users), len(names))
    col = {n: x[:, k] for k, n in enumerate(names)}
    for k, u in enumerate(users.tolist()):
        ts = data.ts[(data.user == u) & (data.ts < cut)]
        assert col["events"][k] == len(ts)
        assert col["recency_days"][k] == pytest.approx((cut - ts.max()) / DAY, rel=1e-5)
        assert col["tenure_days"][k] == pytest.approx((cut - ts.min()) / DAY, rel=1e-5)
        assert col["events_7d"][k] == ((cut - ts) < 7 * DAY).sum()


def test_training_cuts_close_their_labels_before_the_test_cut():
    data = engagement_logs(n_users=40).interactions
    config = EngagementConfig(return_days=(3, 7), train_cuts=3, cut_step_days=5)
    test_cut = default_cut(data, config)
    assert test_cut == int(data.ts.max()) + 1 - 7 * DAY
    cuts = training_cuts(data, config)
    assert cuts == [test_cut - 7 * DAY - k * 5 * DAY for k in range(3)]
    ex = cut_examples(data, cuts[0], config)
    tr, va = split_users(ex, config)
    assert len(va) == round(len(ex) * 0.1) and not set(ex.user[tr]) & set(ex.user[va])


def test_no_timestamps_is_refused_naming_the_column():
    data = engagement_logs(n_users=10).interactions
    blind = dataclasses.replace(data, ts=np.full(len(data), -1))
    with pytest.raises(EngagementError, match="'ts'"):
        cut_examples(blind, START, EngagementConfig())


def test_a_horizon_past_the_end_is_an_error():
    data = engagement_logs(n_users=10, days=20).interactions
    with pytest.raises(EngagementError, match="runs past the end of the data"):
        cut_examples(data, START + 15 * DAY, EngagementConfig(return_days=(7,)))
    with pytest.raises(EngagementError, match="no training cut"):
        training_cuts(data, EngagementConfig(return_days=(15,)))


def test_a_funnel_is_never_merged_across_a_cut(tmp_path):
    """Bug: a view just before the cut and a purchase of the same item after it merged into
    one interaction dated before the cut that carried the purchase, so pre-cut features
    (purchase counts) and inputs saw a post-cut behaviour, and the labels lost it."""
    from tests.models.test_regressions import _store

    store = _store(tmp_path, [("u", "a", "view", 0), ("u", "a", "purchase", 120),
                              ("v", "b", "view", 0), ("v", "b", "view", 200)])
    cut = int(datetime(2024, 1, 1, 1, tzinfo=UTC).timestamp())  # minute 60
    with Store.open(store) as s:
        merged = prepare(s, "tiny", SplitConfig("temporal", 0.0, 0.0)).interactions
        split = prepare(s, "tiny", SplitConfig("temporal", 0.0, 0.0), breaks=(cut,)).interactions
    assert len(merged) == 3 and len(split) == 4
    before = split.ts < cut
    assert not split.has_behavior("purchase")[before].any()
    users = np.unique(split.user[before])
    bought = feature_names(split).index("purchase_count")
    assert user_features(split, users, cut)[:, bought].tolist() == [0.0, 0.0]
    ex = cut_examples(split, cut, EngagementConfig(return_days=(1,)), end=cut + DAY)
    assert ex.purchases.tolist() == [1.0, 0.0]


def test_training_labels_never_see_past_their_end():
    """Bug: a training cut's time to return was censored at the end of the data, so its
    label changed with events in the test period."""
    data = engagement_logs(n_users=60).interactions
    config = EngagementConfig(return_days=(3, 7), train_cuts=2, cut_step_days=4)
    test_cut = default_cut(data, config)
    later = data.ts >= test_cut
    moved = dataclasses.replace(data, ts=np.where(later, data.ts - DAY // 2, data.ts))
    for cut in training_cuts(data, config):
        a = cut_examples(data, cut, config, end=test_cut)
        b = cut_examples(moved, cut, config, end=test_cut)
        assert np.array_equal(a.time_to_return, b.time_to_return)
        assert np.array_equal(a.observed, b.observed)
        assert (a.time_to_return <= (test_cut - cut) / DAY).all()


def test_an_empty_cut_is_a_clear_error():
    data = engagement_logs(n_users=10).interactions
    with pytest.raises(EngagementError, match="no user has an event before the cut"):
        cut_examples(data, START - DAY, EngagementConfig(return_days=(1,)))
