"""The ranking pipeline: retrieval -> candidates with per-task scores -> ordered stages.

The same pipeline serves the offline ``Recommender`` (``mtrec recommend``) and
``/v1/recommend``.  A stage is one file with one class (see :mod:`mtrec.rank.base`) and one
entry in :data:`STAGES`; the rank config (``[rank] stages = [...]``, saved in the bundle)
chooses and orders them.
"""

from __future__ import annotations

from mtrec.rank.base import Stage
from mtrec.rank.blend import Blend
from mtrec.rank.cold_start import ColdStart
from mtrec.rank.config import RankConfig
from mtrec.rank.diversity import Diversity
from mtrec.rank.explain import Explain
from mtrec.rank.filter import Filter

STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (ColdStart, Filter, Blend, Diversity, Explain)}


def build_stages(config: RankConfig) -> list[Stage]:
    """The configured stages, in order; an unknown name or option is a ``ValueError``."""
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown rank stage {unknown[0]!r}; known: {', '.join(STAGES)}")
    known = {k.split(".", 1)[0] for k, _ in config.options}
    stray = sorted(known - set(config.stages))
    if stray:
        raise ValueError(f"rank.options set {stray[0]!r}, which is not in rank.stages "
                         f"({', '.join(config.stages)})")
    return [STAGES[name](config.options_of(name)) for name in config.stages]  # type: ignore[call-arg]


__all__ = ["STAGES", "RankConfig", "Stage", "build_stages"]
