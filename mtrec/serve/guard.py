"""Abuse resistance of the online signals: how much each posted event moves trending, and
which events are quarantined (stored, never applied, until an admin releases them).

Two parts, both fed the event log in its order, so every worker (and a restart) reaches the
same decisions:

* :class:`BurstRule` (at write time): when ``burst_users`` different *new* users (users the
  bundle does not know) interact with one item within ``burst_window_s`` seconds of arrival
  (or ``burst_ratio`` times the item's trending weight, if more: a popular item's usual
  crowd of new customers is no burst), that new user's event and every later one by a new
  user on that item in the window are quarantined.  Users the bundle knows are never held
  by it.  Arrival times are the server's clock, not the client's ``ts``.
* :class:`AccountRule` (at write time): a user the bundle knows gets at most ``user_burst``
  events applied within ``user_window_s`` seconds of arrival; the rest of a burst is
  quarantined (a write key cannot rewrite an established user's recent history at once).
* :class:`TrendingGuard` (when an event is applied): an event's weight in trending is 1 for a
  user the bundle knows and ``new_user_weight`` for a new one; one user counts once per item
  in ``pair_window_s`` (repeats add nothing), at most ``user_budget`` per hour in all; new
  users together add at most ``new_item_budget`` to one item a day (a slow trickle of fake
  users under the burst rule stays small); a key with a ``trending_budget`` moves trending
  by at most that much per hour.  When the
  burst rule trips on an item, what new users added to that item's trending within the
  window is taken back (:meth:`TrendingGuard.revoke`): a detected burst counts for nothing.

>>> rule = BurstRule(GuardConfig(burst_users=3, burst_window_s=60.0))
>>> [rule.check("i1", f"fake{n}", new=True, received=float(n)) for n in range(4)]
[False, False, True, True]
>>> rule.check("i1", "regular", new=False, received=4.0)
False
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

HOUR_S, DAY_S = 3600.0, 86_400.0
T = TypeVar("T")


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    new_user_weight: float = 0.2  # trending weight of an event by a user the bundle lacks
    pair_window_s: float = 86_400.0  # a user counts once per item in this window
    user_budget: float = 20.0  # trending weight one user may add per hour
    burst_users: int = 20  # this many new users on one item within burst_window_s ...
    burst_window_s: float = 3600.0  # ... quarantine new users' events on that item
    burst_ratio: float = 0.5  # ... or this many times the item's trending weight, if more
    new_item_budget: float = 5.0  # trending weight new users may add to one item a day
    max_pairs: int = 1_000_000  # (user, item) pairs remembered for pair_window_s
    user_burst: int = 10  # a known user's events applied within user_window_s; more: held
    user_window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.new_user_weight <= 1.0:
            raise ValueError(f"new_user_weight must be in [0, 1], got {self.new_user_weight}")
        for name in ("pair_window_s", "user_budget", "burst_window_s", "user_window_s",
                     "new_item_budget"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.burst_users < 2:
            raise ValueError(f"burst_users must be >= 2, got {self.burst_users}")
        if self.burst_ratio < 0 or self.max_pairs < 2:
            raise ValueError(f"burst_ratio must be >= 0 and max_pairs >= 2, got "
                             f"{self.burst_ratio}, {self.max_pairs}")
        if self.user_burst < 1:
            raise ValueError(f"user_burst must be >= 1, got {self.user_burst}")


class AccountRule:
    """Events applied to each known user's history within the window, by arrival time: a
    burst on an established account (its history is what its recommendations read) beyond
    ``user_burst`` is held.

    >>> rule = AccountRule(GuardConfig(user_burst=2, user_window_s=60.0))
    >>> rule.observe("u", 0.0); rule.observe("u", 1.0)
    >>> rule.room("u", 30.0), rule.room("u", 60.5), rule.room("v", 30.0)
    (0, 1, 2)
    """

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.applied: dict[str, deque[float]] = defaultdict(deque)

    def observe(self, user: str, received: float) -> None:
        """An event applied to a known user's history (from the log: once per row)."""
        self.applied[user].append(received)

    def room(self, user: str, received: float) -> int:
        """How many more events of ``user`` may be applied in the window ending now."""
        times = self.applied.get(user)
        if not times:
            return self.config.user_burst
        while times and times[0] <= received - self.config.user_window_s:
            times.popleft()
        return max(0, self.config.user_burst - len(times))


class BurstRule:
    """Distinct new users per item within the window, by arrival time, oldest first (an
    event is checked in constant time, however many users an item has)."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.recent: dict[str, OrderedDict[str, float]] = defaultdict(OrderedDict)

    def observe(self, item: str, user: str, received: float) -> None:
        """A stored event by a new user (applied or held); idempotent."""
        users = self.recent[item]
        if received >= users.get(user, received):
            users[user] = received
            users.move_to_end(user)

    def check(self, item: str, user: str, new: bool, received: float,
              usual: Callable[[], float] = lambda: 0.0) -> bool:
        """Whether this event is to be quarantined (it is observed either way): ``usual()``
        is the item's trending weight now (asked only from ``burst_users`` new users on); a
        burst is ``burst_users`` new users, or ``burst_ratio`` times the usual, if more."""
        if not new or not self.config.enabled:
            return False
        self.observe(item, user, received)
        users = self.recent[item]
        start = received - self.config.burst_window_s
        while users and next(iter(users.values())) < start:
            users.popitem(last=False)
        return (len(users) >= self.config.burst_users
                and len(users) >= self.config.burst_ratio * usual())


@dataclass
class _Spent:
    """What a user, key or item added in the current period (an hour or a day)."""

    period: float = -1.0
    weight: float = 0.0

    def room(self, now: float, budget: float, length: float = HOUR_S) -> float:
        period = now // length
        if period != self.period:
            self.period, self.weight = period, 0.0
        return max(0.0, budget - self.weight)


class TrendingGuard(Generic[T]):
    """Each applied event's weight in trending (see the module's doc); what new users added
    is remembered per item (with a ``tag``, the event) for the burst window."""

    def __init__(self, config: GuardConfig, key_budgets: dict[str, float] | None = None) -> None:
        self.config, self.key_budgets = config, key_budgets or {}
        self.pairs: dict[tuple[str, str], float] = {}  # (user, item) -> last counted
        self.users: dict[str, _Spent] = defaultdict(_Spent)
        self.keys: dict[str, _Spent] = defaultdict(_Spent)
        self.items: dict[str, _Spent] = defaultdict(_Spent)  # new users' credit, per day
        self.credits: dict[str, list[tuple[float, float, T]]] = defaultdict(list)

    def revoke(self, item: str, now: float) -> list[tuple[float, T]]:
        """Take back what new users added to ``item`` within the burst window: the
        (weight, tag) pairs to subtract.  Later new users' events are quarantined."""
        start = now - self.config.burst_window_s
        taken = [(w, tag) for t, w, tag in self.credits.pop(item, []) if t >= start]
        return taken

    def credit(self, item: str, received: float, weight: float, tag: T) -> None:
        """Remember a new user's ``weight`` on ``item`` (for :meth:`revoke`)."""
        kept = self.credits[item]
        if len(kept) >= 64 and kept[0][0] < received - self.config.burst_window_s:
            start = received - self.config.burst_window_s
            kept[:] = [c for c in kept if c[0] >= start]
        kept.append((received, weight, tag))

    def weight(self, user: str, item: str, new: bool, received: float,
               key: str | None = None) -> float:
        c = self.config
        if not c.enabled:
            return 1.0
        last = self.pairs.get((user, item))
        if last is not None and received - last < c.pair_window_s:
            return 0.0
        w = min(c.new_user_weight if new else 1.0,
                self.users[user].room(received, c.user_budget))
        if new:  # new users together move one item by at most new_item_budget a day
            w = min(w, self.items[item].room(received, c.new_item_budget, DAY_S))
        budget = self.key_budgets.get(key) if key is not None else None
        if budget is not None:
            w = min(w, self.keys[key].room(received, budget))  # type: ignore[index]
        if w > 0:
            self.pairs.pop((user, item), None)  # re-inserted last: the dict is oldest first
            self.pairs[(user, item)] = received
            self.users[user].weight += w
            if new:
                self.items[item].weight += w
            if budget is not None:
                self.keys[key].weight += w  # type: ignore[index]
            if len(self.pairs) > c.max_pairs:
                self._forget(received)
        return w

    def _forget(self, now: float) -> None:
        """Drop the oldest pairs, those out of the window and then down to half the cap, and
        spends of past periods (memory stays bounded; called once per max_pairs / 2 counts).
        A pair dropped inside its window may count once more."""
        start, keep = now - self.config.pair_window_s, self.config.max_pairs // 2
        pairs = self.pairs
        while pairs and (len(pairs) > keep or next(iter(pairs.values())) < start):
            del pairs[next(iter(pairs))]
        for spent, length in ((self.users, HOUR_S), (self.keys, HOUR_S), (self.items, DAY_S)):
            period = now // length
            for name in [n for n, s in spent.items() if s.period != period]:
                del spent[name]
