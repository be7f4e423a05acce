"""A user simulator learned from logs: per-item responses to a shown slate, and returns.

Two models, both fitted on one group of users' events before a time cut:

* :class:`ResponseModel`, a factorisation with one head for "the user takes the item" (any
  logged behaviour) and one per deeper behaviour (cart, purchase) given that they take it.
  The logs record what users did, not what they were shown, so every logged interaction is a
  taken item and ``negatives`` items drawn by popularity stand for items shown and not taken
  (the assumption is stated in every report; its calibration is measured on held-out logs).
* :class:`ReturnModel`, a daily hazard (logistic regression): the chance that the user is
  active on a day given the days since their last active day, how often they came, how
  satisfying their last session was (items taken, whether it reached cart or purchase), and
  their purchases so far.

In the simulator a session is the user's own browsing plus a slate of ``k`` items.  The
browsing (items taken, whether it reached cart or purchase, purchases) is one of the user's
own active days before the cut, drawn at random, so that a simulated session measures up to
a logged one (the return model learnt from whole days); the slate adds what it makes the
user take.  Position ``p`` (0-based) of the slate is examined with probability
``1 / log2(p + 2)`` (a fixed position model, not fitted: the logs hold no positions); an
examined item is taken with the response model's probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtrec.data.interactions import Interactions
from mtrec.policy.labels import DAY, EngagementError, timed_events

#: The raw user state the return model reads (``state_features`` transforms it).
STATE = ("days_since", "active_days", "last_taken", "last_deep", "purchases", "tenure")
DEEP = ("cart", "purchase")  # behaviours that count as a satisfying session


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator is fitted and what a session is."""

    dim: int = 16  # response-model embedding width
    negatives: int = 4  # popularity-drawn "shown, not taken" items per logged interaction
    epochs: int = 60  # most epochs (the best on held-out events is kept)
    min_steps: int = 1000  # at least this many optimiser steps (small logs)
    batch_size: int = 2048
    lr: float = 0.05
    # 0: Adam's L2 pulls rarely-seen embedding rows to zero at the learning rate (it erased
    # the planted tastes in tests/policy); the held-out early stop regularises instead
    weight_decay: float = 0.0
    ridge: float = 1e-3  # return model L2
    slate: int = 10  # items shown per session
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.dim, self.negatives, self.epochs, self.batch_size, self.slate) < 1:
            raise ValueError("dim, negatives, epochs, batch_size and slate must be >= 1")


def examination(k: int) -> np.ndarray:
    """Chance that each of ``k`` slate positions is looked at.

    >>> examination(3).round(3).tolist()
    [1.0, 0.631, 0.5]
    """
    return 1.0 / np.log2(np.arange(k) + 2.0)


def state_features(raw: np.ndarray) -> np.ndarray:
    """``[n, 6]`` raw states (:data:`STATE`) -> the return model's inputs."""
    out = np.log1p(np.maximum(raw, 0.0))
    out[:, 3] = raw[:, 3]  # (a flag)
    return out.astype(np.float64)


def deep_behaviors(data: Interactions) -> tuple[str, ...]:
    """The deeper behaviours this dataset records (the response model's extra heads)."""
    return tuple(b for b in DEEP if data.has_behavior(b).any())


@dataclass
class ReturnModel:
    """Daily hazard ``sigmoid(coef . [1, state_features(raw)])``."""

    coef: np.ndarray  # [1 + len(STATE)]

    def prob(self, raw: np.ndarray) -> np.ndarray:
        x = state_features(raw)
        return 1.0 / (1.0 + np.exp(-(self.coef[0] + x @ self.coef[1:])))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, ridge: float, iters: int = 30) -> ReturnModel:
        """Logistic regression by Newton's method on raw states ``x`` and 0/1 ``y``."""
        a = np.hstack([np.ones((len(x), 1)), state_features(x)])
        w = np.zeros(a.shape[1])
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(a @ w)))
            grad = a.T @ (p - y) / len(y) + ridge * w
            hess = (a * (p * (1 - p))[:, None]).T @ a / len(y) + ridge * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(w)


class ResponseModel(nn.Module):
    """``take`` and each deeper behaviour given take: per head ``u . (g_h * v) + b_hi + c_h``."""

    def __init__(self, n_users: int, n_items: int, heads: tuple[str, ...], dim: int) -> None:
        super().__init__()
        self.heads = ("take", *heads)
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items + 1, dim)
        self.gain = nn.Parameter(torch.ones(len(self.heads), dim))
        self.bias = nn.Parameter(torch.zeros(len(self.heads), n_items + 1))
        self.const = nn.Parameter(torch.zeros(len(self.heads)))
        nn.init.normal_(self.user.weight, std=0.1)
        nn.init.normal_(self.item.weight, std=0.1)

    def forward(self, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits ``[heads, *items.shape]`` for user rows ``[B]`` and items ``[B, K]``."""
        u = self.user(rows)[:, None, :]  # [B, 1, d]
        v = self.item(items)  # [B, K, d]
        dot = torch.einsum("bkd,hd->hbk", u * v, self.gain)
        return dot + self.bias[:, items] + self.const[:, None, None]

    @torch.no_grad()
    def probs(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        logits = self(torch.from_numpy(rows), torch.from_numpy(items))
        return torch.sigmoid(logits).numpy()


@dataclass
class UserSimulator:
    """A fitted simulator over ``users`` (sorted codes) starting at ``cut``."""

    config: SimulatorConfig
    users: np.ndarray  # [n] user codes; row r of the models is users[r]
    start: np.ndarray  # [n, len(STATE)] raw states at the cut (from the logs)
    response: ResponseModel
    returns: ReturnModel
    popularity: np.ndarray  # [n_items + 1] the negatives' sampling weights
    cut: int
    days: np.ndarray  # [D, 3] the users' active days before the cut: taken, deep, bought
    day_bounds: np.ndarray  # [n + 1] user row r owns days[day_bounds[r]:day_bounds[r + 1]]

    @property
    def heads(self) -> tuple[str, ...]:
        return self.response.heads

    def rows(self, users: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.users, users)
        if (pos >= len(self.users)).any() or (self.users[np.minimum(pos, len(self.users) - 1)]
                                              != users).any():
            raise KeyError("user(s) the simulator was not fitted on")
        return pos

    def respond(self, rows: np.ndarray, slates: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Responses ``[heads, B, k]`` (bool) to ``slates`` (item codes, 0: nothing shown)
        shown to user ``rows``: taken (examined and taken), then each deeper behaviour if
        taken; ``draws`` ``[heads + 1, B, k]`` uniform numbers (the first: examination)."""
        p = self.response.probs(rows, slates)
        out = draws[1:] < p
        out[0] &= (draws[0] < examination(slates.shape[1])[None, :]) & (slates > 0)
        out[1:] &= out[0][None]
        return out

    def organic(self, rows: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """``[B, 3]`` (taken, deep, bought) of one of each user's own logged active days,
        picked by ``draws`` ``[B]`` uniform numbers."""
        lo, hi = self.day_bounds[rows], self.day_bounds[rows + 1]
        pick = lo + np.minimum((draws * (hi - lo)).astype(np.int64), hi - lo - 1)
        return self.days[pick]


def advance(raw: np.ndarray, visited: np.ndarray, taken: np.ndarray, deep: np.ndarray,
            bought: np.ndarray) -> np.ndarray:
    """Raw states one day later: ``visited`` rows reset their days since a visit and record
    the session (``taken`` items, ``deep`` flag, ``bought`` purchases)."""
    out = raw.copy()
    out[:, 0] += 1.0
    out[:, 5] += 1.0
    v = visited
    out[v, 0] = 1.0  # the next day is one day after this visit
    out[v, 1] += 1.0
    out[v, 2] = taken[v]
    out[v, 3] = deep[v]
    out[v, 4] += bought[v]
    return out


def daily_log(data: Interactions, users: np.ndarray, end: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (user, day) before ``end``: rows ``[user position, day, items taken, deep flag,
    purchases]`` (days are whole days before ``end``, negative), sorted by user then day."""
    idx = timed_events(data)
    idx = idx[(data.ts[idx] < end) & np.isin(data.user[idx], users)]
    pos = np.searchsorted(users, data.user[idx])
    day = np.floor((data.ts[idx] - end) / DAY).astype(np.int64)
    deep = np.zeros(len(idx), bool)
    for b in deep_behaviors(data):
        deep |= data.has_behavior(b)[idx]
    bought = data.has_behavior("purchase")[idx].astype(np.int64)
    key = pos * (1 << 20) + (day + (1 << 19))
    uniq, inv = np.unique(key, return_inverse=True)
    taken = np.bincount(inv, minlength=len(uniq))
    deep_day = np.bincount(inv, weights=deep, minlength=len(uniq)) > 0
    bought_day = np.bincount(inv, weights=bought, minlength=len(uniq))
    rows = np.stack([uniq >> 20, (uniq & ((1 << 20) - 1)) - (1 << 19), taken,
                     deep_day.astype(np.int64), bought_day.astype(np.int64)], 1)
    return rows, idx, pos


def hazard_table(days: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person-day rows for the return model from :func:`daily_log` rows: for every user and
    every day after their first active day up to day -1, the raw state at the start of that
    day and whether they were active; and each user's raw state at day 0 (the cut)."""
    xs, ys = [], []
    start = np.zeros((n_users, len(STATE)))
    bounds = np.searchsorted(days[:, 0], np.arange(n_users + 1))
    for u in range(n_users):
        d = days[bounds[u]:bounds[u + 1]]
        if not len(d):
            continue
        first = d[0, 1]
        span = np.arange(first + 1, 1)  # days after the first active day, up to the cut
        j = np.searchsorted(d[:, 1], span, "left") - 1  # last active day before each
        raw = np.stack([span - d[j, 1], j + 1, d[j, 2], d[j, 3],
                        np.cumsum(d[:, 4])[j], span - first], 1).astype(np.float64)
        start[u] = raw[-1]
        xs.append(raw[:-1])
        ys.append(np.isin(span[:-1], d[:, 1]).astype(np.float64))
    if not xs:
        raise EngagementError("no user has an event before the cut: nothing to fit")
    return np.concatenate(xs), np.concatenate(ys), start


def fit_simulator(data: Interactions, users: np.ndarray, cut: int,
                  config: SimulatorConfig) -> UserSimulator:
    """Fit both models on ``users``' events before ``cut`` (``users``: codes)."""
    users = np.unique(users)
    days, idx, pos = daily_log(data, users, cut)
    x, y, start = hazard_table(days, len(users))
    if len(users) < 2:
        raise EngagementError(f"a simulator needs at least 2 users with events before the "
                              f"cut; got {len(users)}")
    returns = ReturnModel.fit(x, y, config.ridge)
    n_items = int(data.item.max())
    popularity = np.bincount(data.item[idx], minlength=n_items + 1).astype(np.float64)
    heads = deep_behaviors(data)
    labels = np.stack([data.has_behavior(b)[idx] for b in heads], 1) if heads else \
        np.zeros((len(idx), 0), bool)
    torch.manual_seed(config.seed)
    model = ResponseModel(len(users), n_items, heads, config.dim)
    _fit_response(model, pos, data.item[idx], labels, popularity, config)
    bounds = np.searchsorted(days[:, 0], np.arange(len(users) + 1))
    return UserSimulator(config, users, start, model.eval(), returns, popularity, cut,
                         days[:, 2:5].astype(np.float64), bounds)


def _fit_response(model: ResponseModel, rows: np.ndarray, items: np.ndarray,
                  labels: np.ndarray, popularity: np.ndarray, config: SimulatorConfig) -> None:
    """Two stages, each keeping its epoch with the lowest loss on a held-out tenth of the
    events: "take" (taken items against ``negatives`` popularity-drawn ones) trains the
    embeddings; then the deeper heads (on the taken items) train their own gains and biases
    over the frozen embeddings, so a head that overfits early cannot stop the other."""
    rng = np.random.default_rng(config.seed)
    weights = popularity / popularity.sum()
    perm = rng.permutation(len(rows))
    held, fit = perm[:len(rows) // 10], perm[len(rows) // 10:]
    data = (torch.from_numpy(rows), torch.from_numpy(items),
            torch.from_numpy(labels.astype(np.float32)))
    neg = torch.from_numpy(rng.choice(len(weights), (len(rows), config.negatives), p=weights))
    stages = [(list(model.parameters()), _take_loss)]
    if labels.shape[1]:
        stages.append(([model.gain, model.bias, model.const], _deep_loss))
    for params, loss_fn in stages:
        _fit_stage(model, params, loss_fn, data, neg, fit, held, config)


def _fit_stage(model: ResponseModel, params: list[nn.Parameter], loss_fn: _Loss,
               data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], neg: torch.Tensor,
               fit: np.ndarray, held: np.ndarray, config: SimulatorConfig) -> None:
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = -(-len(fit) // config.batch_size)
    epochs = max(config.epochs, -(-config.min_steps // max(1, per_epoch)))
    h = torch.from_numpy(held)
    best, best_state, waited = float("inf"), None, 0
    for _ in range(epochs):
        order = torch.from_numpy(fit)[torch.randperm(len(fit), generator=gen)]
        for b in order.split(config.batch_size):
            loss = loss_fn(model, data[0][b], data[1][b], data[2][b], neg[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not len(held):
            continue
        with torch.no_grad():
            score = float(loss_fn(model, data[0][h], data[1][h], data[2][h], neg[h]))
        if score < best - 1e-4:
            best, waited = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited * per_epoch >= 100:  # about 100 steps without a better held-out loss
                break
    if best_state is not None:
        model.load_state_dict(best_state)


_Loss = Callable[[ResponseModel, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                 torch.Tensor]


def _take_loss(model: ResponseModel, rows: torch.Tensor, items: torch.Tensor,
               labels: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    logits = model(rows, torch.cat([items[:, None], neg], 1))[0]  # [B, 1 + negatives]
    take = torch.zeros_like(logits)
    take[:, 0] = 1.0
    return nn.functional.binary_cross_entropy_with_logits(logits, take)


def _deep_loss(model: ResponseModel, rows: torch.Tensor, items: torch.Tensor,
               labels: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    logits = model(rows, items[:, None])[1:, :, 0]  # [heads - 1, B]
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.T)
