"""Long-term engagement at a global time cut: user-level labels and pre-cut features.

For a cut ``c`` every user with an event before ``c`` is one example.  Labels come from
what the user does in ``[c, c + horizon)`` only: whether they come back within each of
``return_days``, how many distinct days they are active and how many purchases they make in
the count horizon, and the days to their next event (right-censored at the end of the data).
Inputs (:func:`user_features`, the history a model reads) come from events before ``c``
only.  Training examples come from earlier cuts whose label windows close before the test
cut (:func:`training_cuts`), so no training label looks past it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtrec.data.interactions import Interactions
from mtrec.data.schema import BEHAVIORS

DAY = 86_400


class EngagementError(ValueError):
    """The data cannot give engagement labels (no timestamps, a horizon past its end)."""


@dataclass(frozen=True)
class EngagementConfig:
    """The protocol: horizons, where the test cut is and how training cuts are laid out."""

    return_days: tuple[int, ...] = (7, 30)  # labels: back within each of these
    horizon_days: int = 0  # counts of active days and purchases; 0: the longest return
    cut: int = 0  # the test cut (unix seconds); 0: the end of the data minus the horizon
    train_cuts: int = 4  # earlier cuts whose examples train (label windows end by the cut)
    cut_step_days: float = 7.0  # days between training cuts
    valid_frac: float = 0.1  # users whose training-cut examples are held out (early stop)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.return_days or min(self.return_days) <= 0:
            raise EngagementError(f"return_days must be positive, got {self.return_days}")
        if self.horizon_days < 0 or self.train_cuts < 1 or self.cut_step_days <= 0:
            raise EngagementError("horizon_days must be >= 0, train_cuts >= 1 and "
                                  "cut_step_days > 0")
        if not 0.0 <= self.valid_frac < 1.0:
            raise EngagementError(f"valid_frac must be in [0, 1), got {self.valid_frac}")

    @property
    def count_days(self) -> int:
        """The window of the active-day and purchase counts."""
        return self.horizon_days or max(self.return_days)

    @property
    def horizon(self) -> int:
        """The label window in days (the longest of the return and count horizons)."""
        return max(self.count_days, max(self.return_days))


@dataclass(frozen=True)
class CutExamples:
    """One row per user active before ``cut``: user codes and their labels."""

    cut: np.ndarray  # int64 [n] the cut of each row (unix seconds)
    user: np.ndarray  # int64 [n]
    returned: np.ndarray  # float32 [n, len(return_days)] back within each horizon
    active_days: np.ndarray  # float32 [n] distinct days active in the count horizon
    purchases: np.ndarray  # float32 [n] purchases in the count horizon
    time_to_return: np.ndarray  # float32 [n] days to the next event (or to the end: censored)
    observed: np.ndarray  # bool [n] whether the next event is seen before the end

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> CutExamples:
        return CutExamples(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[CutExamples]) -> CutExamples:
        fields = CutExamples.__dataclass_fields__
        return CutExamples(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def timed_events(data: Interactions) -> np.ndarray:
    """Indices of the interactions with a timestamp; an error when there are none."""
    if not (data.ts >= 0).any():
        raise EngagementError("engagement labels need event timestamps: column 'ts' is "
                              "missing or empty in this dataset")
    return np.flatnonzero(data.ts >= 0)


def data_end(data: Interactions) -> int:
    """One second after the last timestamped event."""
    return int(data.ts[timed_events(data)].max()) + 1


def default_cut(data: Interactions, config: EngagementConfig) -> int:
    """The configured test cut, or the latest one whose horizon the data still covers."""
    return config.cut or data_end(data) - config.horizon * DAY


def training_cuts(data: Interactions, config: EngagementConfig) -> list[int]:
    """Cuts whose label windows end by the test cut, latest first, each with history."""
    first = int(data.ts[timed_events(data)].min())
    last = default_cut(data, config) - config.horizon * DAY
    cuts = [int(last - k * config.cut_step_days * DAY) for k in range(config.train_cuts)]
    cuts = [c for c in cuts if c > first]
    if not cuts:
        raise EngagementError(
            f"no training cut: the test cut leaves {config.horizon} days of labels, and "
            f"no events come before {last} (the first is at {first}); shorten the horizon")
    return cuts


def cut_examples(data: Interactions, cut: int, config: EngagementConfig,
                 end: int | None = None) -> CutExamples:
    """Labels at ``cut`` for every user with an event before it, from the events before
    ``end`` only (default: the end of the data; a training cut's is the test cut, so no
    training label, the censored time to return included, sees the test period)."""
    end = data_end(data) if end is None else end
    idx = timed_events(data)
    idx = idx[data.ts[idx] < end]
    horizon = config.horizon
    if cut + horizon * DAY > end:
        raise EngagementError(
            f"a {horizon}-day horizon after the cut at {cut} runs past the end of the data "
            f"({(end - cut) / DAY:.1f} days after the cut); move the cut earlier or "
            "shorten the horizon")
    user, ts = data.user[idx], data.ts[idx]
    users = np.unique(user[ts < cut])
    if not len(users):
        raise EngagementError(f"no user has an event before the cut at {cut}")
    after = ts >= cut
    u_after, t_after = user[after], ts[after]
    order = np.lexsort((t_after, u_after))
    u_after, t_after = u_after[order], t_after[order]
    purchase = data.has_behavior("purchase")[idx][after][order]
    returned = np.zeros((len(users), len(config.return_days)), np.float32)
    first = np.searchsorted(u_after, users, "left")
    stop = np.searchsorted(u_after, users, "right")
    has_next = stop > first
    next_ts = np.full(len(users), end, np.int64)
    next_ts[has_next] = t_after[first[has_next]]
    for k, days in enumerate(config.return_days):
        returned[:, k] = has_next & (next_ts < cut + days * DAY)
    pos, known = _positions(users, u_after)
    known &= t_after < cut + config.count_days * DAY
    active = _distinct(pos[known], (t_after[known] - cut) // DAY, len(users))
    bought = np.bincount(pos[known & purchase], minlength=len(users))
    return CutExamples(
        cut=np.full(len(users), cut, np.int64), user=users.astype(np.int64), returned=returned,
        active_days=active.astype(np.float32), purchases=bought.astype(np.float32),
        time_to_return=((next_ts - cut) / DAY).astype(np.float32), observed=has_next)


def split_users(examples: CutExamples, config: EngagementConfig) -> tuple[np.ndarray, np.ndarray]:
    """Rows of training and of validation examples: a seeded ``valid_frac`` of the users
    (all their cuts) is held out."""
    users = np.unique(examples.user)
    rng = np.random.default_rng(config.seed)
    held = rng.permutation(users)[:round(len(users) * config.valid_frac)]
    valid = np.isin(examples.user, held)
    return np.flatnonzero(~valid), np.flatnonzero(valid)


def _positions(users: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``codes`` is in the sorted ``users``, and whether it is there."""
    pos = np.searchsorted(users, codes)
    known = pos < len(users)
    known[known] = users[pos[known]] == codes[known]
    return pos, known


def _distinct(pos: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per position ``0..n-1``, how many distinct ``values`` it has."""
    pairs = np.unique(np.stack([pos, values]), axis=1)
    return np.bincount(pairs[0], minlength=n).astype(np.float64)


def _behaviors(data: Interactions) -> list[str]:
    return [b for b in BEHAVIORS if data.has_behavior(b).any()]


def feature_names(data: Interactions) -> tuple[str, ...]:
    """The columns of :func:`user_features` for this dataset's behaviours."""
    behaviors = _behaviors(data)
    return ("recency_days", "tenure_days", "active_days", "events", "items",
            "events_1d", "events_7d", "events_30d", "active_days_7d", "active_days_30d",
            "purchase_days", "purchase_recency_days", "purchase_tenure_days",
            *(f"{b}_count" for b in behaviors), *(f"{b}_recency_days" for b in behaviors))


def user_features(data: Interactions, users: np.ndarray, cut: int) -> np.ndarray:
    """``[len(users), F]`` recency / frequency / monetary and per-behaviour features from
    each user's events before ``cut`` only (columns: :func:`feature_names`).  A recency with
    no such event is the whole span before the cut."""
    if len(users) and not (np.diff(users) > 0).all():
        raise ValueError("user_features needs sorted, distinct user codes")
    idx = timed_events(data)
    idx = idx[data.ts[idx] < cut]
    span = (cut - float(data.ts[idx].min())) / DAY if len(idx) else 0.0
    pos, ok = _positions(users, data.user[idx])
    idx, pos = idx[ok], pos[ok]
    age = (cut - data.ts[idx]) / DAY  # days before the cut
    day = np.floor(age).astype(np.int64)
    n = len(users)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(pos[mask], minlength=n).astype(np.float64)

    def days_active(mask: np.ndarray) -> np.ndarray:
        return _distinct(pos[mask], day[mask], n)

    def newest(mask: np.ndarray) -> np.ndarray:
        out = np.full(n, span)
        np.minimum.at(out, pos[mask], age[mask])
        return out

    def oldest(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(n)
        np.maximum.at(out, pos[mask], age[mask])
        return out

    every = np.ones(len(idx), bool)
    bought = data.has_behavior("purchase")[idx]
    columns = [newest(every), oldest(every), days_active(every), count(every),
               _distinct(pos, data.item[idx], n),
               count(age < 1), count(age < 7), count(age < 30),
               days_active(age < 7), days_active(age < 30),
               days_active(bought), newest(bought), oldest(bought)]
    flags = [data.has_behavior(b)[idx] for b in _behaviors(data)]
    columns += [count(f) for f in flags] + [newest(f) for f in flags]
    return np.stack(columns, 1).astype(np.float32)
