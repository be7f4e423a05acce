"""From a split store to what a model trains on: a catalog and per-user interaction sequences.

An *interaction* is a run of consecutive events of one user on one item with changing
behaviours, within one split part (a view, a click, a cart and a purchase of the same item
become one interaction whose ``behaviors`` bitmask has those four bits); on data without an
order within a user it is all of a (user, item) pair's events in the part.  Interactions
are ordered per user by their first event (in a fixed random order when the source has no
order within a user).  Item codes start at 1; code 0 is padding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtrec.data.clean import CleanConfig, EventArrays
from mtrec.data.schema import BEHAVIORS
from mtrec.data.split import DROPPED, SplitConfig, split_events
from mtrec.data.store import Store

RATE_BIT = 1 << BEHAVIORS.index("rate")


@dataclass(frozen=True)
class Catalog:
    """Items (code 1..N), users (code 0..U-1) and scenarios (code 1..S; 0 = none)."""

    item_ids: np.ndarray  # object [N + 1]; item_ids[0] = ""
    texts: list[str]  # [N + 1]
    user_ids: np.ndarray  # object [U]
    scenarios: tuple[str, ...]  # scenarios[0] = "" (none)
    categories: list[str] = field(default_factory=list)  # [N + 1] when known, else empty
    # [N + 1] the scenario code each item belongs to (0: every scenario), or empty when no
    # item is scoped: a scoped item is ranked only for targets in its own scenario
    item_scenarios: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def has_text(self) -> bool:
        return any(self.texts[1:])

    @property
    def scoped(self) -> bool:
        """Some item belongs to one scenario only (a multi-scenario catalog)."""
        return bool(len(self.item_scenarios)) and bool(self.item_scenarios.any())

    def fingerprint(self) -> str:
        """A hash of the item ids in code order: a bundle only fits a catalog with the same."""
        digest = hashlib.sha256("\n".join(map(str, self.item_ids[1:])).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Interactions:
    """Interactions sorted by user then order; user ``u`` owns ``offsets[u]:offsets[u+1]``."""

    user: np.ndarray  # int64 [M]
    item: np.ndarray  # int64 [M], 1..N
    behaviors: np.ndarray  # int64 [M], bitmask over BEHAVIORS
    scenario: np.ndarray  # int64 [M], 1..S
    rating: np.ndarray  # float32 [M], nan where the interaction has no rating
    ts: np.ndarray  # int64 [M], unix seconds, -1 when missing
    part: np.ndarray  # int8 [M], TRAIN / VALID / TEST
    offsets: np.ndarray  # int64 [U + 1]

    def __len__(self) -> int:
        return len(self.user)

    def has_behavior(self, name: str) -> np.ndarray:
        return (self.behaviors & (1 << BEHAVIORS.index(name))) != 0

    def default_scenario(self) -> int:
        """The scenario a request that names none is scored in: the commonest scenario of
        the interactions (the only one on single-scenario data; code 1 when empty)."""
        return int(np.bincount(self.scenario).argmax()) if len(self.scenario) else 1

    @property
    def has_time(self) -> bool:
        return bool(len(self.ts)) and bool((self.ts >= 0).all())


@dataclass(frozen=True)
class Prepared:
    dataset: str
    protocol: str
    catalog: Catalog
    interactions: Interactions
    split_report: dict[str, Any]
    ordered: bool = True  # the source orders events within a user (or has timestamps)
    # per user code, whether its interactions are in source order, where that differs
    # between users (a multi-source dataset joining ordered and unordered parts); None:
    # every user as ``ordered``
    ordered_users: np.ndarray | None = None

    @property
    def causal_parts(self) -> bool:
        """Held-out interactions all follow the earlier parts in time, so a held-out
        interaction may be scored from the earlier held-out ones (rolling evaluation).
        A multi-source dataset's protocol names one per part (``loo/source``)."""
        return self.ordered and all(p in ("loo", "ratio", "temporal", "source")
                                    for p in self.protocol.split("/"))

    def unordered_users(self) -> np.ndarray:
        """Per user code: the user's interactions have no source order."""
        if self.ordered_users is not None:
            return ~self.ordered_users
        return np.full(len(self.catalog.user_ids), not self.ordered)


def prepare(store: Store, dataset: str, split: SplitConfig,
            clean: CleanConfig | None = None, scenarios: tuple[str, ...] = (),
            breaks: tuple[int, ...] = ()) -> Prepared:
    """Split ``store`` by ``split`` and build the catalog and interactions (of ``scenarios``
    only, when given).  ``breaks``: timestamps no merged interaction spans (a funnel whose
    events straddle one is cut in two there), for protocols with their own time cuts."""
    events = EventArrays.from_store(store)
    parts, report = split_events(events, split, clean)
    extra = store.con.sql(
        "SELECT coalesce(scenario, '') AS scenario, value FROM events ORDER BY seq"
    ).to_arrow_table()
    catalog, item_scen = _catalog(store, events)
    scen_names = extra.column("scenario").to_numpy(zero_copy_only=False)
    if scenarios:
        parts = np.where(np.isin(scen_names.astype(str), scenarios), parts, DROPPED)
    names, scen_codes = np.unique(scen_names.astype(str), return_inverse=True)
    code_of = {item_id: k for k, item_id in enumerate(catalog.item_ids)}
    item_codes = np.fromiter((code_of[i] for i in events.item_ids), np.int64,
                             len(events.item_ids))[events.item]
    scopes = _item_scopes(item_scen, names, item_codes, scen_codes + 1)
    catalog = Catalog(catalog.item_ids, catalog.texts, catalog.user_ids,
                      ("", *(str(n) for n in names)), catalog.categories, scopes)
    value = extra.column("value").to_numpy(zero_copy_only=False).astype(np.float32)
    interactions = _merge(events, parts, item_codes, scen_codes.astype(np.int64) + 1, value,
                          np.sort(np.asarray(breaks, np.int64)))
    return Prepared(dataset, split.protocol, catalog, interactions, report,
                    events.ordered or events.has_time)


def _item_scopes(item_scen: list[str], names: np.ndarray, item_codes: np.ndarray,
                 event_scen: np.ndarray) -> np.ndarray:
    """Each item's scenario code when the catalog is partitioned by scenario (several
    scenarios, and every event on an item with a scenario happens in that scenario), else
    empty: items listed in one scenario but used in others are not scoped."""
    scen_of = {str(n): k + 1 for k, n in enumerate(names)}
    scopes = np.array([scen_of.get(s, 0) for s in item_scen], np.int64)
    own = scopes[item_codes]
    if len(names) < 2 or not scopes.any() or ((own != 0) & (own != event_scen)).any():
        return np.zeros(0, np.int64)
    return scopes


def _catalog(store: Store, events: EventArrays) -> tuple[Catalog, list[str]]:
    """The catalog (scenarios not yet known) and each item's scenario name ("" for none)."""
    rows = store.query(
        "SELECT item_id, coalesce(nullif(text, ''), title, ''), coalesce(category, ''), "
        "coalesce(scenario, '') FROM items ORDER BY item_id")
    item_ids = np.array(["", *(r[0] for r in rows)], dtype=object)
    texts = ["", *(r[1] for r in rows)]
    catalog = Catalog(item_ids, texts, events.user_ids, ("",), ["", *(r[2] for r in rows)])
    return catalog, ["", *(r[3] for r in rows)]


def _merge(events: EventArrays, parts: np.ndarray, item: np.ndarray, scenario: np.ndarray,
           value: np.ndarray, breaks: np.ndarray) -> Interactions:
    keep = np.flatnonzero(parts != DROPPED)
    time = events.ts if events.has_time else events.seq
    if not (events.ordered or events.has_time):
        # No order within a user (rows come from separate behaviour files): a fixed random
        # order, so a position in the sequence says nothing about the behaviour.
        time = np.random.default_rng(0).permutation(len(events))
    idx = keep[np.lexsort((events.seq[keep], time[keep], events.user[keep]))]
    user, part = events.user[idx], parts[idx]
    if events.ordered or events.has_time:
        # Consecutive events on one item with changing behaviours (a funnel) merge; anything
        # later stays its own interaction, so no input carries a behaviour from its future.
        acts = events.behavior[idx]
        new = np.ones(len(idx), dtype=bool)
        new[1:] = ((user[1:] != user[:-1]) | (item[idx][1:] != item[idx][:-1])
                   | (part[1:] != part[:-1]) | (acts[1:] == acts[:-1]))
        if len(breaks):  # never across a break: which side of every break each event is on
            side = np.searchsorted(breaks, events.ts[idx], "right")
            new[1:] |= side[1:] != side[:-1]
        inverse = np.cumsum(new) - 1
        first = np.flatnonzero(new)
    else:  # no order: a (user, item, part) is one interaction
        keys = np.stack([user, item[idx], part.astype(np.int64)], 1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    bits = np.zeros(len(first), np.int64)
    np.bitwise_or.at(bits, inverse, np.left_shift(1, events.behavior[idx].astype(np.int64)))
    rated = (np.left_shift(1, events.behavior[idx].astype(np.int64)) & RATE_BIT) != 0
    rating = np.full(len(first), np.nan, np.float32)
    np.fmax.at(rating, inverse[rated], value[idx][rated])
    order = np.argsort(first, kind="stable")  # interactions in order of their first event
    pick = idx[first[order]]
    n_users = len(events.user_ids)
    counts = np.bincount(events.user[pick], minlength=n_users)
    return Interactions(
        user=events.user[pick], item=item[pick], behaviors=bits[order],
        scenario=scenario[pick], rating=rating[order], ts=events.ts[pick],
        part=parts[pick], offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    )
