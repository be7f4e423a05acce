"""Remedies for negative transfer between tasks, chosen by config beside the loss weighting.

- ``train.conflict = "pcgrad"``: gradient surgery (Yu et al., NeurIPS 2020).  Each task's
  (weighted) loss gets its own gradient; where two tasks' gradients conflict (negative dot
  product), each is projected onto the normal plane of the other (others in random order),
  and the projected gradients are summed.  A task's own parameters are untouched: the other
  tasks' gradients are zero there.
- ``train.task_patience = N``: per-task early stopping.  Each task's main validation metric
  is tracked; N epochs after a task's best epoch without a gain, its head is put back to its
  weights at that epoch and frozen, and its loss stops training the shared layers, while the
  other tasks go on.  The run itself still stops on its selection metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from mtrec.eval.protocols import lower_is_better
from mtrec.tasks import main_metric
from mtrec.tensor_files import load_weights, save_weights

if TYPE_CHECKING:
    from mtrec.models.model import MultiTaskRecommender

CONFLICTS = ("none", "pcgrad")


def pcgrad(terms: Sequence[Tensor], params: Sequence[nn.Parameter],
           generator: torch.Generator | None = None) -> None:
    """Set ``params``' ``.grad`` to the PCGrad combination of the gradients of ``terms``
    (one scalar loss per task, weights applied).

    >>> w = nn.Parameter(torch.zeros(2))
    >>> pcgrad([(w * torch.tensor([1.0, 0.0])).sum(),
    ...         (w * torch.tensor([-1.0, 1.0])).sum()], [w])
    >>> w.grad.tolist()  # each projected off the other, then summed
    [0.5, 1.5]
    """
    params = [p for p in params if p.requires_grad]
    terms = [t for t in terms if t.requires_grad]  # (a frozen task's loss trains nothing)
    if not terms or not params:
        return
    flat = []
    for k, term in enumerate(terms):
        grads = torch.autograd.grad(term, params, retain_graph=k < len(terms) - 1,
                                    allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, params, strict=True)]))
    g = torch.stack(flat).float()
    out = g.clone()
    for i in range(len(g)):
        order = torch.randperm(len(g), generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = out[i] @ g[j]
            if dot < 0:
                out[i] -= dot / (g[j] @ g[j]).clamp_min(1e-20) * g[j]
    total = out.sum(0)
    start = 0
    for p in params:
        n = p.numel()
        p.grad = total[start:start + n].view_as(p).to(p.dtype)
        start += n


class TaskStopper:
    """Per-task early stopping: tracks each task's main validation metric and freezes a
    task's head (``model.tasks[name]``) ``patience`` epochs after its best, at its best
    weights (kept in ``folder``, so a resumed run finds them)."""

    def __init__(self, model: MultiTaskRecommender, patience: int, folder: Path,
                 schedule: dict[str, int] | None = None) -> None:
        """``schedule``: freeze each named task at the end of that epoch, with its weights
        then, whatever the metrics (a refit repeating the selection run's freezes)."""
        self.model, self.patience, self.folder = model, patience, folder
        self.schedule = schedule
        self.best: dict[str, tuple[float, int]] = {}
        self.frozen: set[str] = set()

    def _head(self, task: str) -> nn.Module:
        head: nn.Module = self.model.tasks[task]
        return head

    def update(self, metrics: dict[str, float], epoch: int) -> list[str]:
        """After validating ``epoch``: the tasks frozen now."""
        if self.schedule is not None:
            return self._scheduled(epoch)
        newly = []
        for task in self.model.task_names:
            name = main_metric(task)
            if task in self.frozen or name not in metrics:
                continue
            value = metrics[name] * (-1.0 if lower_is_better(name) else 1.0)
            best = self.best.get(task)
            if best is None or value > best[0]:
                self.best[task] = (value, epoch)
                self.folder.mkdir(parents=True, exist_ok=True)
                save_weights(self.folder / f"{task}.safetensors", self._head(task).state_dict())
            elif epoch - best[1] >= self.patience:
                self.freeze(task)
                newly.append(task)
        return newly

    def _scheduled(self, epoch: int) -> list[str]:
        assert self.schedule is not None
        due = sorted(t for t, e in self.schedule.items() if e <= epoch and t not in self.frozen)
        for task in due:  # its weights now are the ones to keep
            self.best[task] = (0.0, self.schedule[task])
            self.folder.mkdir(parents=True, exist_ok=True)
            save_weights(self.folder / f"{task}.safetensors", self._head(task).state_dict())
            self.freeze(task)
        return due

    def frozen_at(self) -> dict[str, int]:
        """Each frozen task's own best epoch."""
        return {t: self.best[t][1] for t in sorted(self.frozen) if t in self.best}

    def freeze(self, task: str) -> None:
        head = self._head(task)
        path = self.folder / f"{task}.safetensors"
        if path.is_file():
            head.load_state_dict(load_weights(path))
        for p in head.parameters():
            p.requires_grad_(False)
        self.frozen.add(task)

    @property
    def all_frozen(self) -> bool:
        """Every task's head is frozen: nothing is left to train."""
        return self.frozen >= set(self.model.task_names)

    def losses(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """``losses`` with the frozen tasks' cut off from training (kept for logging)."""
        return {k: v.detach() if k in self.frozen else v for k, v in losses.items()}

    def state(self) -> dict[str, Any]:
        return {"best": {k: list(v) for k, v in self.best.items()},
                "frozen": sorted(self.frozen)}

    def restore(self, state: dict[str, Any]) -> None:
        self.best = {k: (float(v[0]), int(v[1])) for k, v in state.get("best", {}).items()}
        for task in state.get("frozen", []):
            self.freeze(task)
