"""What every multi-task layer is: ``forward(h, v, scenario) -> {task: features}``.

Input per example: the user state ``h``, the candidate item vector ``v`` and the scenario
code; features are built from ``[h, v, h * v]``.  A layer may also transform the user state
per scenario (:meth:`MultiTaskLayer.state`), which the next-item query reads too.  A layer
is built by ``Layer(config, dim, n_scenarios, tasks)`` and exposes the parameters every
task's gradient flows through (``shared_parameters``, for GradNorm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig


def mlp(n_in: int, n_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout))


class MultiTaskLayer(nn.Module):
    """Shared experts over ``[h, v, h * v]``; subclasses say how tasks read them."""

    name: str = ""

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...], n_shared: int) -> None:
        super().__init__()
        self.config, self.tasks = config, tasks
        self.n_in = 3 * dim
        self.scenario = nn.Embedding(n_scenarios, dim)
        self.shared = nn.ModuleList(mlp(self.n_in, config.expert_dim, config.dropout)
                                    for _ in range(n_shared))

    @staticmethod
    def features(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, v, h * v], dim=-1)

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def state(self, h: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """The user state as the scenario path sees it (what the next-item query and the
        heads read); scenario-specific layers (STAR, PEPNet) change it, others keep it."""
        return h

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's gradient flows through (for GradNorm)."""
        return [p for e in self.shared for p in e.parameters()]
