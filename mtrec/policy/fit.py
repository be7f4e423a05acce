"""Joint training of the engagement head with the recommender's own tasks, and its metrics.

Each step takes a batch of training cut examples (users at the training cuts, with their
labels) and, when joint, a batch of training sequences for the recommender's tasks (next
item, purchase); the two losses are added.  Early stopping on the engagement loss of the
held-out validation users; the best weights are restored.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtrec.data.interactions import Interactions
from mtrec.eval.metrics import binary_metrics, concordance_index, regression_metrics
from mtrec.models.batches import SequenceBatcher
from mtrec.policy.engagement import (
    OUTPUTS,
    EngagementModel,
    EngagementOutput,
)
from mtrec.policy.labels import CutExamples, user_features
from mtrec.train.loss import task_losses


@dataclass(frozen=True)
class EngagementTrainConfig:
    joint: bool = True  # add the recommender's task losses (False: the engagement loss only)
    weight: float = 1.0  # of the engagement loss
    batch_size: int = 256  # cut examples per step
    seq_batch_size: int = 128  # training sequences per step (joint)
    lr: float = 1e-3
    epochs: int = 40
    patience: int = 4
    seed: int = 0
    bf16: bool = True  # bfloat16 autocast for the forward passes (as the trainer's default)


@dataclass
class FitResult:
    """Per output, its best validation epoch and the weights of that epoch (outputs that
    peak at the same epoch share one snapshot)."""

    best_epochs: dict[str, int]
    snapshots: dict[int, dict[str, Any]]
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def example_features(data: Interactions, examples: CutExamples) -> np.ndarray:
    """:func:`user_features` of every row, each at its own cut."""
    out = np.zeros((len(examples), 0), np.float32)
    for cut in np.unique(examples.cut):
        rows = np.flatnonzero(examples.cut == cut)
        users = examples.user[rows]
        order = np.argsort(users, kind="stable")
        x = user_features(data, users[order], int(cut))
        if out.shape[1] == 0:
            out = np.zeros((len(examples), x.shape[1]), np.float32)
        out[rows[order]] = x
    return out


def fit_engagement(model: EngagementModel, batcher: SequenceBatcher, data: Interactions,
                   train: tuple[CutExamples, np.ndarray], valid: tuple[CutExamples, np.ndarray],
                   config: EngagementTrainConfig, max_len: int) -> FitResult:
    """Train ``model`` on ``train`` (examples, features), stopping each output on its own
    validation loss (per-output early stopping: the counts, which overfit first, do not
    hold the return outputs back, nor the reverse); training ends when no output has
    improved for ``patience`` epochs.  See :func:`predict_best`."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.head.fit_scaler(train[1], train[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    best = {name: (math.inf, 0) for name in OUTPUTS}
    snapshots: dict[int, dict[str, Any]] = {}
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        sums = _epoch(model, optimizer, batcher, data, train, config, max_len, rng)
        losses = predict(model, data, *valid, max_len=max_len, bf16=config.bf16).losses or {}
        values = {name: float(v) for name, v in losses.items()}
        improved = [n for n, v in values.items() if v < best[n][0] - 1e-4]
        best.update({n: (values[n], epoch) for n in improved})
        if improved:
            snapshots[epoch] = copy.deepcopy(model.state_dict())
        keep = {e for _, e in best.values()}
        snapshots = {e: w for e, w in snapshots.items() if e in keep}
        history.append({"epoch": epoch, "seconds": time.perf_counter() - started,
                        **{f"valid/{n}": v for n, v in values.items()}, **sums})
        shown = " ".join(f"{n} {v:.4f}{'*' if n in improved else ''}" for n, v in values.items())
        print(f"engagement epoch {epoch}: valid {shown}", file=sys.stderr, flush=True)
        if epoch - max(e for _, e in best.values()) >= config.patience:
            break
    return FitResult({n: e for n, (_, e) in best.items()}, snapshots, epoch,
                     time.perf_counter() - started, history)


def _epoch(model: EngagementModel, optimizer: torch.optim.Optimizer, batcher: SequenceBatcher,
           data: Interactions, train: tuple[CutExamples, np.ndarray],
           config: EngagementTrainConfig, max_len: int,
           rng: np.random.Generator) -> dict[str, float]:
    """One pass over the training examples (with, when joint, as many sequence batches)."""
    model.train()
    order = rng.permutation(len(train[0]))
    seq_order = rng.permutation(batcher.train_users())
    sums = {"engagement": 0.0, "tasks": 0.0}
    steps = range(0, len(order), config.batch_size)
    for k, start in enumerate(steps):
        rows = order[start:start + config.batch_size]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = _engagement_step(model, data, train, rows, max_len) * config.weight
            sums["engagement"] += float(loss.detach())
            if config.joint:
                lo = (k * config.seq_batch_size) % max(len(seq_order), 1)
                seq = batcher.train_batch(seq_order[lo:lo + config.seq_batch_size])
                rec = model.recommender
                out = task_losses(rec, rec(seq), seq)
                tasks = torch.stack([v.float() for v in out.values()]).sum()
                sums["tasks"] += float(tasks.detach())
                loss = loss + tasks
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clip the recommender's gradients only: clipped together, the large next-item
        # gradients would scale the head's steps down with them.
        torch.nn.utils.clip_grad_norm_(model.recommender.parameters(), 5.0)
        optimizer.step()
    return {f"loss/{k}": v / max(len(steps), 1) for k, v in sums.items()}


def _engagement_step(model: EngagementModel, data: Interactions,
                     train: tuple[CutExamples, np.ndarray], rows: np.ndarray,
                     max_len: int) -> torch.Tensor:
    out = model(data, train[0].take(rows), train[1][rows], max_len)
    assert out.loss is not None
    return out.loss


@torch.no_grad()
def predict(model: EngagementModel, data: Interactions, examples: CutExamples,
            features: np.ndarray, max_len: int, batch_size: int = 1024,
            bf16: bool = False) -> EngagementOutput:
    """Outputs for every example (in order), with the mean losses over them."""
    model.eval()
    parts, sums = [], dict.fromkeys(OUTPUTS, 0.0)
    for start in range(0, len(examples), batch_size):
        rows = np.arange(start, min(start + batch_size, len(examples)))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(data, examples.take(rows), features[rows], max_len)
        for name, value in (out.losses or {}).items():
            sums[name] += float(value) * len(rows)
        parts.append(out)
    def cat(f: str) -> torch.Tensor:
        return torch.cat([getattr(p, f) for p in parts])

    joined = EngagementOutput(cat("return_logits"), cat("days"), cat("purchases"),
                              cat("log_hazard"))
    n = max(len(examples), 1)
    joined.losses = {name: torch.tensor(v / n) for name, v in sums.items()}
    joined.loss = torch.tensor(sum(sums.values()) / n)
    return joined


def predict_best(model: EngagementModel, fit: FitResult, data: Interactions,
                 examples: CutExamples, features: np.ndarray, max_len: int,
                 bf16: bool = False) -> dict[str, np.ndarray]:
    """Each output's predictions from the weights of its own best validation epoch."""
    out: dict[str, np.ndarray] = {}
    for epoch in sorted(set(fit.best_epochs.values())):
        model.load_state_dict(fit.snapshots[epoch])
        preds = predict(model, data, examples, features, max_len, bf16=bf16).predictions()
        for name, e in fit.best_epochs.items():
            if e == epoch:
                out[OUTPUTS[name]] = preds[OUTPUTS[name]]
    return out


def engagement_metrics(examples: CutExamples, preds: dict[str, np.ndarray],
                       return_days: tuple[int, ...]) -> dict[str, float]:
    """User-level metrics of one system's predictions: per horizon ``return_<d>d/auc`` and
    ``/logloss``; ``active_days/rmse``, ``/mae``; ``purchases/rmse``, ``/mae``; and
    ``time_to_return/cindex`` (``preds["risk"]``: higher = sooner)."""
    out: dict[str, float] = {}
    for k, days in enumerate(return_days):
        for name, value in binary_metrics(examples.returned[:, k],
                                          np.clip(preds["returned"][:, k], 0, 1)).items():
            out[f"return_{days}d/{name}"] = value
    for what in ("active_days", "purchases"):
        for name, value in regression_metrics(getattr(examples, what), preds[what]).items():
            out[f"{what}/{name}"] = value
    with contextlib.suppress(ValueError):  # undefined when every shorter time is censored
        out["time_to_return/cindex"] = concordance_index(
            examples.time_to_return, preds["risk"], examples.observed)
    return out
