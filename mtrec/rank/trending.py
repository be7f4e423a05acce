"""Trending items per scenario: counts that decay with a half-life.

A count added at time ``t`` weighs ``2 ** ((t - ref) / half_life)`` against a reference
time ``ref``; ranking compares weights at the same reference, so no count is ever
rewritten as time passes (the reference moves forward, rescaling all, when it gets stale).

>>> t = Trending(half_life_s=10.0)
>>> t.add(1, 5, ts=0.0); t.add(1, 5, ts=0.0); t.add(1, 7, ts=10.0)
>>> t.top(1, 2)  # two counts 10 s old (2 * 0.5) tie with one fresh count
[(5, 1.0), (7, 1.0)]
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np


class Trending:
    def __init__(self, half_life_s: float = 3 * 86_400.0) -> None:
        self.half_life_s = half_life_s
        self.ref: float | None = None
        self.weights: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, scenario: int, code: int, ts: float | None = None,
            weight: float = 1.0) -> None:
        """Count ``code`` at ``ts`` (None: now) with ``weight``.  A time in the future counts
        as now: taken as the reference it would decay every other count to nothing."""
        if weight == 0:
            return
        now = time.time()
        t = now if ts is None or not math.isfinite(ts) else min(ts, now)
        if self.ref is None:
            self.ref = t
        if t - self.ref > 50 * self.half_life_s:  # keep the weights in float range
            self._rebase(t)
        self.weights[scenario][code] += weight * 2.0 ** ((t - self.ref) / self.half_life_s)

    def seed(self, scenarios: np.ndarray, codes: np.ndarray, ts: np.ndarray) -> None:
        """Counts from a training log, its latest time taken as now (live events then decay
        it as time passes); unknown times (< 0) count as the latest."""
        known = ts[ts >= 0]
        latest = float(known.max()) if len(known) else 0.0
        now = time.time()
        times = np.where(ts >= 0, ts, latest).astype(np.float64) - latest + now
        self.ref = now if self.ref is None else self.ref
        weights = np.exp2((times - self.ref) / self.half_life_s)
        for scen in np.unique(scenarios):
            sel = scenarios == scen
            sums = np.bincount(codes[sel], weights=weights[sel])
            per = self.weights[int(scen)]
            for code in np.flatnonzero(sums):
                per[int(code)] += float(sums[code])

    def weight_of(self, code: int, now: float | None = None) -> float:
        """``code``'s decayed count at ``now`` (None: the clock), over all scenarios."""
        if self.ref is None:
            return 0.0
        t = time.time() if now is None else now
        total = sum(per.get(code, 0.0) for per in self.weights.values())
        return total * 2.0 ** ((self.ref - t) / self.half_life_s)

    def _rebase(self, new_ref: float) -> None:
        assert self.ref is not None
        factor = 2.0 ** ((self.ref - new_ref) / self.half_life_s)
        for per in self.weights.values():
            for code in per:
                per[code] *= factor
        self.ref = new_ref

    def top(self, scenario: int | None, k: int) -> list[tuple[int, float]]:
        """``k`` items with the largest decayed count (all scenarios when ``None``), as
        weights at the latest reference time, best first (ties: smaller code)."""
        merged: dict[int, float] = defaultdict(float)
        for scen, per in self.weights.items():
            if scenario is None or scen == scenario:
                for code, w in per.items():
                    merged[code] += w
        if not merged:
            return []
        latest = max(merged.values())
        scale = 1.0 / latest if latest > 0 else 1.0
        ranked = sorted(merged.items(), key=lambda cw: (-cw[1], cw[0]))[:k]
        return [(code, round(w * scale, 12)) for code, w in ranked]
