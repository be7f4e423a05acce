"""Multi-task layer over user-item features: shared-bottom, MMoE, PLE (scenario-aware
gates), STAR or PEPNet (scenario-specific weights and gates, on the user state too).

Input per example: the user state ``h``, the candidate item vector ``v`` and the scenario.
Features are ``[h, v, h * v]``.  With ``scenario_aware`` the gates see the scenario
embedding too, so each scenario can mix the experts differently.  Output: one feature
vector per task, fed to that task's tower.  Each layer is one file in
``mtrec/models/layers/`` and one entry in :data:`LAYERS`; ``model.mtl.kind`` picks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtrec.models.layers.base import MultiTaskLayer
from mtrec.models.layers.mmoe import MMoE
from mtrec.models.layers.pepnet import PepNet
from mtrec.models.layers.ple import PLE
from mtrec.models.layers.shared_bottom import SharedBottom
from mtrec.models.layers.star import Star

LAYERS: dict[str, type[MultiTaskLayer]] = {
    cls.name: cls for cls in (SharedBottom, MMoE, PLE, Star, PepNet)}
KINDS = tuple(LAYERS)
# layers with a scenario path on the user state: built even for a next-item-only model
SCENARIO_KINDS = (Star.name, PepNet.name)


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


def build_multitask(config: MultiTaskConfig, dim: int, n_scenarios: int,
                    tasks: tuple[str, ...]) -> MultiTaskLayer:
    """The layer ``config.kind`` names, for the pointwise ``tasks``."""
    return LAYERS[config.kind](config, dim, n_scenarios, tasks)  # type: ignore[call-arg]
