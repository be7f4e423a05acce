"""The ranking policy and its REINFORCE training, on a simulator with a known answer."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from mtrec.policy.agent import PolicyConfig, SlatePolicy, train_policy
from mtrec.policy.env import EpisodeConfig, Observation, Pool, rollout
from mtrec.policy.evaluate import BASELINES, policy_scorer, top_k
from mtrec.policy.simulator import STATE, ResponseModel, ReturnModel, SimulatorConfig, UserSimulator

N_ITEMS, N_USERS = 20, 300


def misleading_world(seed: int = 0) -> tuple[UserSimulator, Pool]:
    """Every item is taken half the time it is examined; item ``i`` is then bought with
    probability rising in ``i``, but the ranking model's purchase score says the opposite
    (popularity says it right).  Greedy on the purchase score is the worst policy; a policy
    that learns from the simulated reward must turn away from it."""
    model = ResponseModel(N_USERS, N_ITEMS, ("purchase",), 4)
    with torch.no_grad():
        model.user.weight.zero_()
        model.item.weight.zero_()
        model.bias[1, 1:] = torch.linspace(-4, 2, N_ITEMS)  # purchase | taken
    sim = UserSimulator(SimulatorConfig(slate=5), np.arange(N_USERS),
                        np.tile([1.0, 3, 2, 0, 0, 10], (N_USERS, 1)), model.eval(),
                        ReturnModel(np.zeros(len(STATE) + 1)),
                        np.ones(N_ITEMS + 1), cut=0, days=np.zeros((N_USERS, 3)),
                        day_bounds=np.arange(N_USERS + 1))  # (no browsing of their own)
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.permutation(np.arange(1, N_ITEMS + 1)) for _ in range(N_USERS)])
    truth = np.linspace(-4, 2, N_ITEMS)[codes - 1]
    noise = rng.normal(0, 0.3, codes.shape)
    feats = np.stack([np.zeros(codes.shape), -truth + noise, truth + noise,
                      np.log1p(np.argsort(np.argsort(-noise, 1), 1))], -1).astype(np.float32)
    return sim, Pool(np.arange(N_USERS), codes, feats,
                     ("next_item_log", "purchase_logit", "popularity_log",
                      "retrieval_rank_log"))


def test_plackett_luce_log_probabilities_are_exact():
    policy = SlatePolicy(("a",), np.zeros(2), np.ones(2), "a", 1.0)
    items = np.array([[[0.0, 0], [1, 0], [2, 0], [-1, 0]]], np.float32)
    obs = Observation(np.zeros((1, len(STATE) + 1), np.float32), items,
                      np.array([[True, True, True, False]]))
    total, s = 0.0, np.array([0.0, 1, 2])
    for a, b in itertools.permutations(range(3), 2):
        lp = float(policy.log_prob(obs, np.array([[a, b]])).detach()[0])
        ref = s[a] - np.log(np.exp(s).sum()) + s[b] - np.log(np.exp(np.delete(s, a)).sum())
        assert abs(lp - ref) < 1e-5
        total += np.exp(lp)
    assert abs(total - 1.0) < 1e-5  # the unavailable candidate is never drawn
    assert policy.top(obs, k=2).tolist() == [[2, 1]]


def test_reinforce_turns_away_from_a_misleading_greedy_score():
    sim, pool = misleading_world()
    episode = EpisodeConfig(horizon=4)
    train, valid = pool.take(np.arange(200)), pool.take(np.arange(200, 250))
    trained = train_policy(sim, train, valid, episode,
                           PolicyConfig(iterations=30, batch_users=200, lr=0.1, eval_every=3))
    test = pool.take(np.arange(250, 300))
    k = sim.config.slate

    def reward(scorer):
        return rollout(sim, test, top_k(scorer, k), episode, seed=99).reward.mean()

    learned = reward(policy_scorer(trained.policy))
    greedy = reward(BASELINES["greedy (purchase)"](test))
    assert learned > 1.3 * greedy
    assert trained.best_iteration > 0 and trained.curve[0]["valid_reward"] < max(
        r["valid_reward"] for r in trained.curve if r["valid_reward"] == r["valid_reward"])
    w = trained.policy.describe()
    assert w["purchase_logit"] < 2.0 or w["popularity_log"] > 0.5  # it moved the right way


def test_off_policy_estimates_recover_a_known_value():
    """Logged actions drawn uniformly over 4 candidates, reward 1 on candidates 0 and 1 only;
    a policy showing {0, 1} is worth 1, one showing {2, 3} is worth 0, and the clipped,
    self-normalised estimates find both (the direct model knows nothing: zeros)."""
    from mtrec.policy.offpolicy import estimates

    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(200), 2)
    cols = rng.integers(0, 4, len(rows))
    reward = (cols < 2).astype(np.float64)
    logged = np.full(len(rows), 1 - (1 - 0.25) ** 2)  # top-K exposure of a uniform choice
    good = np.tile([1.0, 1.0, 0.0, 0.0], (200, 1))
    for expo, value in ((good, 1.0), (1 - good, 0.0)):
        e = estimates(expo, rows, cols, reward, logged, np.zeros((200, 4)), 2)
        assert abs(e["snips"] - value) < 1e-9
        assert abs(e["dr"] - value) < 1e-9  # (a zero direct model: DR is SNIPS)
        assert 150 < e["effective_n"] < 250  # about half the 400 logged actions
