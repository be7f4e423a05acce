"""A ranking policy over retrieved candidates, trained by REINFORCE in the simulator.

The policy scores each candidate ``s_i = x_i . w + x_i^T M z`` from its standardised
features ``x_i`` (the ranking model's task scores, popularity, retrieval rank, how often it
was shown this episode) and the user's state ``z`` (days since the last visit, visits,
the last session's satisfaction, purchases, the day of the horizon).  A slate is a
Plackett-Luce draw of ``k`` distinct candidates (Gumbel top-k), so its log-probability is
exact; serving and evaluation take the ``k`` best scores.  It starts as greedy ranking by
the purchase score (``w`` on that feature), so RL moves away from greedy only where the
simulated long-term reward says so.  Training: REINFORCE with a learned linear baseline on
the user state, discounted per-day reward to go, the best iteration kept by the reward of
the deterministic policy on validation users (never the evaluation simulator's).

Why not torchrl or d3rlpy: the action is a slate drawn from a per-user candidate set whose
size and content vary, and the policy gradient needs its exact Plackett-Luce
log-probability; neither library's discrete or continuous action spaces express that, and
the REINFORCE step is a few lines.  The environment is a gymnasium ``Env``
(:class:`mtrec.policy.env.SlateEnv`) for use with any library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrec.policy.env import DYNAMIC, EpisodeConfig, Observation, Pool, rollout
from mtrec.policy.simulator import STATE, UserSimulator

USER_INPUTS = (*STATE, "day_share")


@dataclass(frozen=True)
class PolicyConfig:
    iterations: int = 60
    batch_users: int = 512
    lr: float = 0.03
    patience: int = 30  # iterations without a better validation reward
    eval_every: int = 3
    init_feature: str = "purchase_logit"  # the policy starts as greedy on this feature
    init_weight: float = 2.0
    seed: int = 0


class SlatePolicy(nn.Module):
    def __init__(self, item_names: tuple[str, ...], mean: np.ndarray, std: np.ndarray,
                 init_feature: str = "purchase_logit", init_weight: float = 2.0) -> None:
        super().__init__()
        self.item_names = (*item_names, *DYNAMIC)
        f, z = len(self.item_names), len(USER_INPUTS)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.w = nn.Parameter(torch.zeros(f))
        self.m = nn.Parameter(torch.zeros(f, z))
        if init_feature in self.item_names:
            with torch.no_grad():
                self.w[self.item_names.index(init_feature)] = init_weight

    def scores(self, items: torch.Tensor, user: torch.Tensor,
               available: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean, self.std
        assert isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)
        x = (items - mean) / std
        s = x @ self.w + torch.einsum("bcf,fz,bz->bc", x, self.m, user)
        return s.masked_fill(~available, -1e9)

    def _scores(self, obs: Observation) -> torch.Tensor:
        return self.scores(torch.from_numpy(obs.items), torch.from_numpy(obs.user),
                           torch.from_numpy(obs.available))

    @torch.no_grad()
    def top(self, obs: Observation, rng: np.random.Generator | None = None,
            k: int = 10) -> np.ndarray:
        """The ``k`` best-scored candidates (the deterministic policy)."""
        return torch.topk(self._scores(obs), k, 1).indices.numpy()

    @torch.no_grad()
    def sample(self, obs: Observation, rng: np.random.Generator, k: int = 10) -> np.ndarray:
        """A Plackett-Luce slate: top-k of the scores plus Gumbel noise."""
        s = self._scores(obs).numpy()
        gumbel = -np.log(-np.log(rng.random(s.shape) + 1e-12) + 1e-12)
        return np.argsort(-(s + gumbel), 1, kind="stable")[:, :k]

    def log_prob(self, obs: Observation, slate: np.ndarray) -> torch.Tensor:
        """Exact Plackett-Luce log-probability ``[B]`` of each slate."""
        s = self._scores(obs)
        picked = torch.from_numpy(slate)
        chosen = torch.gather(s, 1, picked)
        out = torch.zeros(len(s))
        mask = torch.zeros_like(s, dtype=torch.bool)
        for j in range(picked.shape[1]):
            out = out + chosen[:, j] - torch.logsumexp(s.masked_fill(mask, -1e9), 1)
            mask = mask.scatter(1, picked[:, j:j + 1], True)
        return out

    def describe(self) -> dict[str, float]:
        """The item weights (the user-state interactions are in ``m``)."""
        return {n: round(float(v), 4) for n, v in zip(self.item_names, self.w.detach(),
                                                      strict=True)}


def feature_scale(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the candidates' static features (over real candidates), with the
    dynamic features' unit scale appended."""
    x = pool.features[pool.codes > 0]
    mean, std = x.mean(0), x.std(0) + 1e-6
    return (np.concatenate([mean, np.zeros(len(DYNAMIC))]),
            np.concatenate([std, np.ones(len(DYNAMIC))]))


@dataclass
class TrainedPolicy:
    policy: SlatePolicy
    curve: list[dict[str, float]] = field(default_factory=list)
    best_iteration: int = 0
    seconds: float = 0.0


def train_policy(sim: UserSimulator, train: Pool, valid: Pool, episode: EpisodeConfig,
                 config: PolicyConfig) -> TrainedPolicy:
    """REINFORCE with a learned baseline in ``sim`` over ``train``'s users; the iteration
    whose deterministic policy earns the most on ``valid`` (same seed each time) is kept."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    mean, std = feature_scale(train)
    policy = SlatePolicy(train.names, mean, std, config.init_feature, config.init_weight)
    value = nn.Linear(len(USER_INPUTS), 1)
    opt = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=config.lr)
    k = sim.config.slate

    def valid_reward() -> float:
        out = rollout(sim, valid, lambda o, r: policy.top(o, r, k), episode,
                      seed=config.seed + 1_000_003)
        return float(out.reward.mean())

    best, best_state, best_it, waited = valid_reward(), _copy(policy), 0, 0
    result = TrainedPolicy(policy, [{"iteration": 0, "train_reward": float("nan"),
                                     "valid_reward": best}])
    for it in range(1, config.iterations + 1):
        batch = train.take(rng.choice(len(train.users), min(config.batch_users,
                                                             len(train.users)), replace=False))
        out = rollout(sim, batch, lambda o, r: policy.sample(o, r, k), episode,
                      seed=int(rng.integers(2**31)), record=True)
        # each session's log-probability is weighted by its reward to go, without the
        # gamma^t factor of the exact discounted gradient (the common, lower-variance form)
        to_go = _reward_to_go(out.day_reward, episode.gamma)
        loss = torch.zeros(())
        for day, rows, obs, slate in out.sessions:
            g = torch.from_numpy(to_go[rows, day]).float()
            base = value(torch.from_numpy(obs.user)).squeeze(1)
            adv = (g - base).detach()
            loss = loss - (adv * policy.log_prob(obs, slate)).sum() / len(batch.users) \
                + ((g - base) ** 2).sum() / len(batch.users)
        opt.zero_grad()
        loss.backward()
        opt.step()
        row = {"iteration": it, "train_reward": float(out.reward.mean()),
               "valid_reward": float("nan")}
        if it % config.eval_every == 0:
            row["valid_reward"] = score = valid_reward()
            if score > best:
                best, best_state, best_it, waited = score, _copy(policy), it, 0
            else:
                waited += config.eval_every
        result.curve.append(row)
        if waited >= config.patience:
            break
    policy.load_state_dict(best_state)
    result.best_iteration, result.seconds = best_it, time.perf_counter() - started
    return result


def _reward_to_go(day_reward: np.ndarray, gamma: float) -> np.ndarray:
    """``G[b, t] = sum_{t' >= t} gamma^(t' - t) r[b, t']``.

    >>> _reward_to_go(np.array([[1.0, 0.0, 2.0]]), 0.5).tolist()
    [[1.5, 1.0, 2.0]]
    """
    g = np.zeros_like(day_reward)
    acc = np.zeros(len(day_reward))
    for t in range(day_reward.shape[1] - 1, -1, -1):
        acc = day_reward[:, t] + gamma * acc
        g[:, t] = acc
    return g


def _copy(policy: SlatePolicy) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}
