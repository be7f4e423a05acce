"""Trending counts: decay by half-life, seeding from a training log, live events after it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mtrec.rank.trending import Trending


def test_counts_halve_every_half_life() -> None:
    t = Trending(half_life_s=100.0)
    now = time.time()
    t.add(1, 7, ts=now - 200)  # two half-lives old: weighs 1/4
    t.add(1, 8, ts=now)
    assert t.top(1, 2) == [(8, 1.0), (7, pytest.approx(0.25))]


def test_seeded_log_is_taken_as_recent_and_live_events_add_to_it() -> None:
    """Regression: seeding used the log's own clock, so the first live event (now) rebased
    every seeded count to zero."""
    t = Trending(half_life_s=86_400.0)
    ts = np.array([0, 10, 20, 20, -1])  # a log from 1970, one time unknown
    t.seed(np.array([1, 1, 1, 1, 1]), np.array([3, 3, 3, 4, 5]), ts)
    t.add(1, 4)  # live, now
    top = dict(t.top(1, 3))
    assert top[3] == 1.0  # three seeded counts, all about "now"
    assert top[4] == pytest.approx(2 / 3, rel=1e-3)  # one seeded + one live
    assert top[5] == pytest.approx(1 / 3, rel=1e-3)


def test_future_time_counts_as_now() -> None:
    t = Trending(half_life_s=10.0)
    t.add(1, 1)
    t.add(1, 2, ts=time.time() + 10**9)
    assert dict(t.top(1, 2)) == pytest.approx({1: 1.0, 2: 1.0}, rel=1e-6)
