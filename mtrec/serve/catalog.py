"""The live catalog: item ids, texts, categories and the item tables, grown in place.

It starts as the bundle's catalog; items added or re-described later enter through their
text (the item tower without an ID embedding, as for cold items in training).  The tables
are the model's :class:`~mtrec.models.model.ItemTables` (item-tower vectors, retrieval rows,
unit text vectors) plus the raw text vectors, each the leading rows of a buffer with spare
room (``serve/rows.py``), so adding an item copies no table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.models.model import ItemTables, MultiTaskRecommender
from mtrec.models.text_match import TextMatch
from mtrec.recommender import Recommender
from mtrec.serve.records import NewItem
from mtrec.serve.rows import RowsAttribute, rows_of


class ServingCatalog:
    # item tables ([N + 1, ...], row 0 padding), grown in place as items are added
    text, unit, vectors, matrix = RowsAttribute(), RowsAttribute(), RowsAttribute(), RowsAttribute()

    def __init__(self, rec: Recommender) -> None:
        self.model: MultiTaskRecommender = rec.model
        self.item_ids = [str(i) for i in rec.catalog.item_ids]
        self.item_ids[0] = ""
        self.item_code = {item: code for code, item in enumerate(self.item_ids) if code}
        self.texts = list(rec.catalog.texts)
        self.categories = list(rec.catalog.categories) or [""] * len(self.item_ids)
        self.text = self.model.item_tower.text_vectors.clone()
        self.vectors = rec.tables.vectors.clone()
        self.unit = TextMatch.unit(self.text)
        self.matrix = self._rows(self.vectors, self.text)
        # each item's scenario on a multi-scenario catalog (items added later: every one)
        scope = self.model.item_scope
        self._scope = scope.clone() if len(scope) else None
        match = self.model.text_match  # its scale is fixed once trained
        self._match = match is not None and match.active
        self._tables: ItemTables | None = None

    def __len__(self) -> int:
        """Items, padding excluded."""
        return len(self.item_ids) - 1

    @property
    def has_text(self) -> bool:
        return self.text.shape[1] > 0

    @property
    def tables(self) -> ItemTables:
        """The current tables, as the model scores against them (made again after a
        change: a grown table is a new view of its buffer)."""
        if self._tables is None:
            scope = self._scope
            if scope is not None and len(scope) < len(self.item_ids):
                scope = self._scope = torch.cat(
                    [scope, scope.new_zeros(len(self.item_ids) - len(scope))])
            self._tables = ItemTables(self.vectors, self.matrix,
                                      self.unit if self._match else None, scope)
        return self._tables

    def _rows(self, vectors: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """float32 retrieval rows for item-tower ``vectors`` and raw ``text`` vectors."""
        with torch.no_grad():
            return self.model.tables_for(vectors, text).retrieval.float()

    def codes(self, items: Sequence[str]) -> np.ndarray:
        missing = [i for i in items if i not in self.item_code]
        if missing:
            raise KeyError(f"unknown item id(s): {', '.join(map(repr, missing[:5]))}")
        return np.array([self.item_code[i] for i in items], dtype=np.int64)

    def put(self, items: Sequence[NewItem], text: torch.Tensor) -> tuple[list[int], int]:
        """Add or re-describe ``items`` with raw text vectors ``text``; returns their codes
        and how many items were known before (codes below it were re-described)."""
        with torch.no_grad():
            vectors = self.model.item_tower.text_item_vectors(text)
        known = len(self.item_ids)
        codes = [self._code_for(i) for i in items]
        for name in ("text", "unit", "vectors", "matrix"):  # zero rows for new codes
            rows_of(self, name).resize(len(self.item_ids))
        self._tables = None
        idx = torch.tensor(codes)
        self.text[idx], self.unit[idx], self.vectors[idx] = text, TextMatch.unit(text), vectors
        self.matrix[idx] = self._rows(vectors, text)
        return codes, known

    def _code_for(self, item: NewItem) -> int:
        code = self.item_code.get(item.item_id)
        if code is None:
            code = len(self.item_ids)
            self.item_ids.append(item.item_id)
            self.texts.append("")
            self.categories.append("")
            self.item_code[item.item_id] = code
        self.texts[code], self.categories[code] = item.text, item.category
        return code

    def extend(self, ids: list[str], texts: list[str], categories: list[str],
               vectors: torch.Tensor, text: torch.Tensor) -> None:
        """Append items with given tables rows (whole-table rebuild: for benchmarks)."""
        self._tables = None
        first = len(self.item_ids)
        self.item_ids += ids
        self.item_code.update({item: first + i for i, item in enumerate(ids)})
        self.texts += texts
        self.categories += categories
        self.vectors = torch.cat([self.vectors, vectors])
        if self.has_text:
            self.text = torch.cat([self.text, text])
        self.unit = TextMatch.unit(self.text)
        self.matrix = self._rows(self.vectors, self.text)
