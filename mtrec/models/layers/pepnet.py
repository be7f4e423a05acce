"""``pepnet`` (Chang et al., KDD 2023, "PEPNet"): parameter and embedding personalisation
by gates conditioned on the scenario and the user.

- EPNet: a gate on the user state, from the scenario embedding and the (gradient-stopped)
  state itself: ``h * 2 sigmoid(MLP([e_s, sg(h)]))``.  It is :meth:`PepNet.state`, so the
  next-item query and every head read the gated state.
- PPNet: each task's tower layers are gated the same way, from the scenario, the user
  state and the item (all gradient-stopped but the scenario), so each task's layers are
  scaled per user and scenario.

Every gate's last layer starts at zero (a gate of exactly one): the model starts as the one
without gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from mtrec.models.layers.base import MultiTaskLayer

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig

TOWER_LAYERS = 2


class Gate(nn.Module):
    """``2 * sigmoid(MLP(x))``: a scale in (0, 2), exactly 1 at the start."""

    def __init__(self, n_in: int, n_out: int, hidden: int) -> None:
        super().__init__()
        last = nn.Linear(hidden, n_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.net(x))


class PepNet(MultiTaskLayer):
    name = "pepnet"

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...]) -> None:
        super().__init__(config, dim, n_scenarios, tasks, n_shared=0)
        e = config.expert_dim
        self.embedding_gate = Gate(2 * dim, dim, dim)
        self.layers = nn.ModuleDict({t: nn.ModuleList(
            nn.Linear(self.n_in if k == 0 else e, e) for k in range(TOWER_LAYERS))
            for t in tasks})
        self.gates = nn.ModuleDict({t: nn.ModuleList(
            Gate(3 * dim, e, e) for _ in range(TOWER_LAYERS)) for t in tasks})
        self.drop = nn.Dropout(config.dropout)

    def state(self, h: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        gate = self.embedding_gate(torch.cat([self.scenario(scenario), h.detach()], -1))
        return h * gate.to(h.dtype)

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.features(h, v)
        prior = torch.cat([self.scenario(scenario), h.detach(), v.detach()], -1)
        out = {}
        for task in self.tasks:
            y = x
            layers = cast(nn.ModuleList, self.layers[task])
            gates = cast(nn.ModuleList, self.gates[task])
            for layer, gate in zip(layers, gates, strict=True):
                y = self.drop(torch.relu(layer(y)) * gate(prior).to(y.dtype))
            out[task] = y
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding_gate.parameters())
