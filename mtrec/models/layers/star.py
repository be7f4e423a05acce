"""``star`` (Sheng et al., CIKM 2021, "One Model to Serve All"): a star topology of one
shared network and one per scenario.

- Each fully connected layer's weight is the shared weight times (element-wise) the
  scenario's own weight, its bias the sum of both (:class:`StarLinear`); the scenario weights
  start at one, so every scenario starts from the shared network.
- Partitioned normalisation: one set of normalisation statistics, and a scale and shift that
  are the shared ones times / plus the scenario's own (:class:`PartitionedNorm`).
- An auxiliary network reads the scenario alone and adds its output, so what is specific to a
  scenario has a direct path.

On the user side (:meth:`Star.state`, what the next-item query and every head read) the
state gains a residual ``StarLinear -> ReLU -> StarLinear`` of its partitioned
normalisation, plus the auxiliary output; the last layer starts at zero, so the model starts
as the one without the layer.  On the item side every pointwise task reads the same
STAR features of ``[h, v, h * v]`` (one shared bottom, scenario-specialised).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from mtrec.models.layers.base import MultiTaskLayer

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig


class StarLinear(nn.Module):
    """``x @ (W * W_s) + b + b_s`` for the scenario ``s`` of each row."""

    def __init__(self, n_in: int, n_out: int, n_scenarios: int, zero: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        if zero:
            nn.init.zeros_(self.weight)
        else:
            nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.own_weight = nn.Parameter(torch.ones(n_scenarios, n_in, n_out))
        self.own_bias = nn.Parameter(torch.zeros(n_scenarios, n_out))

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        # every scenario's product for every row, then each row's own: no data-dependent
        # control flow, so the exported (traced) graph serves any mix of scenarios
        weights = (self.weight * self.own_weight).to(x.dtype)  # [S, in, out]
        every = torch.einsum("...i,sio->...so", x, weights)  # [..., S, out]
        index = scenario[..., None, None].expand(*scenario.shape, 1, every.shape[-1])
        own = every.gather(-2, index).squeeze(-2)
        return own + (self.bias + self.own_bias[scenario]).to(x.dtype)


class PartitionedNorm(nn.Module):
    """Layer normalisation whose scale and shift are shared * / + the scenario's own."""

    def __init__(self, dim: int, n_scenarios: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.own_scale = nn.Parameter(torch.ones(n_scenarios, dim))
        self.own_shift = nn.Parameter(torch.zeros(n_scenarios, dim))

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        scale = self.scale * self.own_scale[scenario]
        return self.norm(x) * scale + self.shift + self.own_shift[scenario]


class Star(MultiTaskLayer):
    name = "star"

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...]) -> None:
        super().__init__(config, dim, n_scenarios, tasks, n_shared=0)
        self.state_norm = PartitionedNorm(dim, n_scenarios)
        self.state_in = StarLinear(dim, dim, n_scenarios)
        self.state_out = StarLinear(dim, dim, n_scenarios, zero=True)
        aux_out = nn.Linear(dim, dim)
        nn.init.zeros_(aux_out.weight)
        nn.init.zeros_(aux_out.bias)
        self.aux = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), aux_out)
        self.norm = PartitionedNorm(self.n_in, n_scenarios)
        self.bottom = StarLinear(self.n_in, config.expert_dim, n_scenarios)
        self.item_aux = nn.Linear(dim, config.expert_dim)
        self.drop = nn.Dropout(config.dropout)

    def state(self, h: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.state_in(self.state_norm(h, scenario), scenario))
        return h + self.state_out(x, scenario) + self.aux(self.scenario(scenario))

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.norm(self.features(h, v), scenario)
        out = torch.relu(self.bottom(x, scenario) + self.item_aux(self.scenario(scenario)))
        return dict.fromkeys(self.tasks, self.drop(out))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.bottom.weight, self.bottom.bias]
