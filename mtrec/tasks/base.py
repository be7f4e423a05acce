"""What every task owns: its labels (built from interactions), its head, its loss, its metrics.

The model predicts; tasks own losses (``batch_loss`` on the model's output).  A pointwise
task reads the per-task feature vector the multi-task layer gives it; its head is a small
tower.  Labels are computed once per
interaction (``labels``) and gathered per example at training time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mtrec.data.interactions import Interactions
from mtrec.data.schema import BEHAVIORS
from mtrec.data.split import TRAIN

if TYPE_CHECKING:
    from mtrec.models.model import Batch, ModelOutput


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
class TaskDims:
    """Sizes a task is built with: the catalog and its tower's input and hidden width."""

    n_items: int
    tower_in: int
    tower_dim: int


@dataclass(frozen=True)
class Labels:
    """Per-interaction labels ``[M, k]`` and where they are defined ``[M]``."""

    values: np.ndarray
    mask: np.ndarray


class Task(nn.Module):
    """What every task declares: its name, its kind (``retrieval`` ranks the catalog,
    ``pointwise`` scores (user, item) examples), its main validation metric, the behaviours
    and protocols it needs, and its loss on a model output (``batch_loss``).

    Building a task is cheap and changes nothing; :meth:`check` only validates (raises
    :class:`TaskError`), :meth:`prepare` fits what the task learns from the training part
    before training (a popularity prior, a mean rating).
    """

    name: str = ""
    kind: str = "pointwise"
    main_metric: str = "auc"  # the metric, without the ``task/`` prefix
    companion_metric: str = "gauc"  # the second one a report plots beside it
    behaviors: tuple[str, ...] = ()  # behaviours it needs (documentation and errors)
    needs_time: bool = False  # every event must have a timestamp
    protocols: tuple[str, ...] = ()  # split protocols it is sound under (empty = any)

    def __init__(self, options: TaskOptions, dims: TaskDims) -> None:
        super().__init__()
        self.options = options

    def build_head(self) -> None:
        """Create the trainable head (the model does, after its towers: building a task to
        check and prepare it draws no random numbers)."""

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        """Raise :class:`TaskError` when this dataset cannot train the task."""

    def prepare(self, data: Interactions) -> None:
        """Fit state from the training part (called once, after :meth:`check`)."""

    def labels(self, data: Interactions) -> Labels | None:
        """Per-interaction labels, or None for a task that needs none (retrieval)."""
        return None

    def batch_loss(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


class RetrievalTask(Task):
    """A task that ranks the whole catalog by ``query . item`` (divided by a temperature)."""

    kind = "retrieval"

    @property
    def temperature(self) -> float:
        return self.options.temperature

    def logits(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[T, N]`` scores of every row of ``items`` for each query."""
        logits = query @ items.T
        return logits if self.temperature == 1.0 else logits / self.temperature


class PointwiseTask(Task):
    """A task scored on (user state, item, scenario) examples through its own tower."""

    out_dim: int = 1

    tower: nn.Module

    def __init__(self, options: TaskOptions, dims: TaskDims) -> None:
        super().__init__(options, dims)
        self.dims = dims

    def build_head(self) -> None:
        self.tower = nn.Sequential(nn.Linear(self.dims.tower_in, self.dims.tower_dim),
                                   nn.ReLU(), nn.Linear(self.dims.tower_dim, self.out_dim))

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
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

    def batch_loss(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """The loss over the batch's labelled examples (a graph-keeping zero when none)."""
        mask = batch.label_mask[self.name]
        if not mask.any():
            return out.heads[self.name].sum() * 0.0
        return self.loss({k: v[mask] for k, v in out.heads.items()},
                         batch.labels[self.name][mask])

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
