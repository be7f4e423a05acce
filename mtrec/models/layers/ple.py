"""``ple`` (Tang et al., 2020), one extraction level: shared experts plus
``task_experts`` experts owned by each task, mixed per task by a (scenario-aware) gate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtrec.models.layers.mmoe import MMoE

if TYPE_CHECKING:
    from mtrec.models.multitask import MultiTaskConfig


class PLE(MMoE):
    name = "ple"

    def __init__(self, config: MultiTaskConfig, dim: int, n_scenarios: int,
                 tasks: tuple[str, ...]) -> None:
        super().__init__(config, dim, n_scenarios, tasks, own=config.task_experts)
