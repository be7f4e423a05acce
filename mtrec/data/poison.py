"""Data poisoning for robustness benchmarks: fake users who all push one target item.

:func:`inject_fake_users` appends ``share`` x (number of real users) fake users to the
*training* part of a prepared split (they have no validation or test interaction, so every
evaluation stays on the real users).  Each fake user copies the length of a random real
user's training history and interacts with filler items, then with the target:

- ``random`` filler: items drawn uniformly from the catalog;
- ``popular`` filler: items drawn uniformly from the ``pool`` most popular training items.

:func:`pick_target` draws a cold-ish target (few training interactions) with a fixed seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mtrec.data.interactions import Interactions, Prepared
from mtrec.data.split import TRAIN

FILLERS = ("random", "popular")


@dataclass(frozen=True)
class Attack:
    target: int  # item code 1..N
    share: float = 0.01  # fake users as a share of the real users
    filler: str = "random"  # "random" or "popular"
    pool: int = 100  # popular filler: drawn from this many most popular items
    seed: int = 0

    def __post_init__(self) -> None:
        if self.filler not in FILLERS:
            raise ValueError(f"filler must be one of {FILLERS}, got {self.filler!r}")
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")


def train_counts(data: Interactions, n_items: int) -> np.ndarray:
    """Training interactions per item code ``[N + 1]``."""
    return np.bincount(data.item[data.part == TRAIN], minlength=n_items + 1)


def pick_target(prepared: Prepared, seed: int = 0, low: int = 3, high: int = 5) -> int:
    """A random item with ``low``..``high`` training interactions (a cold-ish item)."""
    counts = train_counts(prepared.interactions, prepared.catalog.n_items)
    pool = np.flatnonzero((counts >= low) & (counts <= high))
    pool = pool[pool > 0]
    if not len(pool):
        raise ValueError(f"no item has {low}..{high} training interactions")
    return int(np.random.default_rng(seed).choice(pool))


def fake_sequences(prepared: Prepared, attack: Attack) -> list[np.ndarray]:
    """The fake users' item codes in order (fillers, then the target)."""
    data, n_items = prepared.interactions, prepared.catalog.n_items
    rng = np.random.default_rng(attack.seed)
    n_real = len(data.offsets) - 1
    n_fake = max(1, round(attack.share * n_real))
    lengths = np.bincount(data.user[data.part == TRAIN], minlength=n_real)
    lengths = lengths[lengths > 0]
    if attack.filler == "popular":
        counts = train_counts(data, n_items)
        counts[attack.target] = -1
        candidates = np.argsort(-counts, kind="stable")[:attack.pool]
    else:
        candidates = np.setdiff1d(np.arange(1, n_items + 1), [attack.target])
    out = []
    for length in rng.choice(lengths, n_fake):
        k = int(min(max(length - 1, 1), len(candidates)))
        out.append(np.append(rng.choice(candidates, k, replace=False), attack.target))
    return out


def inject_fake_users(prepared: Prepared, attack: Attack) -> Prepared:
    """``prepared`` plus the attack's fake users (codes after the real ones, ids ``fake-N``),
    all of their interactions in the training part."""
    data = prepared.interactions
    seqs = fake_sequences(prepared, attack)
    n_real = len(data.offsets) - 1
    lengths = np.array([len(s) for s in seqs])
    m = int(lengths.sum())
    train = data.part == TRAIN
    behaviors = np.bincount(data.behaviors[train]).argmax() if train.any() else 1
    ts = np.full(m, -1, np.int64)
    if data.has_time:  # each fake user at one real training time, seconds apart
        start = np.random.default_rng(attack.seed).choice(data.ts[train], len(seqs))
        ts = np.repeat(start, lengths) + np.concatenate([np.arange(n) for n in lengths])
    fake = Interactions(
        user=np.repeat(np.arange(n_real, n_real + len(seqs)), lengths),
        item=np.concatenate(seqs).astype(np.int64),
        behaviors=np.full(m, behaviors, np.int64),
        scenario=np.full(m, data.default_scenario(), np.int64),
        rating=np.full(m, np.nan, np.float32), ts=ts,
        part=np.full(m, TRAIN, data.part.dtype),
        offsets=data.offsets[-1] + np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
    )
    joined = Interactions(
        **{f.name: np.concatenate([getattr(data, f.name), getattr(fake, f.name)[
            1 if f.name == "offsets" else 0:]])
           for f in dataclasses.fields(Interactions)})
    ids = np.array([f"fake-{i}" for i in range(len(seqs))], dtype=object)
    cat = prepared.catalog
    catalog = dataclasses.replace(cat, user_ids=np.concatenate([cat.user_ids, ids]))
    return dataclasses.replace(prepared, catalog=catalog, interactions=joined)


def is_fake(prepared: Prepared) -> np.ndarray:
    """Per user code, whether it is an injected fake user."""
    return np.array([str(u).startswith("fake-") for u in prepared.catalog.user_ids])
