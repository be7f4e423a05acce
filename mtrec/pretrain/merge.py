"""Several prepared datasets as one: disjoint catalogs and users, one text space.

Item and user codes of each dataset are shifted past the earlier ones' and their ids are
prefixed with the dataset's name, so that nothing of one dataset can collide with another's.
Every interaction keeps its own dataset's split part.  All interactions share one scenario
(``pretrain``), so that what the scenario embeddings learn is what a single-scenario
catalog starts from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtrec.config import ConfigError
from mtrec.data.interactions import Catalog, Prepared
from mtrec.data.multi_source import join_interactions, joined_user_ids

SCENARIO = "pretrain"


def check_text(prepared: Sequence[Prepared]) -> None:
    """Refuse datasets without item text: pre-training learns from the text alone.

    >>> check_text([])
    """
    missing = [p.dataset for p in prepared if not p.catalog.has_text]
    if missing:
        raise ConfigError(f"pre-training needs item text; these datasets have none: "
                          f"{', '.join(missing)} (use datasets whose items have titles or "
                          f"descriptions)")


def merge(prepared: Sequence[Prepared]) -> Prepared:
    """One :class:`Prepared` holding every dataset of ``prepared`` (at least one)."""
    if not prepared:
        raise ConfigError("pre-training needs at least one dataset")
    item_shift = np.cumsum([0, *(p.catalog.n_items for p in prepared)])
    catalog = Catalog(
        item_ids=np.array(["", *(f"{p.dataset}:{i}" for p in prepared
                                 for i in p.catalog.item_ids[1:])], dtype=object),
        texts=["", *(t for p in prepared for t in p.catalog.texts[1:])],
        user_ids=joined_user_ids(prepared),
        scenarios=("", SCENARIO),
        categories=(["", *(c for p in prepared for c in p.catalog.categories[1:])]
                    if all(p.catalog.categories for p in prepared) else []))
    parts = [p.interactions for p in prepared]
    interactions = join_interactions(
        prepared, [d.item + s for d, s in zip(parts, item_shift, strict=False)],
        [np.ones(len(d), np.int64) for d in parts])
    protocols = sorted({p.protocol for p in prepared})
    return Prepared("+".join(p.dataset for p in prepared), "/".join(protocols), catalog,
                    interactions, {p.dataset: p.split_report for p in prepared},
                    all(p.ordered for p in prepared))
