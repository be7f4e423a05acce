"""``shared-bottom``: one shared expert whose output every task tower reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mtrec.models.layers.base import MultiTaskLayer

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig


class SharedBottom(MultiTaskLayer):
    name = "shared-bottom"

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...]) -> None:
        super().__init__(config, dim, n_scenarios, tasks, n_shared=1)

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict.fromkeys(self.tasks, self.shared[0](self.features(h, v)))
