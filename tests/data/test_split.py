"""Split protocols on synthetic data: brute-force leakage checks, one per protocol rule."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from mtrec.data.clean import CleanConfig, EventArrays, clean, kcore_mask
from mtrec.data.split import (
    DROPPED,
    PROTOCOLS,
    TEST,
    TRAIN,
    VALID,
    SplitConfig,
    SplitError,
    check_no_leakage,
    split_events,
)
from mtrec.data.store import Store


@pytest.fixture()
def events(synthetic_store: Path) -> EventArrays:
    with Store.open(synthetic_store) as store:
        return EventArrays.from_store(store)


def _histories(events: EventArrays, parts: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """user -> [(ts, seq, part)] in time order, built row by row."""
    out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for k in range(len(events)):
        if parts[k] != DROPPED:
            out[int(events.user[k])].append((int(events.ts[k]), int(events.seq[k]),
                                             int(parts[k])))
    return {u: sorted(h) for u, h in out.items()}


@pytest.mark.parametrize("protocol", ["loo", "ratio"])
def test_per_user_protocols_hold_out_only_the_latest(events: EventArrays, protocol: str
                                                     ) -> None:
    parts, _ = split_events(events, SplitConfig(protocol, 0.2, 0.2))
    for history in _histories(events, parts).values():
        labels = [p for _, _, p in history]
        # train* valid* test*: once held out, never back to train or from test to valid
        assert labels == sorted(labels), labels
        assert labels.count(TEST) >= 1


def _runs(events: EventArrays, parts: np.ndarray) -> dict[int, list[list[int]]]:
    """user -> parts of each run (consecutive same-item events with changing behaviour)."""
    rows: dict[int, list[tuple[int, int, int, int, int]]] = defaultdict(list)
    for k in range(len(events)):
        rows[int(events.user[k])].append((int(events.ts[k]), int(events.seq[k]),
                                          int(events.item[k]), int(events.behavior[k]),
                                          int(parts[k])))
    out: dict[int, list[list[int]]] = {}
    for user, history in rows.items():
        runs: list[list[int]] = []
        last: tuple[int, int] | None = None
        for _, _, item, act, part in sorted(history):
            if last is None or item != last[0] or act == last[1]:
                runs.append([])
            runs[-1].append(part)
            last = (item, act)
        out[user] = runs
    return out


def test_loo_takes_exactly_last_and_second_to_last(events: EventArrays) -> None:
    """Regression (funnel split across parts): loo holds out the last *run* of same-item
    events whole, so a view -> click -> purchase never straddles train and test."""
    parts, report = split_events(events, SplitConfig("loo"))
    for runs in _runs(events, parts).values():
        assert set(runs[-1]) == {TEST} and set(runs[-2]) == {VALID}
        assert all(set(r) == {TRAIN} for r in runs[:-2])
    n_users = len(np.unique(events.user))
    assert report["parts"]["test"]["users"] == report["parts"]["valid"]["users"] == n_users


def test_loo_short_histories() -> None:
    ev = _tiny(users=[0, 1, 1, 2, 2, 2], ts=[1, 1, 2, 1, 2, 3])
    parts, _ = split_events(ev, SplitConfig("loo"))
    assert parts.tolist() == [TRAIN, TRAIN, TEST, TRAIN, VALID, TEST]


def test_loo_orders_by_time_not_file_order() -> None:
    ev = _tiny(users=[0, 0, 0], ts=[30, 10, 20])
    parts, _ = split_events(ev, SplitConfig("loo"))
    assert parts.tolist() == [TEST, TRAIN, VALID]


def test_temporal_is_a_global_cut(events: EventArrays) -> None:
    parts, _ = split_events(events, SplitConfig("temporal", 0.1, 0.2))
    train_ts, valid_ts, test_ts = (events.ts[parts == p] for p in (TRAIN, VALID, TEST))
    assert train_ts.max() < valid_ts.min() and valid_ts.max() < test_ts.min()
    assert abs(len(test_ts) / len(events) - 0.2) < 0.05


def test_temporal_needs_timestamps() -> None:
    ev = _tiny(users=[0, 0], ts=[-1, -1])
    with pytest.raises(SplitError, match="needs a timestamp"):
        split_events(ev, SplitConfig("temporal"))


@pytest.mark.parametrize("protocol,attr", [("cold-item", "item"), ("cold-user", "user")])
def test_cold_protocols_never_train_on_held_out(events: EventArrays, protocol: str, attr: str
                                                ) -> None:
    parts, _ = split_events(events, SplitConfig(protocol, 0.1, 0.2, seed=7))
    codes = getattr(events, attr)
    train_set = set(codes[parts == TRAIN].tolist())
    held = set(codes[(parts == VALID) | (parts == TEST)].tolist())
    assert held and not (held & train_set)
    n = len(np.unique(codes))
    assert len(set(codes[parts == TEST].tolist())) == round(n * 0.2)
    again, _ = split_events(events, SplitConfig(protocol, 0.1, 0.2, seed=7))
    other, _ = split_events(events, SplitConfig(protocol, 0.1, 0.2, seed=8))
    assert (again == parts).all() and not (other == parts).all()


def test_source_protocol_needs_a_source_split(events: EventArrays) -> None:
    with pytest.raises(SplitError, match="ships no split"):
        split_events(events, SplitConfig("source"))


def test_leakage_check_catches_a_leak(events: EventArrays) -> None:
    parts, _ = split_events(events, SplitConfig("loo"))
    leaked = parts.copy()
    first_user = np.flatnonzero(events.user == events.user[0])
    leaked[first_user[0]], leaked[first_user[-1]] = TEST, TRAIN
    with pytest.raises(SplitError, match="training event after a held-out one"):
        check_no_leakage(events, leaked, "loo")
    cold, _ = split_events(events, SplitConfig("cold-item", 0.1, 0.1))
    cold[np.flatnonzero(cold == TEST)[0]] = TRAIN
    with pytest.raises(SplitError, match="held out and in training"):
        check_no_leakage(events, cold, "cold-item")


def test_unknown_protocol_and_bad_fractions() -> None:
    with pytest.raises(SplitError, match="unknown split protocol 'random'"):
        SplitConfig("random")
    with pytest.raises(SplitError, match="test_frac"):
        SplitConfig("ratio", test_frac=1.5)
    assert "loo" in PROTOCOLS


def test_cleaning_dedupes_and_kcore_matches_brute_force(events: EventArrays) -> None:
    dup = _tiny(users=[0, 0, 0], ts=[5, 5, 6], items=[1, 1, 1])
    keep, report = clean(dup, CleanConfig())
    assert keep.tolist() == [True, False, True] and report.dropped == {"duplicate": 1}
    keep = kcore_mask(events.user, events.item, np.ones(len(events), bool), 10)
    users = defaultdict(int)
    items = defaultdict(int)
    for u, i in zip(events.user[keep], events.item[keep], strict=True):
        users[u] += 1
        items[i] += 1
    assert min(users.values()) >= 10 and min(items.values()) >= 10
    parts, report = split_events(events, SplitConfig("loo"), CleanConfig(kcore=10))
    assert ((parts == DROPPED) == ~keep).all()
    assert report["clean"]["dropped"]["kcore"] == int((~keep).sum())


def _tiny(users: list[int], ts: list[int], items: list[int] | None = None) -> EventArrays:
    n = len(users)
    item = np.array(items if items is not None else list(range(n)))
    return EventArrays(
        seq=np.arange(n), user=np.array(users), item=item,
        behavior=np.zeros(n, np.int16), ts=np.array(ts), source_split=np.full(n, None),
        user_ids=np.array([f"u{k}" for k in range(max(users) + 1)], dtype=object),
        item_ids=np.array([f"i{k}" for k in range(item.max() + 1)], dtype=object),
    )


def test_unordered_events_refuse_order_based_protocols() -> None:
    """Regression: loo on JData put cart/collect rows into test (file order is no order)."""
    ev = _tiny(users=[0, 0, 0], ts=[-1, -1, -1])
    unordered = EventArrays(**{**ev.__dict__, "ordered": False})
    for protocol in ("loo", "ratio"):
        with pytest.raises(SplitError, match="no order within a user"):
            split_events(unordered, SplitConfig(protocol))
    parts, _ = split_events(unordered, SplitConfig("cold-item", 0.0, 0.34))
    assert (parts == TEST).sum() == 1


def test_temporal_zero_fraction_and_ties() -> None:
    """Regression: a 0 fraction still held out the events tied at the maximum time."""
    ev = _tiny(users=[0, 0, 1, 1, 2, 2, 3, 3, 4], ts=[1, 2, 3, 4, 9, 9, 9, 9, 9])
    parts, _ = split_events(ev, SplitConfig("temporal", 0.0, 0.1))
    assert (parts == VALID).sum() == 0 and (parts == TEST).sum() == 5
    with pytest.raises(SplitError, match="the valid part is empty"):
        split_events(ev, SplitConfig("temporal", 0.1, 0.1))


def test_cold_small_fractions_hold_out_at_least_one() -> None:
    """Regression: round(0.5) == 0 held out nothing without a word."""
    ev = _tiny(users=[0, 1, 2, 3, 4], ts=[1, 2, 3, 4, 5])
    parts, _ = split_events(ev, SplitConfig("cold-user", 0.1, 0.1))
    assert (parts == VALID).sum() == 1 and (parts == TEST).sum() == 1
    with pytest.raises(SplitError, match="only 2 ids"):
        split_events(_tiny(users=[0, 1], ts=[1, 2]), SplitConfig("cold-user", 0.1, 0.1))


def test_nothing_left_to_split_is_an_error() -> None:
    ev = _tiny(users=[0, 1], ts=[1, 2])
    with pytest.raises(SplitError, match="no events left to split"):
        split_events(ev, SplitConfig("loo"), CleanConfig(kcore=5))
