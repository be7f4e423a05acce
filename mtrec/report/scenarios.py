"""Test metrics per scenario: re-evaluate a bundle on its test part and group every
example by the scenario of its target interaction.

The loop is evaluation's own (:func:`mtrec.eval.protocols.collect`), which keeps the
target's scenario of each next-item rank and pointwise example; the metrics are grouped by
it (:func:`mtrec.eval.protocols.summarize`).  The metrics recomputed over all scenarios are
compared with the bundle's saved test metrics, so the report can say whether they agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrec.data.interactions import Interactions
from mtrec.data.split import TEST
from mtrec.eval.protocols import COLD_MAX, Collected, collect, item_train_counts, summarize
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender

CAUSAL_PROTOCOLS = ("loo", "ratio", "temporal", "source")  # see Prepared.causal_parts
AGREE = 1e-4  # recomputed vs saved metrics: largest relative difference that still agrees


@dataclass(frozen=True)
class ScenarioMetrics:
    """Test metrics per scenario name, the same recomputed over every scenario, and how far
    that is from the bundle's saved test metrics (``nan`` when nothing could be compared)."""

    by_scenario: dict[str, dict[str, float]]
    overall: dict[str, float]
    max_rel_diff: float
    rolling: bool
    seconds: float

    @property
    def agrees(self) -> bool:
        return not math.isnan(self.max_rel_diff) and self.max_rel_diff <= AGREE


def evaluate_scenarios(path: Path, saved: dict[str, float] | None = None,
                       batch_size: int = 512) -> ScenarioMetrics:
    """Re-evaluate the bundle at ``path`` on its test part, per target scenario."""
    from mtrec.recommender import Recommender

    started = time.perf_counter()
    rec = Recommender.load(path)
    model, data = rec.model, rec.batcher.data
    labels = {n: t.labels(data) for n, t in model.pointwise_tasks().items()}
    batcher = SequenceBatcher(data, model.user_tower.config.max_len, labels,
                              per_scenario=rec.catalog.scoped)
    autocast = bool(rec.meta.get("run", {}).get("train", {}).get("bf16", False))
    names = tuple(rec.catalog.scenarios)
    tried: list[tuple[float, bool, dict[str, dict[str, float]], dict[str, float]]] = []
    for rolling in rolling_candidates(rec.meta, data, bool(model.pointwise_tasks())):
        got = collect(model, batcher, TEST, rolling, batch_size, autocast)
        overall = group_metrics(model, batcher, got, None)
        by = {names[s] or "(none)": group_metrics(model, batcher, got, s)
              for s in present_scenarios(got)}
        tried.append((max_rel_diff(overall, saved or {}), rolling, by, overall))
        if tried[-1][0] <= AGREE:
            break
    diff, rolling, by, overall = min(tried, key=lambda t: math.inf if math.isnan(t[0]) else t[0])
    return ScenarioMetrics(by, overall, diff, rolling, time.perf_counter() - started)


def rolling_candidates(meta: dict[str, Any], data: Interactions,
                       has_pointwise: bool) -> list[bool]:
    """How pointwise examples were scored at training time (``Prepared.causal_parts``):
    from the bundle when it says, else inferred; both, in turn, when the bundle cannot tell
    (a causal protocol on data without timestamps, ordered or not)."""
    if "causal_parts" in meta:
        return [bool(meta["causal_parts"])]
    if meta.get("protocol") not in CAUSAL_PROTOCOLS:
        return [False]
    if data.has_time or not has_pointwise:
        return [True]
    return [True, False]


def present_scenarios(got: Collected) -> list[int]:
    """Scenario codes that have a next-item target or a pointwise example."""
    codes = [np.concatenate(got.scenarios)] if got.scenarios else []
    codes += [p[3] for parts in got.points.values() for p in parts]
    return sorted(set(np.concatenate(codes).tolist())) if codes else []


def group_metrics(model: MultiTaskRecommender, batcher: SequenceBatcher, got: Collected,
                  scenario: int | None) -> dict[str, float]:
    """Metrics named as :func:`~mtrec.eval.protocols.evaluate` names them, over the examples
    whose target is in ``scenario`` (``None``: all)."""
    return summarize(model, got, item_train_counts(batcher, got.n_items), COLD_MAX, scenario)


def max_rel_diff(recomputed: dict[str, float], saved: dict[str, float]) -> float:
    """Largest relative difference over the metrics both have (``nan``: none shared).

    >>> max_rel_diff({"a": 1.0, "b": 2.2}, {"a": 1.0, "b": 2.0, "c": 5.0})
    0.1
    """
    diffs = [abs(v - saved[k]) / max(abs(saved[k]), 1e-12) for k, v in recomputed.items()
             if k in saved and math.isfinite(v) and math.isfinite(saved[k])]
    return round(max(diffs), 12) if diffs else math.nan
