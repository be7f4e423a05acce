"""One engagement run: the cut protocol, the joint model, its test predictions and metrics.

The recommender trains on the events before the test cut only (every later event is held
out of its sequences); the engagement head on the training cuts' examples (labels that end
by the test cut), early-stopped on held-out users; the test examples are every user active
before the test cut, labelled by what follows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.data.imports import find_store
from mtrec.data.interactions import Prepared, prepare
from mtrec.data.split import DROPPED, TEST, TRAIN, SplitConfig
from mtrec.data.store import Store
from mtrec.policy.engagement import EngagementHead, EngagementHeadConfig, EngagementModel
from mtrec.policy.fit import (
    EngagementTrainConfig,
    FitResult,
    engagement_metrics,
    example_features,
    fit_engagement,
    predict_best,
)
from mtrec.policy.labels import (
    DAY,
    CutExamples,
    EngagementConfig,
    cut_examples,
    default_cut,
    feature_names,
    split_users,
    training_cuts,
)
from mtrec.run_config import RunConfig
from mtrec.train.run import budgeted, build


@dataclass(frozen=True)
class EngagementSplit:
    """The examples of one protocol: training (with validation users held out) and test,
    each with its pre-cut features."""

    test_cut: int
    train_cuts: tuple[int, ...]
    train: tuple[CutExamples, np.ndarray]
    valid: tuple[CutExamples, np.ndarray]
    test: tuple[CutExamples, np.ndarray]
    features: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {"test_cut": self.test_cut, "train_cuts": list(self.train_cuts),
                "examples": {"train": len(self.train[0]), "valid": len(self.valid[0]),
                             "test": len(self.test[0])},
                "test_return_rate": self.test[0].returned.mean(0).round(4).tolist()}


def prepare_engagement(dataset: str, config: EngagementConfig, protocol: str = "source",
                       root: Path | None = None, store_dir: Path | None = None
                       ) -> tuple[Prepared, EngagementSplit]:
    """``dataset`` prepared so that no merged interaction (a view -> cart -> purchase
    funnel on one item) spans a cut or a label window's end, so no row dated before a cut
    carries a behaviour from after it; and its examples."""
    with Store.open(find_store(dataset, store_dir, root)) as store:
        first = prepare(store, dataset, SplitConfig(protocol))
        test_cut = default_cut(first.interactions, config)
        cuts = [test_cut, *training_cuts(first.interactions, config)]
        breaks = {*cuts, *(c + config.horizon * DAY for c in cuts)}
        prepared = prepare(store, dataset, SplitConfig(protocol), breaks=tuple(sorted(breaks)))
    return prepared, engagement_split(prepared, replace(config, cut=test_cut))


def engagement_split(prepared: Prepared, config: EngagementConfig) -> EngagementSplit:
    data = prepared.interactions
    test_cut = default_cut(data, config)
    cuts = training_cuts(data, config)
    pooled = CutExamples.concat([cut_examples(data, c, config, end=test_cut) for c in cuts])
    tr, va = split_users(pooled, config)
    x = example_features(data, pooled)
    test = cut_examples(data, test_cut, config)
    return EngagementSplit(test_cut, tuple(cuts), (pooled.take(tr), x[tr]),
                           (pooled.take(va), x[va]), (test, example_features(data, test)),
                           feature_names(data))


def before_cut(prepared: Prepared, cut: int) -> Prepared:
    """``prepared`` whose training part is every kept event before ``cut``; the rest is
    test (never a training sequence)."""
    d = prepared.interactions
    keep = d.part != DROPPED
    part = np.where(keep & (d.ts >= 0) & (d.ts < cut), TRAIN, np.where(keep, TEST, DROPPED))
    return replace(prepared, interactions=replace(d, part=part.astype(np.int8)))


def run_engagement(config: RunConfig, prepared: Prepared, split: EngagementSplit,
                   eng: EngagementConfig, head: EngagementHeadConfig,
                   train: EngagementTrainConfig) -> dict[str, Any]:
    """Train the joint model on ``split`` and score its test predictions."""
    started = time.perf_counter()
    torch.manual_seed(train.seed)
    at_cut = before_cut(prepared, split.test_cut)
    config, _ = budgeted(config, at_cut)
    recommender, batcher = build(config, at_cut, None)
    model = EngagementModel(recommender, EngagementHead(
        head, config.model.item.dim, len(split.features), len(eng.return_days)))
    max_len = config.model.user.max_len
    data = at_cut.interactions
    fit: FitResult = fit_engagement(model, batcher, data, split.train, split.valid, train,
                                    max_len)
    preds = predict_best(model, fit, data, *split.test, max_len=max_len, bf16=train.bf16)
    return {"metrics": engagement_metrics(split.test[0], preds, eng.return_days),
            "predictions": preds, "best_epochs": fit.best_epochs, "epochs_run": fit.epochs_run,
            "fit_seconds": round(fit.seconds, 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "max_len": max_len, "history": fit.history,
            "parameters": sum(p.numel() for p in model.parameters())}
