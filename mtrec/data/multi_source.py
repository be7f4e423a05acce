"""A multi-source dataset: several datasets as the scenarios of one platform.

``data.dataset = "amazon-beauty+amazon-scientific+amazon-office"`` names one; each part is
prepared on its own (its own store, and its own split: ``data.protocol`` is one protocol for
every part or one per part, ``"loo/source/source"``), then the parts are joined:

- each part is a scenario, named after the part, and owns its items: a target is ranked
  among its own scenario's items (a scoped catalog) and the metrics are per scenario;
- users are per part (their ids prefixed with the part: the users of separately released
  datasets are different people even where their ids coincide);
- item ids are one namespace (``item_ids = "shared"``): an id in two parts is one item, whose
  texts must agree (an empty text agrees with any; the first part's category is kept), else
  the dataset is refused with the ids named.  A shared item belongs to no one scenario, so
  it is ranked in every scenario (a catalog scopes an item to one scenario or to all).
  With ``item_ids = "per-source"`` every id is prefixed with its part, so no two parts
  share one.

Every interaction keeps its own part's split.  A part with several scenarios of its own is
refused (its scenarios would be lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mtrec.config import ConfigError
from mtrec.data.interactions import Catalog, Interactions, Prepared

ITEM_ID_MODES = ("shared", "per-source")
SEPARATOR = "+"


def source_parts(name: str) -> tuple[str, ...]:
    """The parts of a multi-source dataset name, or ``()`` for a single dataset.

    >>> source_parts("amazon-beauty+amazon-office")
    ('amazon-beauty', 'amazon-office')
    >>> source_parts("ml-100k")
    ()
    """
    if SEPARATOR not in name or Path(name).is_file():  # (a store file's path may hold "+")
        return ()
    parts = tuple(p.strip() for p in name.split(SEPARATOR))
    if any(not p for p in parts):
        raise ConfigError(f"data.dataset {name!r}: an empty part between {SEPARATOR!r}s")
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ConfigError(f"data.dataset {name!r}: {', '.join(repeated)} named twice")
    return parts


def part_protocols(protocol: str, parts: Sequence[str]) -> tuple[str, ...]:
    """One split protocol per part: ``protocol`` for all, or ``"p1/p2/..."`` one each.

    >>> part_protocols("loo/source", ["a", "b"])
    ('loo', 'source')
    >>> part_protocols("loo", ["a", "b"])
    ('loo', 'loo')
    """
    each = tuple(protocol.split("/"))
    if len(each) == 1:
        return each * len(parts)
    if len(each) != len(parts):
        raise ConfigError(f"data.protocol {protocol!r} names {len(each)} protocols for "
                          f"{len(parts)} parts ({', '.join(parts)}): give one, or one per part")
    return each


def merge_sources(prepared: Sequence[Prepared], item_ids: str = "shared") -> Prepared:
    """One :class:`Prepared` whose scenarios are the datasets of ``prepared`` (two or more)."""
    if item_ids not in ITEM_ID_MODES:
        raise ConfigError(f"data.item_ids must be one of {', '.join(ITEM_ID_MODES)}, "
                          f"got {item_ids!r}")
    if len(prepared) < 2:
        raise ConfigError("a multi-source dataset needs at least two parts")
    for p in prepared:
        if len(set(p.catalog.scenarios[1:]) - {""}) > 1:
            raise ConfigError(f"{p.dataset} has scenarios of its own "
                              f"({', '.join(p.catalog.scenarios[1:])}); a part of a "
                              "multi-source dataset must have one")
    ids = [_part_item_ids(p, item_ids) for p in prepared]
    catalog, codes = _catalog(prepared, ids)
    parts = [p.interactions for p in prepared]
    interactions = join_interactions(
        prepared, [c[d.item] for d, c in zip(parts, codes, strict=True)],
        [np.full(len(d), k + 1, np.int64) for k, d in enumerate(parts)])
    mixed = len({p.ordered for p in prepared}) > 1
    return Prepared(SEPARATOR.join(p.dataset for p in prepared),
                    "/".join(p.protocol for p in prepared), catalog, interactions,
                    {p.dataset: p.split_report for p in prepared},
                    all(p.ordered for p in prepared),
                    np.concatenate([np.full(len(p.catalog.user_ids), p.ordered)
                                    for p in prepared]) if mixed else None)


def keep_scenarios(prepared: Prepared, names: Sequence[str]) -> Prepared:
    """``prepared`` with only the interactions of scenarios ``names`` (all when empty); the
    catalog stays whole."""
    if not names:
        return prepared
    codes = [prepared.catalog.scenarios.index(n) for n in names]
    d = prepared.interactions
    keep = np.isin(d.scenario, codes)
    counts = np.bincount(d.user[keep], minlength=len(d.offsets) - 1)
    kept = Interactions(d.user[keep], d.item[keep], d.behaviors[keep], d.scenario[keep],
                        d.rating[keep], d.ts[keep], d.part[keep],
                        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    return replace(prepared, interactions=kept)


def _part_item_ids(p: Prepared, mode: str) -> list[str]:
    own = [str(i) for i in p.catalog.item_ids[1:]]
    return [f"{p.dataset}:{i}" for i in own] if mode == "per-source" else own


def _catalog(prepared: Sequence[Prepared], ids: list[list[str]]
             ) -> tuple[Catalog, list[np.ndarray]]:
    """The joined catalog and, per part, its item codes -> joined codes (0 stays 0).  An
    item in several parts is one item (refused where its texts differ) in no one scenario."""
    code_of: dict[str, int] = {}
    texts, categories, scope = [""], [""], [0]
    text_of: dict[str, tuple[str, str]] = {}  # id -> (first part, its text)
    conflicts: list[str] = []
    codes = []
    for k, (p, part_ids) in enumerate(zip(prepared, ids, strict=True), start=1):
        cats = p.catalog.categories
        mapping = np.zeros(len(part_ids) + 1, np.int64)
        for j, item in enumerate(part_ids, start=1):
            text = p.catalog.texts[j]
            if item in code_of:
                first, seen = text_of[item]
                if seen and text and seen != text:
                    conflicts.append(f"{item} ({first}: {seen[:40]!r}; {p.dataset}: "
                                     f"{text[:40]!r})")
                elif text and not seen:  # a text where the earlier part had none
                    text_of[item] = (p.dataset, text)
                    texts[code_of[item]] = text
                scope[code_of[item]] = 0
            else:
                code_of[item] = len(texts)
                text_of[item] = (p.dataset, text)
                texts.append(text)
                categories.append(cats[j] if cats else "")
                scope.append(k)
            mapping[j] = code_of[item]
        codes.append(mapping)
    if conflicts:
        raise ConfigError(
            f"{SEPARATOR.join(p.dataset for p in prepared)}: {len(conflicts)} item ids are in "
            f"several parts with different texts, so they cannot be one item: "
            f"{'; '.join(conflicts[:10])}{' ...' if len(conflicts) > 10 else ''} "
            "(if the parts' ids are separate namespaces, set data.item_ids = \"per-source\")")
    scopes = np.asarray(scope, np.int64)
    catalog = Catalog(
        item_ids=np.array(["", *code_of], dtype=object), texts=texts,
        user_ids=joined_user_ids(prepared), scenarios=("", *(p.dataset for p in prepared)),
        categories=categories if all(p.catalog.categories for p in prepared) else [],
        item_scenarios=scopes if scopes.any() else np.zeros(0, np.int64))
    return catalog, codes


def join_interactions(prepared: Sequence[Prepared], items: Sequence[np.ndarray],
                      scenarios: Sequence[np.ndarray]) -> Interactions:
    """The interactions of every dataset of ``prepared`` as one, each dataset's users after
    the earlier ones' (so still sorted by user), with ``items`` and ``scenarios`` (per
    dataset, already mapped to the joined codes); every interaction keeps its split part."""
    parts = [p.interactions for p in prepared]
    user_shift = np.cumsum([0, *(len(p.catalog.user_ids) for p in prepared)])
    before = np.cumsum([0, *(len(d) for d in parts[:-1])])  # interactions of earlier parts
    return Interactions(
        user=np.concatenate([d.user + s for d, s in zip(parts, user_shift, strict=False)]),
        item=np.concatenate(items), behaviors=np.concatenate([d.behaviors for d in parts]),
        scenario=np.concatenate(scenarios),
        rating=np.concatenate([d.rating for d in parts]),
        ts=np.concatenate([d.ts for d in parts]),
        part=np.concatenate([d.part for d in parts]),
        offsets=np.concatenate([[0], *(np.asarray(d.offsets[1:]) + n for d, n in
                                       zip(parts, before, strict=True))]).astype(np.int64))


def joined_user_ids(prepared: Sequence[Prepared]) -> np.ndarray:
    """Every dataset's user ids, prefixed with the dataset, in :func:`join_interactions`'s
    order of user codes."""
    return np.array([f"{p.dataset}:{u}" for p in prepared for u in p.catalog.user_ids],
                    dtype=object)
