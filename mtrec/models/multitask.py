"""Multi-task layer over user-item features: shared-bottom, MMoE or PLE, scenario-aware.

Input per example: the user state ``h``, the candidate item vector ``v`` and the scenario.
Features are ``[h, v, h * v]``.  With ``scenario_aware`` the gates see the scenario
embedding too, so each scenario can mix the experts differently.  Output: one feature
vector per task, fed to that task's tower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

KINDS = ("shared-bottom", "mmoe", "ple")


@dataclass(frozen=True)
class MultiTaskConfig:
    kind: str = "mmoe"
    n_experts: int = 4  # mmoe: experts; ple: shared experts
    task_experts: int = 1  # ple: experts owned by each task
    expert_dim: int = 64
    tower_dim: int = 32
    scenario_aware: bool = True
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"mtl.kind must be one of {', '.join(KINDS)}; got {self.kind!r}")


def _mlp(n_in: int, n_out: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout))


class MultiTaskLayer(nn.Module):
    """Per-task features from shared experts; ``tasks`` names the pointwise tasks."""

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.config, self.tasks = config, tasks
        n_in = 3 * dim
        self.scenario = nn.Embedding(n_scenarios, dim)
        gate_in = n_in + (dim if config.scenario_aware else 0)
        n_shared = 1 if config.kind == "shared-bottom" else config.n_experts
        self.shared = nn.ModuleList(_mlp(n_in, config.expert_dim, config.dropout)
                                    for _ in range(n_shared))
        own = config.task_experts if config.kind == "ple" else 0
        self.own = nn.ModuleDict({t: nn.ModuleList(_mlp(n_in, config.expert_dim, config.dropout)
                                                   for _ in range(own)) for t in tasks})
        self.gates = nn.ModuleDict({t: nn.Linear(gate_in, n_shared + own) for t in tasks}
                                   if config.kind != "shared-bottom" else {})

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.cat([h, v, h * v], dim=-1)
        shared = [e(x) for e in self.shared]
        if self.config.kind == "shared-bottom":
            return dict.fromkeys(self.tasks, shared[0])
        gate_x = (torch.cat([x, self.scenario(scenario)], -1) if self.config.scenario_aware
                  else x)
        out = {}
        for task in self.tasks:
            own = [e(x) for e in cast(nn.ModuleList, self.own[task])]
            experts = torch.stack(shared + own, dim=1)  # [B, E, D]
            weights = torch.softmax(self.gates[task](gate_x), dim=-1).unsqueeze(-1)
            out[task] = (weights * experts).sum(1)
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's gradient flows through (for GradNorm)."""
        return [p for e in self.shared for p in e.parameters()]
