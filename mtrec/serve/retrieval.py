"""Retrieval over the live catalog: next-item candidates, similar items, text search.

Next-item candidates come from one pass over the catalog (half-precision copies by
default, ``serve/scan.py``) up to ``exact_max`` items, from an approximate index past it
(HNSW, or compressed IVF codes re-scored with the catalog's own rows).  The
similar-items index holds unit item-tower vectors, the search index unit text vectors.
Every index grows as items are added.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.models.text_match import TextMatch
from mtrec.rank.pipeline import Pool
from mtrec.serve.catalog import ServingCatalog
from mtrec.serve.compressed import RowSource
from mtrec.serve.index import IndexConfig, ItemIndex
from mtrec.serve.scan import CatalogScan


def unit_rows(x: torch.Tensor) -> np.ndarray:
    return TextMatch.unit(x).numpy()


class Retrieval:
    def __init__(self, catalog: ServingCatalog, config: IndexConfig, temperature: float) -> None:
        self.catalog, self.config, self.temperature = catalog, config, temperature
        self.scan = CatalogScan(config.scan)
        self.rebuild()

    def rebuild(self, lookups: bool = True) -> None:
        """Every index from the catalog's current tables (``lookups=False``: the next-item
        one only; similar items and search keep theirs)."""
        cat = self.catalog
        codes = np.arange(1, len(cat.item_ids), dtype=np.int64)
        self.next_item = ItemIndex(self.config, self._rows("matrix")).build(
            cat.matrix[1:].numpy(), codes)
        # half copies for the exact catalog pass; none when an ANN index retrieves
        self.scan.rebuild(cat.matrix if self.exact else None)
        if not lookups:
            return
        lookup = self.config.lookup()
        self.similar = ItemIndex(lookup).build(unit_rows(cat.vectors[1:]), codes)
        self.text = (ItemIndex(lookup).build(cat.unit[1:].numpy(), codes)
                     if cat.has_text else None)

    def _rows(self, table: str) -> RowSource:
        """Full-precision rows of one of the catalog's tables, read when asked (the tables
        grow, so never a stale view): what a compressed index re-scores with."""
        def rows(codes: np.ndarray) -> np.ndarray:
            return getattr(self.catalog, table)[torch.from_numpy(codes)].float().numpy()
        return rows

    @property
    def exact(self) -> bool:
        return self.next_item.kind_ == "exact"

    def added(self, codes: Sequence[int]) -> None:
        """Index the catalog's rows of ``codes`` (just added or re-described)."""
        cat = self.catalog
        idx = torch.tensor(list(codes))
        arr = np.asarray(codes, dtype=np.int64)
        self.scan.grow(cat.matrix)
        self.scan.set_rows(idx, cat.matrix[idx])
        self.next_item.add(cat.matrix[idx].numpy(), arr)
        self.similar.add(unit_rows(cat.vectors[idx]), arr)
        if self.text is not None:
            self.text.add(cat.unit[idx].numpy(), arr)

    @torch.no_grad()
    def candidates(self, queries: torch.Tensor, fetch: Sequence[int],
                   excludes: Sequence[np.ndarray]) -> list[Pool]:
        """Per query row, the ``fetch`` best codes not in its ``excludes`` row and the
        softmax log-normalizer: exact (one matrix product over the catalog serves every row
        and both needs) or from the index."""
        if self.exact:
            return self.scan.candidates(queries, self.catalog.matrix, self.temperature, fetch,
                                        excludes)
        out: list[Pool] = []
        for query, n, exclude in zip(queries.float().numpy(), fetch, excludes, strict=True):
            pool, scores = self.next_item.search(query, n, exclude)
            keep = pool > 0  # an ANN index pads short answers with code 0
            logits = torch.from_numpy(scores[keep]).float() / self.temperature
            out.append(Pool(pool[keep], torch.logsumexp(logits, 0), logits))
        return out

    def normalizer(self, query: torch.Tensor, codes: np.ndarray,
                   logits: torch.Tensor) -> torch.Tensor:
        """The softmax log-normalizer for scoring given ``codes``: over the whole catalog
        when it is searched exactly; past ``exact_max`` (ANN), over ``codes`` and the best
        200 other items."""
        if self.exact:
            rows = self.catalog.matrix.numpy()[1:]
            return torch.logsumexp(torch.from_numpy(rows @ query.float().numpy())
                                   / self.temperature, 0)
        _, others = self.next_item.search(query.float().numpy(), 200, codes)
        others_t = torch.from_numpy(others).float() / self.temperature
        return torch.logsumexp(torch.cat([logits, others_t]), 0)

    def similar_items(self, code: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.similar.search(unit_rows(self.catalog.vectors[code][None])[0], k,
                                   np.array([code]))

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.text is None:
            raise ValueError("search needs item text; this bundle has none")
        return self.text.search(unit_rows(torch.from_numpy(vector[None]))[0], k)
