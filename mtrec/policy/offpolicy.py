"""Off-policy estimates on the logged data: self-normalised IPS and doubly robust.

What is logged: the items each evaluation user took after the cut (within the horizon), not
the slates they were shown.  Each taken item ``a`` of user ``s`` is one logged action whose
reward is ``1[bought a] + return_weight * 1[the user came back on a later day within the
horizon]``.  A policy exposes ``a`` if ``a`` is in its top ``k`` at the cut; the logging
policy's propensity ``beta(a | s)`` is a softmax over the user's candidates on their
features, fitted by maximum likelihood on the same logged actions, turned into an exposure
probability by the top-K correction ``1 - (1 - beta)^k``.  Weights are clipped at
``CLIP``; logged items outside the candidates (no policy here can show them) are left out and
their share is reported.  The doubly robust estimate adds a direct model: a ridge regression
of the reward on the candidate features, fitted on the logged actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtrec.data.interactions import Interactions
from mtrec.policy.env import EpisodeConfig, Pool, observe
from mtrec.policy.evaluate import Scorer
from mtrec.policy.labels import DAY, timed_events
from mtrec.policy.simulator import UserSimulator

CLIP = 10.0


def logged_actions(data: Interactions, pool: Pool, cut: int, episode: EpisodeConfig
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(pool row, candidate column, reward) per logged taken item inside the candidates,
    and the share of logged items that were inside."""
    end = cut + episode.horizon * DAY
    idx = timed_events(data)
    idx = idx[(data.ts[idx] >= cut) & (data.ts[idx] < end) & np.isin(data.user[idx],
                                                                       pool.users)]
    row = np.searchsorted(pool.users, data.user[idx])
    day = (data.ts[idx] - cut) // DAY
    last = np.full(len(pool.users), -1)
    np.maximum.at(last, row, day)
    came_back = last[row] > day
    reward = data.has_behavior("purchase")[idx] + episode.return_weight * came_back
    match = pool.codes[row] == data.item[idx][:, None]
    inside = match.any(1)
    return row[inside], match[inside].argmax(1), reward[inside].astype(np.float64), \
        float(inside.mean()) if len(idx) else 0.0


def _standard(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    m, s = x[real].mean(0), x[real].std(0) + 1e-6
    return (x - m) / s


def propensity(pool: Pool, rows: np.ndarray, cols: np.ndarray, steps: int = 200
               ) -> np.ndarray:
    """``[B, C]`` softmax over each user's candidates, fitted to the logged choices."""
    real = pool.codes > 0
    x = torch.from_numpy(_standard(pool.features.astype(np.float64), real)).float()
    theta = torch.zeros(x.shape[-1], requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=steps)
    mask = torch.from_numpy(~real)
    r, c = torch.from_numpy(rows), torch.from_numpy(cols)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logp = torch.log_softmax((x[r] @ theta).masked_fill(mask[r], -1e9), 1)
        loss = -logp[torch.arange(len(r)), c].mean() + 1e-3 * (theta ** 2).sum()
        loss.backward()
        return loss

    if len(rows):
        opt.step(closure)
    with torch.no_grad():
        return torch.softmax((x @ theta).masked_fill(mask, -1e9), 1).numpy()


def off_policy(sim: UserSimulator, pool: Pool, scorers: Mapping[str, Scorer],
               data: Interactions, cut: int, episode: EpisodeConfig, seed: int
               ) -> dict[str, Any]:
    """SNIPS and DR value of each policy on ``pool``'s users' logs (``sim``: their
    simulator, for the users' states at the cut and the slate size)."""
    k = sim.config.slate
    rows, cols, reward, coverage = logged_actions(data, pool, cut, episode)
    if not len(rows):
        return {"error": "no logged item inside the candidates", "coverage": coverage}
    beta = propensity(pool, rows, cols)
    expo_b = 1 - (1 - beta[rows, cols]) ** k
    real = pool.codes > 0
    x = _standard(pool.features.astype(np.float64), real)
    design = np.hstack([np.ones((len(rows), 1)), x[rows, cols]])
    coef = np.linalg.solve(design.T @ design + 1e-2 * np.eye(design.shape[1]),
                           design.T @ reward)
    r_hat_all = np.einsum("bcf,f->bc", x, coef[1:]) + coef[0]
    obs = observe(sim.start[sim.rows(pool.users)], 0, episode.horizon, pool,
                  np.zeros(pool.codes.shape), real)
    out: dict[str, Any] = {"logged_actions": len(rows), "coverage": round(coverage, 4),
                           "clip": CLIP, "slate": k, "logged_mean_reward": float(reward.mean())}
    for name, scorer in scorers.items():
        s = np.where(real, scorer(obs, np.random.default_rng(seed)), -np.inf)
        top = np.argsort(-s, 1, kind="stable")[:, :k]
        expo = np.zeros(pool.codes.shape)
        np.put_along_axis(expo, top, 1.0, 1)
        expo *= real  # (fewer than k candidates: no exposure past them)
        out[name] = estimates(expo, rows, cols, reward, expo_b, r_hat_all, k)
    return out


def estimates(expo: np.ndarray, rows: np.ndarray, cols: np.ndarray, reward: np.ndarray,
              logged_expo: np.ndarray, r_hat: np.ndarray, k: int) -> dict[str, float]:
    """SNIPS and DR of a policy exposing ``expo`` ``[B, C]`` (0/1 or probabilities) from
    logged actions ``(rows, cols)`` with ``reward`` and the logging policy's exposure
    ``logged_expo``; ``r_hat`` ``[B, C]``: the direct model's reward.

    >>> e = estimates(np.array([[1.0, 0.0]]), np.array([0, 0]), np.array([0, 1]),
    ...               np.array([1.0, 0.0]), np.array([0.5, 0.5]), np.zeros((1, 2)), 1)
    >>> e["snips"], e["dr"]
    (1.0, 1.0)
    """
    w = np.minimum(CLIP, expo[rows, cols] / np.maximum(logged_expo, 1e-9))
    snips = float((w * reward).sum() / w.sum()) if w.sum() > 0 else float("nan")
    direct = (expo * r_hat).sum(1) / k  # the policy's mean modelled slot reward
    dr = float(direct[rows].mean() + (w * (reward - r_hat[rows, cols])).sum()
               / max(w.sum(), 1e-9))
    return {"snips": snips, "dr": dr,
            "effective_n": float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12))}
