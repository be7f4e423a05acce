"""Test metrics per scenario: re-evaluate a bundle on its test part and group every
example by the scenario of its target interaction.

The loop is the one of :func:`mtrec.eval.protocols.evaluate` (same batches, same masking,
same rolling or non-rolling pointwise examples), keeping the target's scenario of each
next-item rank and pointwise example.  The metrics recomputed over all scenarios are
compared with the bundle's saved test metrics, so the report can say whether they agree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.data.interactions import Interactions
from mtrec.data.split import TEST
from mtrec.eval.metrics import ranking_metrics
from mtrec.eval.protocols import COLD_MAX, item_train_counts, masked_ranks
from mtrec.models.model import Batch, MultiTaskRecommender
from mtrec.train.batches import SequenceBatcher

CAUSAL_PROTOCOLS = ("loo", "ratio", "temporal", "source")  # see Prepared.causal_parts
AGREE = 1e-4  # recomputed vs saved metrics: largest relative difference that still agrees


@dataclass
class Collected:
    """Per next-item target: rank, item and scenario; per task: pointwise examples."""

    ranks: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    scenarios: list[np.ndarray] = field(default_factory=list)
    n_items: int = 0
    # task -> [(labels, preds, users, scenarios)]
    points: dict[str, list[tuple[np.ndarray, ...]]] = field(default_factory=dict)


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
    batcher = SequenceBatcher(data, model.user_tower.config.max_len, labels)
    autocast = bool(rec.meta.get("run", {}).get("train", {}).get("bf16", False))
    names = tuple(rec.catalog.scenarios)
    tried: list[tuple[float, bool, dict[str, dict[str, float]], dict[str, float]]] = []
    for rolling in rolling_candidates(rec.meta, data, bool(model.pointwise)):
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


@torch.no_grad()
def collect(model: MultiTaskRecommender, batcher: SequenceBatcher, part: int, rolling: bool,
            batch_size: int = 512, autocast: bool = False) -> Collected:
    """Ranks and pointwise examples of ``part``, as :func:`mtrec.eval.protocols.evaluate`."""
    was_training = model.training
    model.eval()
    users = batcher.eval_users(part)
    table = model.item_tower()
    got = Collected(points={name: [] for name in model.pointwise}, n_items=len(table) - 1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for start in range(0, len(users) if model.next_item is not None or not rolling else 0,
                           batch_size):
            chunk = users[start:start + batch_size]
            batch, history = batcher.eval_batch(chunk, part)
            out = model(batch, item_table=table)
            if not rolling:
                _points(model, batch, out.heads, chunk[batch.rows.numpy()], got)
            if model.next_item is not None:
                sel = batch.next_item
                with torch.autocast("cpu", enabled=False):
                    scores = model.next_item.logits(out.query[sel].float(),
                                                    out.retrieval_items[1:].float())
                got.ranks.append(masked_ranks(scores, batch.target[sel] - 1, history))
                got.targets.append(batch.target[sel].numpy())
                got.scenarios.append(batch.target_scenario[sel].numpy())
        step = max(1, batch_size // 4)
        for start in range(0, len(users) if model.pointwise and rolling else 0, step):
            batch, owners = batcher.rolling_batch(users[start:start + step], part)
            out = model(batch, item_table=table)
            _points(model, batch, out.heads, owners[batch.rows.numpy()], got)
    model.train(was_training)
    return got


def _points(model: MultiTaskRecommender, batch: Batch, heads: dict[str, torch.Tensor],
            example_users: np.ndarray, into: Collected) -> None:
    for name, task in model.pointwise_tasks().items():
        mask = batch.label_mask[name]
        preds = task.eval_scores(heads)[mask].float().numpy()
        into.points[name].append((batch.labels[name][mask].numpy(), preds,
                                  example_users[mask.numpy()],
                                  batch.target_scenario[mask].numpy()))


def present_scenarios(got: Collected) -> list[int]:
    """Scenario codes that have a next-item target or a pointwise example."""
    codes = [np.concatenate(got.scenarios)] if got.scenarios else []
    codes += [p[3] for parts in got.points.values() for p in parts]
    return sorted(set(np.concatenate(codes).tolist())) if codes else []


def group_metrics(model: MultiTaskRecommender, batcher: SequenceBatcher, got: Collected,
                  scenario: int | None) -> dict[str, float]:
    """Metrics named as :func:`~mtrec.eval.protocols.evaluate` names them, over the examples
    whose target is in ``scenario`` (``None``: all)."""
    out: dict[str, float] = {}
    if got.ranks:
        ranks, targets = np.concatenate(got.ranks), np.concatenate(got.targets)
        keep = (np.ones(len(ranks), bool) if scenario is None
                else np.concatenate(got.scenarios) == scenario)
        if keep.any():
            cold = item_train_counts(batcher, got.n_items)[targets] <= COLD_MAX
            out.update(_next_item(ranks[keep], cold[keep]))
    for name, parts in got.points.items():
        if not parts:
            continue
        labels, preds, who, scen = (np.concatenate([p[i] for p in parts]) for i in range(4))
        keep = np.ones(len(labels), bool) if scenario is None else scen == scenario
        if not keep.any():
            continue
        task = model.pointwise_tasks()[name]
        found = task.metrics(labels[keep], preds[keep], who[keep])
        out.update({f"{name}/{k}": v for k, v in found.items()})
        out[f"{name}/examples"] = float(keep.sum())
    return out


def _next_item(ranks: np.ndarray, cold: np.ndarray) -> dict[str, float]:
    out = {f"next_item/{k}": v for k, v in ranking_metrics(ranks).items()}
    if cold.any():
        out.update({f"next_item/cold_{k}": v for k, v in ranking_metrics(ranks[cold]).items()})
    out["next_item/cold_share"] = float(cold.mean())
    out["next_item/users"] = float(len(ranks))
    return out


def max_rel_diff(recomputed: dict[str, float], saved: dict[str, float]) -> float:
    """Largest relative difference over the metrics both have (``nan``: none shared).

    >>> max_rel_diff({"a": 1.0, "b": 2.2}, {"a": 1.0, "b": 2.0, "c": 5.0})
    0.1
    """
    diffs = [abs(v - saved[k]) / max(abs(saved[k]), 1e-12) for k, v in recomputed.items()
             if k in saved and math.isfinite(v) and math.isfinite(saved[k])]
    return round(max(diffs), 12) if diffs else math.nan
