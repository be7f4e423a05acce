"""The multi-task objective: each task's loss on one model output, as a dict.

``forward`` computes outputs only; training wraps the model in :class:`MultiTaskLoss` (the
thin module that owns the loss, and what DDP wraps), and a weighting
(:mod:`mtrec.train.weighting`) combines the dict into one scalar.  Evaluation never calls
it, so it pays for no loss it does not use.
"""

from __future__ import annotations

import torch
from torch import nn

from mtrec.models.model import Batch, ModelOutput, MultiTaskRecommender


def task_losses(model: MultiTaskRecommender, out: ModelOutput,
                batch: Batch) -> dict[str, torch.Tensor]:
    """``{task: scalar loss}`` for every task of ``model``, in the model's task order."""
    return {name: task.batch_loss(out, batch)  # type: ignore[operator]
            for name, task in model.tasks.items()}


class MultiTaskLoss(nn.Module):
    """The model plus its task losses: ``forward(batch)`` returns ``{task: loss}``.

    ``adversarial = (eps, weight)`` adds APR adversarial training to each task's loss
    (:func:`mtrec.train.robust.adversarial_losses`)."""

    def __init__(self, model: MultiTaskRecommender,
                 adversarial: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.model, self.adversarial = model, adversarial

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.adversarial is not None and self.model.training:
            from mtrec.train.robust import adversarial_losses

            return adversarial_losses(self.model, batch, *self.adversarial)
        return task_losses(self.model, self.model(batch), batch)
