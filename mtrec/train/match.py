"""Choose the text-match fusion weight on validation (see :mod:`mtrec.models.text_match`).

The trained network's next-item logits and the text-match scores are computed once per
validation user; every grid value then costs one ranking pass.  The largest value whose
validation NDCG@10 is within ``tolerance`` of the best is kept (a channel that only hurts
keeps 0 = off).
"""

from __future__ import annotations

import numpy as np
import torch

from mtrec.eval.metrics import ndcg_at_k
from mtrec.eval.protocols import masked_ranks
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender
from mtrec.models.text_match import TextMatch, recent_items


@torch.no_grad()
def fit_text_match(model: MultiTaskRecommender, batcher: SequenceBatcher, part: int,
                   batch_size: int = 512, autocast: bool = False) -> dict[float, float]:
    """Set the model's text-match scale to the best of its grid on ``part``; returns
    ``{scale: NDCG@10}``.  A model without the channel (or without next_item) is left as is."""
    match, head = model.text_match, model.retrieval_task
    if match is None or head is None:
        return {}
    was_training = model.training
    model.eval()
    match.set_scale(0.0)  # score the network alone
    grid = sorted(set(match.config.scales))
    tables = model.item_tables()  # scale 0: the network's own rows
    unit = TextMatch.unit(model.item_tower.text_vectors)
    users = batcher.eval_users(part)
    ranks: dict[float, list[np.ndarray]] = {s: [] for s in grid}
    for start in range(0, len(users), batch_size):
        batch, history = batcher.eval_batch(users[start:start + batch_size], part)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            states = model.encode(batch, tables)
        sel = batch.next_item
        base = head.logits(states.query[sel].float(), tables.retrieval[1:].float())
        recent = recent_items(batch.items, batch.rows, batch.cols, match.config.lags)[sel]
        text = head.logits(match.query(unit, recent, match.unit_weights()), unit[1:])
        for scale in grid:
            ranks[scale].append(masked_ranks(base + scale * text, batch.target[sel] - 1,
                                             history))
    curve = {s: ndcg_at_k(np.concatenate(r), 10) if r else 0.0 for s, r in ranks.items()}
    top = max(curve.values())
    best = max(s for s in grid if curve[s] >= (1.0 - match.config.tolerance) * top)
    match.set_scale(best)
    model.train(was_training)
    return curve
