"""Scoring policies: in a simulator (long-term reward, returns, sessions) and on the logs
(immediate NDCG@10 and purchase AUC), plus the simulator's own validation.

Every policy is a scorer over the candidates (``Observation -> [B, C]`` scores); it shows the
``k`` best available ones.  The baselines read the same candidate features the learned policy
reads: greedy by immediate purchase probability, the objective-weighted blend of the task
scores (next item + purchase, weight 1 each, as the ``blend`` stage ranks), the retrieval
order (the default ranking, next item alone), popularity, and random.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from mtrec.data.interactions import Interactions
from mtrec.eval.metrics import auc
from mtrec.policy.agent import SlatePolicy
from mtrec.policy.env import EpisodeConfig, Observation, Pool, observe, rollout
from mtrec.policy.labels import DAY, timed_events
from mtrec.policy.simulator import UserSimulator, deep_behaviors

Scorer = Callable[[Observation, np.random.Generator], np.ndarray]


def _column(name: str) -> Callable[[Pool], Scorer]:
    def build(pool: Pool) -> Scorer:
        j = pool.names.index(name)
        return lambda obs, rng: obs.items[..., j].astype(np.float64)
    return build


def _blend(pool: Pool) -> Scorer:
    nxt, buy = pool.names.index("next_item_log"), pool.names.index("purchase_logit")
    return lambda obs, rng: (np.exp(obs.items[..., nxt].astype(np.float64))
                             + 1.0 / (1.0 + np.exp(-obs.items[..., buy].astype(np.float64))))


def _random(pool: Pool) -> Scorer:
    return lambda obs, rng: rng.random(obs.available.shape)


BASELINES: dict[str, Callable[[Pool], Scorer]] = {
    "greedy (purchase)": _column("purchase_logit"),
    "blend (next item + purchase)": _blend,
    "retrieval order (next item)": lambda pool: (lambda obs, rng: -obs.items[
        ..., pool.names.index("retrieval_rank_log")].astype(np.float64)),
    "popularity": _column("popularity_log"),
    "random": _random,
}


def policy_scorer(policy: SlatePolicy) -> Scorer:
    @torch.no_grad()
    def score(obs: Observation, rng: np.random.Generator) -> np.ndarray:
        s = policy.scores(torch.from_numpy(obs.items), torch.from_numpy(obs.user),
                          torch.from_numpy(obs.available))
        return s.numpy().astype(np.float64)
    return score


def top_k(scorer: Scorer, k: int) -> Callable[[Observation, np.random.Generator], np.ndarray]:
    def choose(obs: Observation, rng: np.random.Generator) -> np.ndarray:
        s = np.where(obs.available, scorer(obs, rng), -np.inf)
        return np.argsort(-s, 1, kind="stable")[:, :k]
    return choose


def simulate(sim: UserSimulator, pool: Pool, scorer: Scorer, episode: EpisodeConfig,
             seed: int) -> dict[str, float]:
    """Long-term figures of one policy over ``pool``'s users in ``sim``."""
    out = rollout(sim, pool, top_k(scorer, sim.config.slate), episode, seed)
    visits = out.visits.sum(1)
    came = visits >= 1
    return {"reward": float(out.reward.mean()),
            "purchases_per_user": float(out.purchases.sum(1).mean()),
            "sessions_per_user": float(visits.mean()),
            "return_rate": float((visits[came] >= 2).mean()) if came.any() else 0.0,
            "taken_per_session": float(out.taken.sum() / max(1, out.visits.sum()))}


def logged_targets(data: Interactions, users: np.ndarray, start: int, end: int
                   ) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Per user code: items taken, and items purchased, in ``[start, end)``."""
    idx = timed_events(data)
    idx = idx[(data.ts[idx] >= start) & (data.ts[idx] < end) & np.isin(data.user[idx], users)]
    bought = data.has_behavior("purchase")[idx]
    taken: dict[int, set[int]] = {}
    purchased: dict[int, set[int]] = {}
    for u, i, b in zip(data.user[idx].tolist(), data.item[idx].tolist(), bought.tolist(),
                       strict=True):
        taken.setdefault(u, set()).add(i)
        if b:
            purchased.setdefault(u, set()).add(i)
    return taken, purchased


def immediate(sim: UserSimulator, pool: Pool, scorer: Scorer, episode: EpisodeConfig,
              targets: tuple[dict[int, set[int]], dict[int, set[int]]], k: int = 10
              ) -> dict[str, float]:
    """The policy's ranking at the cut against what users did next in the logs: NDCG@10 of
    the items they took (an item outside the candidates counts as missed), and the AUC of
    its scores between candidates they bought and the other candidates."""
    raw = sim.start[sim.rows(pool.users)]
    obs = observe(raw, 0, episode.horizon, pool, np.zeros(pool.codes.shape),
                  pool.codes > 0)
    scores = np.where(obs.available, scorer(obs, np.random.default_rng(0)), -np.inf)
    order = np.argsort(-scores, 1, kind="stable")[:, :k]
    gains = 1.0 / np.log2(np.arange(k) + 2.0)
    taken, bought = targets
    ndcg, aucs = [], []
    for row, user in enumerate(pool.users.tolist()):
        rel = taken.get(user)
        if rel:
            hit = np.isin(pool.codes[row, order[row]], list(rel))
            ndcg.append(float((hit * gains).sum() / gains[:min(len(rel), k)].sum()))
        bset = bought.get(user)
        real = pool.codes[row] > 0
        if bset and real.any():
            y = np.isin(pool.codes[row][real], list(bset))
            if 0 < y.sum() < len(y):
                aucs.append(auc(y.astype(np.float64), scores[row][real]))
    return {"ndcg@10": float(np.mean(ndcg)) if ndcg else float("nan"),
            "purchase_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "users_with_targets": len(ndcg), "users_with_purchases": len(aucs)}


def calibration(sim: UserSimulator, data: Interactions, start: int, end: int, seed: int,
                bins: int = 10) -> dict[str, dict[str, object]]:
    """Expected calibration error of each response head on the simulator's users' events in
    ``[start, end)``: "take" against popularity-drawn items (as it was fitted), each deeper
    behaviour on the items taken; with the per-bin figures for a calibration plot."""
    idx = timed_events(data)
    idx = idx[(data.ts[idx] >= start) & (data.ts[idx] < end) & np.isin(data.user[idx],
                                                                         sim.users)]
    rows = sim.rows(data.user[idx])
    rng = np.random.default_rng(seed)
    w = sim.popularity / sim.popularity.sum()
    neg = rng.choice(len(w), (len(idx), sim.config.negatives), p=w)
    items = np.concatenate([data.item[idx][:, None], neg], 1)
    p = sim.response.probs(rows, items)
    out = {"take": _ece(p[0].ravel(), (np.arange(items.shape[1]) == 0)[None].repeat(
        len(idx), 0).ravel().astype(np.float64), bins)}
    for h, b in enumerate(deep_behaviors(data), start=1):
        out[b] = _ece(p[h][:, 0], data.has_behavior(b)[idx].astype(np.float64), bins)
    return out


def _ece(p: np.ndarray, y: np.ndarray, bins: int) -> dict[str, object]:
    """Calibration error over equal-width bins, weighted by their counts.

    >>> _ece(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0., 0., 1., 1.]), 10)["ece"]
    0.1
    """
    edges = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(edges, minlength=bins)
    mean_p = np.bincount(edges, weights=p, minlength=bins) / np.maximum(n, 1)
    rate = np.bincount(edges, weights=y, minlength=bins) / np.maximum(n, 1)
    ece = float((n * np.abs(mean_p - rate)).sum() / max(1, len(p)))
    return {"ece": round(ece, 4), "n": len(p), "bins": [
        [round(float(a), 4), round(float(b), 4), int(c)]
        for a, b, c in zip(mean_p, rate, n, strict=True) if c]}


def return_check(sim: UserSimulator, pool: Pool, scorer: Scorer, episode: EpisodeConfig,
                 data: Interactions, days: tuple[int, ...], seed: int) -> dict[str, float]:
    """Simulated against real: share of the users back within each of ``days`` after the
    cut, and items taken per active day (the real one from the logs after the cut)."""
    out = rollout(sim, pool, top_k(scorer, sim.config.slate), episode, seed)
    idx = timed_events(data)
    end = sim.cut + episode.horizon * DAY
    idx = idx[(data.ts[idx] >= sim.cut) & (data.ts[idx] < end) & np.isin(data.user[idx],
                                                                           pool.users)]
    first = np.full(len(pool.users), np.inf)
    pos = np.searchsorted(pool.users, data.user[idx])
    np.minimum.at(first, pos, (data.ts[idx] - sim.cut) / DAY)
    res: dict[str, float] = {}
    for d in days:
        res[f"real_return_{d}d"] = float((first < d).mean())
        res[f"sim_return_{d}d"] = float(out.visits[:, :d].any(1).mean())
    active = _active_days(data, idx, pos, sim.cut)
    res["real_taken_per_active_day"] = float(len(idx) / max(1, active))  # (interactions)
    res["sim_taken_per_session"] = float(out.taken.sum() / max(1, out.visits.sum()))
    return res


def _active_days(data: Interactions, idx: np.ndarray, pos: np.ndarray, cut: int) -> int:
    day = (data.ts[idx] - cut) // DAY
    return len(np.unique(np.stack([pos, day]), axis=1)[0]) if len(idx) else 0


def interval(values: list[float]) -> dict[str, float]:
    """Mean and 95 % t-interval over seeds.

    >>> interval([1.0, 2.0, 3.0])["mean"]
    2.0
    """
    a = np.asarray(values, np.float64)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))) \
        if len(a) > 1 else float("nan")
    return {"mean": float(a.mean()), "low": float(a.mean() - half),
            "high": float(a.mean() + half), "n": len(a)}
