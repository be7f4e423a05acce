"""``next_item``: retrieval of the user's next item over the whole catalog.

Scores are dot products of the user state and every item vector (divided by
``temperature``).  The loss is a softmax over all items, or a sampled softmax with logQ
correction (Yi et al., 2019): negatives drawn from the training popularity, each logit
lowered by the log of its sampling probability.  Metrics are full-ranking Recall/HR, NDCG
and MRR at 5/10/20 with the user's earlier items masked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.interactions import Interactions
from mtrec.data.split import TRAIN
from mtrec.models.fast_ops import full_softmax_loss, out_of_scope
from mtrec.tasks.base import RetrievalTask, TaskDims, TaskError, TaskOptions

if TYPE_CHECKING:
    from mtrec.models.model import Batch, ModelOutput


class NextItemTask(RetrievalTask):
    name = "next_item"
    main_metric = "ndcg@10"
    companion_metric = "recall@10"
    log_q: torch.Tensor

    def __init__(self, options: TaskOptions, dims: TaskDims) -> None:
        super().__init__(options, dims)
        self.register_buffer("log_q", torch.zeros(dims.n_items))

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        if not (data.part == TRAIN).any():
            raise TaskError("task 'next_item': the training split is empty")

    def prepare(self, data: Interactions) -> None:
        """The training popularity prior of the sampled softmax's logQ correction."""
        train = data.part == TRAIN
        counts = np.bincount(data.item[train] - 1, minlength=len(self.log_q)) + 1.0
        self.log_q.copy_(torch.from_numpy(np.log(counts / counts.sum())).float())

    def batch_loss(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """The loss over the batch's next-item examples (a graph-keeping zero when none)."""
        sel = batch.next_item
        if not sel.any():
            return out.query.sum() * 0.0
        scope = scenario = None
        if out.item_scope is not None and out.scenario is not None:  # a scoped catalog
            scope, scenario = out.item_scope[1:], out.scenario[sel]
        return self.loss(out.query[sel], out.retrieval_items[1:], batch.target[sel],
                         scope, scenario)

    def loss(self, query: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             scope: torch.Tensor | None = None,
             scenario: torch.Tensor | None = None) -> torch.Tensor:
        """``targets`` are item codes 1..N; with ``scope`` (``[N]``, each item's scenario)
        and ``scenario`` (``[T]``) the negatives are the items of the row's scenario."""
        if self.options.next_item_loss == "full":
            scaled = query if self.temperature == 1.0 else query / self.temperature
            return full_softmax_loss(scaled, items, targets - 1, scope, scenario)
        k = min(self.options.negatives, len(self.log_q))
        neg = torch.multinomial(self.log_q.exp(), k, replacement=True)
        pos_logit = (query * items[targets - 1]).sum(-1, keepdim=True) / self.temperature
        neg_logit = query @ items[neg].T / self.temperature
        neg_logit = neg_logit - self.log_q[neg]
        same = neg.unsqueeze(0) == (targets - 1).unsqueeze(1)
        if scope is not None and scenario is not None:
            same |= out_of_scope(scope[neg], scenario)
        neg_logit = neg_logit.masked_fill(same, -1e4)
        logits = torch.cat([pos_logit - self.log_q[targets - 1].unsqueeze(1), neg_logit], 1)
        return F.cross_entropy(logits.float(), torch.zeros_like(targets))
