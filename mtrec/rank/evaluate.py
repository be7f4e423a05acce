"""Evaluate ranked lists: what the ranking pipeline shows, judged against held-out targets.

For every user with a target in ``part``, the pipeline ranks from the state after the
earlier parts (as evaluation does), with the earlier items excluded; the list's top ``k``
is scored against the user's first target of the part (NDCG@k, Recall@k; a target outside
the list is a miss) and for diversity: the mean number of distinct categories in a list,
and the share of the catalog that appears in some list.  Full-catalog ranks
(:mod:`mtrec.eval.protocols`) measure the model; this measures the shown lists, after
stages such as diversity that reorder them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtrec.eval.metrics import ndcg_at_k, recall_at_k
from mtrec.eval.protocols import MISS
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import ItemTables, UserStates
from mtrec.rank.base import RankContext, RankRequest, Step
from mtrec.rank.pipeline import RankingPipeline, pool_from_logits


@torch.no_grad()
def evaluate_lists(pipeline: RankingPipeline, batcher: SequenceBatcher, part: int,
                   tables: ItemTables, context: RankContext, k: int = 10,
                   candidates: int = 200, batch_size: int = 512,
                   users: np.ndarray | None = None) -> dict[str, float]:
    """List metrics of ``part`` (named ``list/ndcg@k``, ``list/recall@k``,
    ``list/categories@k``, ``list/catalog_coverage@k``)."""
    model = pipeline.model
    task = model.retrieval_task
    if task is None:
        raise ValueError("ranked-list evaluation needs a retrieval task (next_item)")
    model.eval()
    chosen = batcher.eval_users(part) if users is None else users
    ranks, categories, shown = [], [], set()
    for start in range(0, len(chosen), batch_size):
        chunk = chosen[start:start + batch_size]
        batch, history = batcher.eval_batch(chunk, part)
        sel = batch.next_item
        states = model.encode(batch, tables)
        rows = UserStates(states.h[sel], states.query[sel], states.scenario[sel])
        logits = model.catalog_logits(rows, tables)
        targets = batch.target[sel].numpy()
        for r, (target, seen) in enumerate(zip(targets, history, strict=True)):
            pool = pool_from_logits(logits[r], candidates, seen)
            request = RankRequest(_steps(seen), k, int(rows.scenario[r]), None,
                                  np.unique(seen), candidates=candidates)
            one = UserStates(rows.h[r:r + 1], rows.query[r:r + 1], rows.scenario[r:r + 1])
            top = pipeline.rank(request, pipeline.scored(one, tables, pool), context).codes
            hit = np.flatnonzero(top == target)
            ranks.append(int(hit[0]) if len(hit) and target not in seen else MISS)
            categories.append(len({context.categories[c] for c in top} - {""}))
            shown.update(top.tolist())
    return {f"list/ndcg@{k}": ndcg_at_k(ranks, k), f"list/recall@{k}": recall_at_k(ranks, k),
            f"list/categories@{k}": float(np.mean(categories)),
            f"list/catalog_coverage@{k}": len(shown) / (len(tables.vectors) - 1),
            "list/users": float(len(ranks))}



def _steps(codes: Sequence[int] | np.ndarray) -> list[Step]:
    """History codes as steps (what the explain stage reads; the state is already made)."""
    return [Step(int(c), 0, 0) for c in codes]
