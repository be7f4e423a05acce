"""What every task owns: its labels (built from interactions), its head, its loss, its metrics.

The model predicts; tasks own losses.  A pointwise task reads the per-task feature vector the
multi-task layer gives it; its head is a small tower.  Labels are computed once per
interaction (``labels``) and gathered per example at training time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtrec.data.interactions import Interactions
from mtrec.data.schema import BEHAVIORS
from mtrec.data.split import TRAIN


class TaskError(ValueError):
    """A task cannot be trained on this dataset; the message names what is missing."""


@dataclass(frozen=True)
class TaskOptions:
    """Options of the built-in tasks (each task reads its own)."""

    next_item_loss: str = "full"  # "full" softmax over the catalog or "sampled" (logQ)
    negatives: int = 1024  # sampled softmax only
    temperature: float = 1.0  # next_item logits are divided by this
    esmm: bool = False  # purchase = p(click) * p(purchase | click)
    like_threshold: float = 4.0  # a rating >= this is a like (when no 'like' events)
    horizon_days: int = 30  # engagement: interactions in the next N days
    return_days: int = 7  # engagement: does the user return within N days

    def __post_init__(self) -> None:
        if self.next_item_loss not in ("full", "sampled"):
            raise ValueError(
                f"next_item_loss must be 'full' or 'sampled', got {self.next_item_loss!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class Labels:
    """Per-interaction labels ``[M, k]`` and where they are defined ``[M]``."""

    values: np.ndarray
    mask: np.ndarray


class PointwiseTask(nn.Module):
    """A task scored on (user state, item, scenario) examples through its own tower."""

    name: str = ""
    out_dim: int = 1

    def __init__(self, tower_in: int, tower_dim: int, options: TaskOptions) -> None:
        super().__init__()
        self.options = options
        self.tower = nn.Sequential(nn.Linear(tower_in, tower_dim), nn.ReLU(),
                                   nn.Linear(tower_dim, self.out_dim))

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        """Raise :class:`TaskError` when the training part cannot label this task."""
        labels = self.labels(data)
        train = labels.mask & (data.part == TRAIN)
        if not train.any():
            raise TaskError(f"task {self.name!r}: no training interaction can be labelled "
                            f"({self.requirement()}; {present_behaviors(data)})")

    def requirement(self) -> str:
        return "needs labels"

    def labels(self, data: Interactions) -> Labels:
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.tower(features)

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The score served for this task: ``[T]`` (probability, rating, ...)."""
        raise NotImplementedError

    def eval_scores(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """What :meth:`metrics` scores; the served score unless a task says otherwise."""
        return self.predict(outputs)

    def metrics(self, labels: np.ndarray, preds: np.ndarray,
                users: np.ndarray) -> dict[str, float]:
        raise NotImplementedError


def present_behaviors(data: Interactions) -> str:
    names = [b for b in BEHAVIORS if data.has_behavior(b).any()]
    return "this dataset has: " + (", ".join(names) or "no events")


def both_classes(name: str, positive: np.ndarray, where: np.ndarray, what: str,
                 data: Interactions) -> None:
    """Raise unless the training part has positives and negatives for ``name``."""
    train = positive[where & (data.part == TRAIN)]
    if not train.any():
        raise TaskError(f"task {name!r}: no training interaction has {what} "
                        f"({present_behaviors(data)})")
    if train.all():
        raise TaskError(f"task {name!r}: every training interaction has {what}, so there are "
                        f"no negatives to learn from ({present_behaviors(data)})")
