"""The user simulator on shop logs with a planted answer (tests/policy/world.py)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mtrec.data.interactions import prepare
from mtrec.data.split import SplitConfig
from mtrec.data.store import Store
from mtrec.policy.env import EpisodeConfig, Pool, SlateEnv, rollout
from mtrec.policy.evaluate import calibration, return_check
from mtrec.policy.labels import DAY, EngagementError
from mtrec.policy.simulator import STATE, SimulatorConfig, advance, fit_simulator, hazard_table
from tests.policy.world import START, shop_store

CUT = START + 30 * DAY


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = shop_store(tmp_path_factory.mktemp("shop"))
    with Store.open(path) as s:
        return prepare(s, "shop", SplitConfig("temporal", 0.0, 0.0), breaks=(CUT,))


@pytest.fixture(scope="module")
def shop(prepared):
    return prepared.interactions


@pytest.fixture(scope="module")
def sim(shop):
    return fit_simulator(shop, np.unique(shop.user[shop.ts < CUT]), CUT, SimulatorConfig())


def _pool(sim, size=12, seed=0):
    rng = np.random.default_rng(seed)
    n_items = len(sim.popularity) - 1
    codes = np.stack([rng.permutation(np.arange(1, n_items + 1))[:size] for _ in sim.users])
    feats = np.log1p(sim.popularity[codes])[..., None].astype(np.float32)
    return Pool(sim.users, codes, feats, ("popularity_log",))


def test_return_model_finds_the_planted_satisfaction_effect(sim):
    coef = dict(zip(("const", *STATE), sim.returns.coef, strict=True))
    assert coef["last_deep"] > 0.3  # a session with a purchase brings the user back
    assert coef["days_since"] < 0


def test_responses_follow_the_planted_tastes_and_are_calibrated(prepared, shop, sim):
    # a user of group g ("u<k>", g = k % 3) takes items "i<j>" with j // 10 == g far more
    cat = prepared.catalog
    group = np.array([int(str(cat.item_ids[c])[1:]) // 10 for c in range(1, len(cat.item_ids))])
    codes = np.arange(1, len(cat.item_ids))
    rows = np.arange(len(sim.users))
    p = sim.response.probs(rows, np.tile(codes, (len(rows), 1)))[0]
    own = np.array([int(str(cat.user_ids[u])[1:]) % 3 for u in sim.users])
    mine = (group[None, :] == own[:, None])
    ratio = (p * mine).sum(1) / mine.sum(1) / ((p * ~mine).sum(1) / (~mine).sum(1))
    assert (ratio > 2).mean() > 0.8
    cal = calibration(sim, shop, CUT, CUT + 10 * DAY, seed=0)
    assert cal["take"]["ece"] < 0.1 and cal["purchase"]["ece"] < 0.12
    assert sum(b[2] for b in cal["take"]["bins"]) == cal["take"]["n"]


def test_hazard_rows_match_a_day_by_day_reference():
    # user 0 active on days -5 and -2 (2 and 1 items, a purchase on -2); the cut is day 0
    days = np.array([[0, -5, 2, 0, 0], [0, -2, 1, 1, 1]])
    x, y, start = hazard_table(days, 1)
    assert y.tolist() == [0, 0, 1, 0]  # days -4 .. -1
    assert x[:, 0].tolist() == [1, 2, 3, 1]  # days since the last active day
    assert x[3].tolist() == [1, 2, 1, 1, 1, 4]
    assert start[0].tolist() == [2, 2, 1, 1, 1, 5]  # the state at the cut
    moved = advance(start, np.array([True]), np.array([3.0]), np.array([0.0]), np.array([2.0]))
    assert moved[0].tolist() == [1, 3, 3, 0, 3, 6]


def test_rollouts_share_random_numbers_across_policies(sim):
    pool, episode = _pool(sim), EpisodeConfig(horizon=5)
    first = rollout(sim, pool, lambda o, r: np.argsort(-o.items[..., 0], 1)[:, :10], episode, 3)
    again = rollout(sim, pool, lambda o, r: np.argsort(-o.items[..., 0], 1)[:, :10], episode, 3)
    other = rollout(sim, pool, lambda o, r: np.argsort(o.items[..., 0], 1)[:, :10], episode, 3)
    assert np.array_equal(first.reward, again.reward)
    assert np.array_equal(first.visits[:, 0], other.visits[:, 0])  # same first-day visits
    assert first.purchases.sum() > 0 and (first.taken <= 10).all()


def test_simulated_returns_are_checked_against_the_logs(shop, sim):
    pool = _pool(sim)
    out = return_check(sim, pool, lambda o, r: o.items[..., 0], EpisodeConfig(horizon=10),
                       shop, (1, 5), seed=0)
    for d in (1, 5):
        assert 0 <= out[f"real_return_{d}d"] <= 1 and 0 <= out[f"sim_return_{d}d"] <= 1
    assert out["real_return_5d"] >= out["real_return_1d"]
    assert abs(out["sim_return_5d"] - out["real_return_5d"]) < 0.25  # the planted dynamics


def test_the_environment_passes_gymnasium_checks(sim):
    env = SlateEnv(sim, _pool(sim), EpisodeConfig(horizon=6))
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs["items"].shape == (12, 2) and env.action_space.shape == (10,)
    total, done = 0.0, False
    while not done:
        obs, reward, done, truncated, info = env.step(np.arange(10))
        total += reward
        assert not truncated and info["day"] <= 6
    assert total >= 0


def test_no_timestamps_is_refused_naming_the_column(shop):
    import dataclasses
    bare = dataclasses.replace(shop, ts=np.full(len(shop.ts), -1))
    with pytest.raises(EngagementError, match="'ts'"):
        fit_simulator(bare, np.unique(shop.user), CUT, SimulatorConfig())


def test_the_environment_never_shows_a_taken_item_again(sim):
    """Bug: SlateEnv.step showed (and let the user take and buy) items taken before, which
    the batched rollout the policy trains in never does."""
    pool = _pool(sim)
    env = SlateEnv(sim, pool, EpisodeConfig(horizon=30))
    env.reset(seed=4)
    taken_before = set()
    for _ in range(5):
        available = env._available[0].copy()
        env.step(np.arange(10))
        newly = set(np.flatnonzero(available & ~env._available[0]).tolist())
        assert not newly & taken_before
        taken_before |= newly
        if env._day >= 30:
            break


def test_a_session_is_the_users_own_browsing_plus_the_slate(shop, sim):
    """Bug: the return model learnt "items taken" from whole logged days (9 a day on
    RetailRocket) while a simulated session counted the slate's takes only (1 or 2), so
    every simulated visit looked like a poor day and lowered the next day's return odds."""
    pool = _pool(sim)
    out = rollout(sim, pool, lambda o, r: np.argsort(-o.items[..., 0], 1)[:, :10],
                  EpisodeConfig(horizon=10), seed=0)
    check = return_check(sim, pool, lambda o, r: o.items[..., 0], EpisodeConfig(horizon=10),
                         shop, (1, 5), seed=0)
    simulated = out.taken.sum() / out.visits.sum()
    assert simulated >= sim.days[:, 0].mean()  # at least the users' own days
    assert abs(simulated - check["real_taken_per_active_day"]) < 1.5
