"""``mmoe`` (Ma et al., 2018): shared experts mixed per task by a softmax gate; with
``scenario_aware`` the gates also see the scenario embedding, so each scenario can mix the
experts differently."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from mtrec.models.layers.base import MultiTaskLayer, mlp

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig


class MMoE(MultiTaskLayer):
    name = "mmoe"

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...], own: int = 0) -> None:
        super().__init__(config, dim, n_scenarios, tasks, n_shared=config.n_experts)
        self.own = nn.ModuleDict({t: nn.ModuleList(mlp(self.n_in, config.expert_dim,
                                                       config.dropout) for _ in range(own))
                                  for t in tasks})
        gate_in = self.n_in + (dim if config.scenario_aware else 0)
        self.gates = nn.ModuleDict({t: nn.Linear(gate_in, config.n_experts + own)
                                    for t in tasks})

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.features(h, v)
        shared = [e(x) for e in self.shared]
        gate_x = (torch.cat([x, self.scenario(scenario)], -1) if self.config.scenario_aware
                  else x)
        out = {}
        for task in self.tasks:
            own = [e(x) for e in cast(nn.ModuleList, self.own[task])]
            experts = torch.stack(shared + own, dim=1)  # [B, E, D]
            weights = torch.softmax(self.gates[task](gate_x), dim=-1).unsqueeze(-1)
            out[task] = (weights * experts).sum(1)
        return out
