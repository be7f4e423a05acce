"""Helpers for the model / trainer tests: synthetic stores with planted answers, tiny configs.

The planted dataset starts from :func:`mtrec.data.synthetic.generate` (each user prefers one
category, which ``next_item`` has to find) and plants two item-level signals the pointwise
tasks can learn in a few epochs:

- only items of categories 0 and 1 are ever clicked (and hence carted or purchased): the
  ``click``/``cart``/``purchase`` events of other items are dropped, their views kept;
- ratings are 4 or 5 for items of an even category and 1 or 2 for an odd one.

Runs use the ``temporal`` protocol: ``loo`` splits *events*, so on funnel data the
validation/test interaction is usually the tail of a funnel whose view is in training (see
``test_loo_holds_out_funnel_tails`` in ``tests/models/test_contract.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mtrec.data.interactions import Prepared
from mtrec.data.store import Store
from mtrec.data.synthetic import SyntheticConfig, SyntheticData, generate
from mtrec.train import checkpoint

CLICKABLE = (0, 1)  # categories whose items get clicks
FUNNEL = ("click", "cart", "collect", "purchase")


def planted(n_users: int = 240, n_items: int = 80, seed: int = 1,
            **config: Any) -> SyntheticData:
    """Synthetic data with the planted click and rating signals described above."""
    options: dict[str, Any] = {"n_categories": 4, "events_per_user": (8, 12), "p_click": 0.9,
                               "p_cart": 0.9, "p_purchase": 0.9, "p_rate": 0.5,
               "taste_strength": 0.9}
    options.update(config)
    data = generate(SyntheticConfig(n_users=n_users, n_items=n_items, seed=seed, **options))
    events = data.result.events
    category = dict(zip(data.item_ids, data.item_category.tolist(), strict=True))
    item_cat = np.array([category[i] for i in events.column("item_id").to_pylist()])
    behavior = np.array(events.column("behavior").to_pylist(), dtype=object)
    value = np.asarray(events.column("value").to_pylist(), dtype=np.float64)
    rng = np.random.default_rng(seed)
    stars = np.where(item_cat % 2 == 0, 4.0, 1.0) + rng.integers(0, 2, len(value))
    value = np.where(behavior == "rate", stars, value)
    col = events.schema.get_field_index("value")
    events = events.set_column(col, "value", pa.array(value, events.schema.field("value").type))
    keep = np.isin(item_cat, CLICKABLE) | ~np.isin(behavior, FUNNEL)
    result = dataclasses.replace(data.result, events=events.filter(pa.array(keep)))
    return dataclasses.replace(data, result=result)


def write_store(data: SyntheticData, directory: Path, name: str = "planted") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.duckdb"
    Store.write_import(path, data.result)
    return path


def tiny(store: Path, **extra: Any) -> dict[str, Any]:
    """Overrides for ``load_run_config``: a tiny, deterministic model on ``store``."""
    overrides: dict[str, Any] = {
        "data.dataset": str(store), "data.protocol": "temporal",
        "model.tasks": ["next_item"], "model.item.use_text": False,
        "model.item.dim": 32, "model.user.layers": 2, "model.user.heads": 2,
        "model.user.max_len": 16, "model.user.ffn_mult": 2,
        "model.mtl.expert_dim": 64, "model.mtl.tower_dim": 32,
        "train.epochs": 8, "train.batch_size": 32, "train.lr": 5e-3,
        "train.warmup_steps": 10, "train.patience": 100, "train.bf16": False,
        "model.user.dropout": 0.1, "model.item.dropout": 0.1,
    }
    overrides.update(extra)
    return overrides


def random_ndcg_at_10(prepared: Prepared, part: int) -> float:
    """Expected NDCG@10 of a uniformly random ranking, with the evaluation's masking.

    For each user with a ``part`` interaction, the first one is the target; the user's
    earlier items (all earlier parts) are masked, so a random ranker draws the target's
    rank uniformly among the remaining candidates (a target already seen is a miss).
    """
    d = prepared.interactions
    n_items = prepared.catalog.n_items
    gains = 1.0 / np.log2(np.arange(10) + 2.0)
    values = []
    for u in range(len(d.offsets) - 1):
        rows = np.arange(d.offsets[u], d.offsets[u + 1])
        targets = rows[d.part[rows] == part]
        if not len(targets):
            continue
        seen = np.unique(d.item[rows[d.part[rows] < part]])
        if d.item[targets[0]] in seen:
            values.append(0.0)
            continue
        candidates = n_items - len(seen)
        values.append(gains[:min(10, candidates)].sum() / candidates)
    return float(np.mean(values))


@contextmanager
def fast_torch() -> Iterator[None]:
    """One torch thread (the machine is shared) and no fsync in checkpoints (tests only)."""
    threads = torch.get_num_threads()
    fsync = checkpoint._fsync
    torch.set_num_threads(1)
    checkpoint._fsync = lambda path: None
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        checkpoint._fsync = fsync
