"""Which ranking stages run, in which order, with which options (saved in every bundle)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_STAGES = ("cold_start", "filter", "blend", "explain")


@dataclass(frozen=True)
class RankConfig:
    """``stages`` run in order after retrieval (names from :data:`mtrec.rank.STAGES`);
    ``options`` are ``("stage.option", value)`` pairs, e.g. ``("diversity.weight", 0.3)``:
    each stage reads its own and refuses one it does not know."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    candidates: int = 200  # retrieval candidates the stages rank
    options: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"rank.candidates must be >= 1, got {self.candidates}")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError(f"rank.stages lists a stage twice: {', '.join(self.stages)}")
        for key, _ in self.options:
            if "." not in key:
                raise ValueError(f"rank.options key {key!r} must be 'stage.option'")

    def options_of(self, stage: str) -> dict[str, float]:
        """The options given for ``stage`` (without the ``stage.`` prefix)."""
        prefix = f"{stage}."
        return {k[len(prefix):]: v for k, v in self.options if k.startswith(prefix)}
