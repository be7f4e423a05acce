"""Episodes in the simulator: the batched rollout that trains and evaluates policies, and the
same dynamics behind the gymnasium :class:`SlateEnv` interface.

An episode starts at the simulator's cut and lasts ``horizon`` days.  Each day a user visits
with the return model's probability; a visit is a session: the user's own browsing (one of
their logged days) and a slate where the policy picks ``k`` of the user's candidates
(retrieved at the cut by the ranking model, fixed for the episode; an item the user has
taken from a slate is not shown again); the simulator samples the responses, and the whole
session updates the user's state.  Reward of a day: the slate's purchases (the browsing's
are no policy's doing) plus ``return_weight`` for a visit, discounted by ``gamma`` per day.
Random numbers are drawn per user and day whatever the policy does (common random numbers:
policies differ only where their choices do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from mtrec.policy.simulator import STATE, UserSimulator, advance, state_features

BOUND = 1e6  # the observation boxes' range (features are logs and flags)
#: Per-candidate features that change during an episode (appended to the static ones).
DYNAMIC = ("shown_before",)


@dataclass(frozen=True)
class EpisodeConfig:
    horizon: int = 14  # days
    gamma: float = 0.95  # discount per day
    return_weight: float = 1.0  # reward of a visit, beside one per purchase

    def __post_init__(self) -> None:
        if self.horizon < 1 or not 0 < self.gamma <= 1 or self.return_weight < 0:
            raise ValueError("horizon must be >= 1, gamma in (0, 1], return_weight >= 0")


@dataclass(frozen=True)
class Pool:
    """Each user's retrieved candidates and their static features."""

    users: np.ndarray  # [B] user codes
    codes: np.ndarray  # [B, C] item codes, 0 = padding
    features: np.ndarray  # [B, C, F] float32
    names: tuple[str, ...]  # the F feature names

    def take(self, rows: np.ndarray) -> Pool:
        return Pool(self.users[rows], self.codes[rows], self.features[rows], self.names)


@dataclass(frozen=True)
class Observation:
    """What a policy sees at a session: user inputs and candidate inputs."""

    user: np.ndarray  # [B, len(STATE) + 1] state features and the day's share of the horizon
    items: np.ndarray  # [B, C, F + len(DYNAMIC)]
    available: np.ndarray  # [B, C] bool


#: (observation, rng) -> slate indices into the candidates [B, k]
Chooser = Callable[[Observation, np.random.Generator], np.ndarray]


@dataclass
class Rollout:
    reward: np.ndarray  # [B] discounted reward per user
    visits: np.ndarray  # [B, H] bool
    purchases: np.ndarray  # [B, H]
    taken: np.ndarray  # [B, H] items taken per day
    day_reward: np.ndarray  # [B, H] undiscounted
    sessions: list[tuple[int, np.ndarray, Observation, np.ndarray]] = field(
        default_factory=list)  # (day, rows, observation, slate) when recorded


def observe(raw: np.ndarray, day: int, horizon: int, pool: Pool, shown: np.ndarray,
            available: np.ndarray) -> Observation:
    user = np.hstack([state_features(raw), np.full((len(raw), 1), day / horizon)])
    items = np.concatenate([pool.features, np.log1p(shown)[..., None]], -1)
    return Observation(user.astype(np.float32), items.astype(np.float32), available)


def rollout(sim: UserSimulator, pool: Pool, choose: Chooser, episode: EpisodeConfig,
            seed: int, record: bool = False) -> Rollout:
    """Run every user of ``pool`` for one episode; the same ``seed`` gives every policy the
    same random numbers for the same users (common random numbers)."""
    rng = np.random.default_rng(seed)
    act_rng = np.random.default_rng(seed + 7_919)
    rows = sim.rows(pool.users)
    raw = sim.start[rows].copy()
    b, h, k = len(rows), episode.horizon, sim.config.slate
    available = pool.codes > 0
    shown = np.zeros(pool.codes.shape)
    out = Rollout(np.zeros(b), np.zeros((b, h), bool), np.zeros((b, h)), np.zeros((b, h)),
                  np.zeros((b, h)))
    buy = sim.heads.index("purchase") if "purchase" in sim.heads else None
    for day in range(h):
        visit = rng.random(b) < sim.returns.prob(raw)
        draws = rng.random((len(sim.heads) + 1, b, k))  # per user and day, used or not
        own = sim.organic(rows, rng.random(b))  # [b, 3]: the browsing of a visit
        taken_n, deep, bought = own[:, 0].copy(), own[:, 1] > 0, own[:, 2].copy()
        slate_bought = np.zeros(b)
        v = np.flatnonzero(visit & available.any(1))
        if len(v):
            obs = observe(raw[v], day, h, pool.take(v), shown[v], available[v])
            slate = choose(obs, act_rng)
            codes = np.take_along_axis(pool.codes[v], slate, 1)
            codes[~np.take_along_axis(available[v], slate, 1)] = 0  # nothing left to show
            resp = sim.respond(rows[v], codes, draws[:, v, :slate.shape[1]])
            shown[v[:, None], slate] += 1
            took = resp[0]
            available[v[:, None], slate] &= ~took
            taken_n[v] += took.sum(1)
            if len(resp) > 1:
                deep[v] |= resp[1:].any(axis=(0, 2))
            if buy is not None:
                slate_bought[v] = resp[buy].sum(1)
            if record:
                out.sessions.append((day, v, obs, slate))
        out.visits[:, day] = visit
        out.purchases[:, day] = slate_bought
        out.taken[:, day] = np.where(visit, taken_n, 0)
        out.day_reward[:, day] = slate_bought + episode.return_weight * visit
        raw = advance(raw, visit, taken_n, deep.astype(np.float64), bought + slate_bought)
    out.reward = (out.day_reward * episode.gamma ** np.arange(h)).sum(1)
    return out


class SlateEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """One user per episode, from their first visit; a step is one session (the action:
    ``k`` candidate indices, a repeated one shown once, one taken before not again); the
    days without a visit pass inside the step.  Reward of a step: the slate's purchases,
    plus ``return_weight`` if the user visits again within the horizon."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it per instance)

    def __init__(self, sim: UserSimulator, pool: Pool, episode: EpisodeConfig) -> None:
        self.sim, self.pool, self.episode = sim, pool, episode
        c, f = pool.codes.shape[1], pool.features.shape[2] + len(DYNAMIC)
        k = sim.config.slate
        self.observation_space = gym.spaces.Dict({  # type: ignore[assignment]
            "user": gym.spaces.Box(-BOUND, BOUND, (len(STATE) + 1,), np.float32),
            "items": gym.spaces.Box(-BOUND, BOUND, (c, f), np.float32),
            "available": gym.spaces.MultiBinary(c)})
        self.action_space = gym.spaces.MultiDiscrete([c] * k)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        for _ in range(1000):  # an episode starts at a user's first visit in the horizon
            self._user = int(self.np_random.integers(len(self.pool.users)))
            self._row = self.sim.rows(self.pool.users[[self._user]])
            self._raw = self.sim.start[self._row].copy()
            self._shown = np.zeros((1, self.pool.codes.shape[1]))
            self._available = self.pool.codes[[self._user]] > 0
            self._day = 0
            if self._wait():
                break
        return self._obs(), {"day": self._day, "user": int(self.pool.users[self._user])}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool,
                                                dict[str, Any]]:
        if self._day >= self.episode.horizon:  # (no visit in 1,000 users' horizons)
            return self._obs(), 0.0, True, False, {"day": self._day, "purchases": 0}
        flat = np.asarray(action, np.int64).reshape(-1)
        slate = flat[np.sort(np.unique(flat, return_index=True)[1])][None]  # once each
        codes = self.pool.codes[[self._user]][:, slate[0]]
        codes[~self._available[:, slate[0]]] = 0  # taken before: not shown again
        draws = self.np_random.random((len(self.sim.heads) + 1, *codes.shape))
        resp = self.sim.respond(self._row, codes, draws)
        own = self.sim.organic(self._row, self.np_random.random(1))[0]
        self._shown[0, slate[0]] += 1
        self._available[0, slate[0]] &= ~resp[0][0]
        bought = resp[self.sim.heads.index("purchase")].sum() if "purchase" in self.sim.heads \
            else 0
        deep = float(own[1] > 0 or (len(resp) > 1 and resp[1:].any()))
        self._raw = advance(self._raw, np.ones(1, bool), np.array([own[0] + resp[0].sum()]),
                            np.array([deep]), np.array([own[2] + bought]))
        self._day += 1
        returned = self._wait()
        reward = float(bought) + self.episode.return_weight * returned
        done = self._day >= self.episode.horizon
        return self._obs(), reward, done, False, {"day": self._day, "purchases": int(bought)}

    def _wait(self) -> bool:
        """Let days without a visit pass; True when the user visits before the horizon."""
        while self._day < self.episode.horizon:
            if self.np_random.random() < self.sim.returns.prob(self._raw)[0]:
                return True
            self._raw = advance(self._raw, np.zeros(1, bool), np.zeros(1), np.zeros(1),
                                np.zeros(1))
            self._day += 1
        return False

    def _obs(self) -> dict[str, np.ndarray]:
        day = min(self._day, self.episode.horizon - 1)
        o = observe(self._raw, day, self.episode.horizon, self.pool.take(
            np.array([self._user])), self._shown, self._available)
        return {"user": o.user[0], "items": o.items[0],
                "available": o.available[0].astype(np.int8)}
