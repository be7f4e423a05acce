"""The training loop: AdamW, warm-up then cosine decay, clipping, early stopping, resume.

Runs unchanged under ``torchrun``: with ``WORLD_SIZE > 1`` the model is wrapped in DDP (gloo
on CPU, NCCL on GPU), each rank takes its share of every global batch, and rank 0
evaluates, logs and writes checkpoints.  With one process the same sampler gives the same
global batches, so one process and two agree up to float error.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrec.eval.protocols import lower_is_better, mean_best_share
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender
from mtrec.run_config import TrainConfig
from mtrec.tasks import main_metric
from mtrec.train import distributed as dist_utils
from mtrec.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from mtrec.train.progress import EpochProgress
from mtrec.train.remedies import TaskStopper, pcgrad
from mtrec.train.robust import SequenceAugmenter
from mtrec.train.weighting import GradNormWeighting, TaskWeighting


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    epochs_run: int
    seconds: float
    stopped_early: bool
    history: list[dict[str, Any]]
    # per-task early stopping: each frozen task's own best epoch (its head's weights)
    frozen_at: dict[str, int] = field(default_factory=dict)


Evaluator = Callable[[MultiTaskRecommender], dict[str, float]]


class Trainer:
    """Owns the optimisation; the model computes task losses, ``weighting`` combines them."""

    def __init__(self, model: MultiTaskRecommender, weighting: TaskWeighting,
                 batcher: SequenceBatcher, config: TrainConfig, metric: str,
                 evaluate: Evaluator | None, out_dir: Path,
                 objective: nn.Module | None = None,
                 freeze_at: dict[str, int] | None = None) -> None:
        """``objective``: the loss module to train (around ``model``; default its tasks').
        ``freeze_at``: with ``task_patience``, freeze each named task's head at the end of
        that epoch instead of on validation (a refit repeating the selection's freezes)."""
        self.model, self.weighting, self.batcher = model, weighting, batcher
        self.objective = objective
        self.config, self.metric, self.evaluate, self.out_dir = config, metric, evaluate, out_dir
        self.ctx = dist_utils.DistContext()
        self.augment: SequenceAugmenter | None = None
        self.stopper: TaskStopper | None = None
        self.freeze_at = freeze_at
        self._generator = torch.Generator().manual_seed(config.seed)  # PCGrad's task orders

    def fit(self, resume: bool = False) -> TrainResult:
        cfg, ctx = self.config, dist_utils.context()
        self.ctx = ctx
        users = self.batcher.train_users()
        robust = cfg.robust
        engine = dist_utils.wrap(self.model, ctx, (robust.adversarial_eps,
                                                   robust.adversarial_weight)
                                 if robust.adversarial else None, self.objective)
        self.augment = SequenceAugmenter(robust) if robust.augments else None
        # an objective's own weights outside the model (a pre-training head) train and are
        # checkpointed beside the weighting's
        heads: nn.Module | None = getattr(self.objective, "heads", None)
        extra = nn.ModuleList([self.weighting, *([heads] if heads is not None else [])])
        optimizer = _optimizer(self.model, extra, cfg)
        total = math.ceil(len(users) / cfg.batch_size) * cfg.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg.warmup_steps, total))
        self._check_remedies(ctx)
        both = nn.ModuleDict({"model": self.model, "weighting": self.weighting,
                              **({"heads": heads} if heads is not None else {})})
        state: dict[str, Any] = {"epoch": 0, "best_value": None, "best_epoch": 0,
                                 "bad_epochs": 0, "history": [], "seconds": 0.0}
        last_dir = self.out_dir / "checkpoint" / "last"
        self.stopper = (TaskStopper(self.model, cfg.task_patience, last_dir.parent / "tasks",
                                    self.freeze_at) if cfg.task_patience else None)
        if resume and has_checkpoint(last_dir):
            state = load_checkpoint(last_dir, both, optimizer, scheduler)
            _log(ctx, f"resumed from {last_dir} after epoch {state['epoch']}")
            if self.stopper is not None:
                self.stopper.restore(state.get("task_stop", {}))
        # A resumed run that had already stopped early trains no further.
        stopped_early = state["bad_epochs"] >= cfg.patience
        first = cfg.epochs + 1 if stopped_early else state["epoch"] + 1
        started = time.perf_counter() - state["seconds"]
        logger = _Logger(self.out_dir, ctx.is_main)
        if cfg.init and self.evaluate is not None and not state["history"]:
            # a pre-trained start is a candidate too: "epoch 0" wins when no epoch beats it
            row = {**self._validate(ctx, state, 0, {}), "seconds": 0.0}
            state["history"].append(row)
            logger.log(row)
        for epoch in range(first, cfg.epochs + 1):
            steps = dist_utils.sampler(users, ctx, cfg.seed, epoch, cfg.batch_size,
                                       self.batcher.train_lengths())
            if self.augment is not None:  # the same draws after a resume
                self.augment.reseed((cfg.seed, epoch, ctx.rank))
            self.batcher.reseed((cfg.seed, epoch, ctx.rank, 1))
            losses = self._epoch(engine, optimizer, scheduler, steps, epoch)
            self.weighting.end_epoch(_mean_over_ranks(losses, ctx))
            row = self._validate(ctx, state, epoch, losses)
            row["lr"] = scheduler.get_last_lr()[0]
            if self.stopper is not None:
                self._stop_tasks(ctx, state, row, epoch)
            state["history"].append(row)
            state.update(epoch=epoch, seconds=time.perf_counter() - started)
            row["seconds"] = round(state["seconds"], 1)
            logger.log(row)
            if ctx.is_main:
                save_checkpoint(last_dir, both, optimizer, scheduler, state)
            if (state["bad_epochs"] >= cfg.patience or self._out_of_time(state["seconds"])
                    or (self.stopper is not None and self.stopper.all_frozen)):
                stopped_early = True
                break
        logger.close()
        dist_utils.barrier(ctx)
        load_checkpoint(self.out_dir / "checkpoint" / "best", self.model, restore_rng=False)
        frozen = self.stopper.frozen_at() if self.stopper is not None else {}
        return TrainResult(state["best_epoch"], state["best_value"], state["epoch"],
                           state["seconds"], stopped_early, state["history"], frozen)

    def _validate(self, ctx: dist_utils.DistContext, state: dict[str, Any], epoch: int,
                  losses: dict[str, float]) -> dict[str, Any]:
        """Evaluate on validation (rank 0), keep the best checkpoint, count bad epochs.

        Without an evaluator (a refit for a fixed number of epochs) every epoch is the best.
        """
        metrics = self.evaluate(self.model) if ctx.is_main and self.evaluate else {}
        fallback = float(epoch) if self.evaluate is None else float("nan")
        if self.evaluate is None:
            state["best_value"] = None
        if self.metric == "mean" and metrics:
            self._mean_share(state, metrics, epoch)
        value = dist_utils.broadcast_float(metrics.get(self.metric, fallback), ctx)
        if math.isnan(value):
            raise RuntimeError(f"validation metric {self.metric!r} is missing or NaN; "
                               f"got {sorted(metrics)}")
        sign = -1.0 if lower_is_better(self.metric) else 1.0
        best = state["best_value"]
        if self.metric == "mean" and best is not None:  # re-scored on rank 0 only
            best = dist_utils.broadcast_float(best, ctx)
            state["best_value"] = best
        improved = best is None or sign * (value - best) > self.config.min_delta
        if improved:
            state.update(best_value=value, best_epoch=epoch, bad_epochs=0)
            if ctx.is_main:
                save_checkpoint(self.out_dir / "checkpoint" / "best", self.model,
                                state={"epoch": epoch})
        else:
            state["bad_epochs"] += 1
        shown = f" {self.metric} {value:.4f}{' *' if improved else ''}" if self.evaluate else ""
        _log(ctx, f"epoch {epoch}: loss {sum(losses.values()):.4f}{shown}" if epoch else
             f"start (from {self.config.init}):{shown}")
        return {"epoch": epoch, **{f"loss/{k}": v for k, v in losses.items()},
                **{f"weight/{k}": v for k, v in self.weighting.current_weights().items()},
                **{f"valid/{k}": v for k, v in metrics.items()}}

    def _mean_share(self, state: dict[str, Any], metrics: dict[str, float], epoch: int) -> None:
        """Score this epoch and re-score the best one against the same per-task bests (a
        task's best can only rise, so an earlier score would be stale)."""
        tasks = self.model.task_names
        past: dict[str, dict[str, float]] = state.setdefault("task_metrics", {})
        past[str(epoch)] = {m: metrics[m] for m in map(main_metric, tasks) if m in metrics}
        history = list(past.values())
        metrics["mean"] = mean_best_share(past[str(epoch)], history, tasks)
        best = past.get(str(state["best_epoch"]))
        # (a run resumed from before this rule keeps its old score; with no best yet, the
        # first candidate, a pre-trained start's epoch 0, is not its own earlier best)
        if best is not None and state["best_value"] is not None:
            state["best_value"] = mean_best_share(best, history, tasks)

    def _check_remedies(self, ctx: dist_utils.DistContext) -> None:
        if self.config.conflict == "pcgrad" and ctx.world > 1:
            raise ValueError("train.conflict 'pcgrad' runs in one process (torchrun would "
                             "not synchronise its per-task gradients)")

    def _pcgrad(self, engine: nn.Module, losses: dict[str, torch.Tensor],
                total: torch.Tensor) -> None:
        """Gradients by PCGrad: the model's from each task's weighted loss (every weighting
        gives the model ``sum_i w_i grad L_i``), the weighting's own from ``total``."""
        own = [p for p in self.weighting.parameters() if p.requires_grad and p.grad is None]
        if own and total.requires_grad:  # (GradNorm has set its weights' gradient already)
            grads = torch.autograd.grad(total, own, retain_graph=True, allow_unused=True)
            for p, g in zip(own, grads, strict=True):
                p.grad = g
        weights = self.weighting.current_weights()
        pcgrad([weights[k] * losses[k] for k in self.weighting.tasks],
               list(engine.parameters()), self._generator)

    def _stop_tasks(self, ctx: dist_utils.DistContext, state: dict[str, Any],
                    row: dict[str, Any], epoch: int) -> None:
        """Per-task early stopping after validating ``epoch``."""
        assert self.stopper is not None
        metrics = {k[len("valid/"):]: v for k, v in row.items() if k.startswith("valid/")}
        for task in self.stopper.update(metrics, epoch):
            best = self.stopper.best[task][1]
            _log(ctx, f"task {task}: its head is frozen at epoch {best} (its own best) while "
                      "the other tasks go on")
        row["frozen"] = ",".join(sorted(self.stopper.frozen))
        state["task_stop"] = self.stopper.state()

    def _out_of_time(self, seconds: float) -> bool:
        return self.config.max_minutes > 0 and seconds > self.config.max_minutes * 60

    def _epoch(self, engine: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, order: list[np.ndarray],
               epoch: int) -> dict[str, float]:
        self.model.train()
        sums: dict[str, float] = {}
        shared = (self.model.shared_parameters()
                  if isinstance(self.weighting, GradNormWeighting) else None)
        with EpochProgress(epoch, len(order)) as progress:
            for step_users in order:
                batch = self.batcher.train_batch(step_users, self.augment)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
                    raw = engine(batch)
                losses = {k: v.float() for k, v in raw.items()}
                if self.stopper is not None:
                    losses = self.stopper.losses(losses)
                optimizer.zero_grad(set_to_none=True)
                total = self.weighting.combine(losses, shared)
                if self.config.conflict == "pcgrad":
                    self._pcgrad(engine, losses, total)
                else:
                    total.backward()
                dist_utils.all_reduce_mean(
                    [p.grad for p in self.weighting.parameters() if p.grad is not None],
                    self.ctx)
                if self.config.clip_norm > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
                optimizer.step()
                self.weighting.after_step()
                scheduler.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                progress.advance(float(total.detach()))
        return {k: v / max(len(order), 1) for k, v in sums.items()}


def _mean_over_ranks(losses: dict[str, float], ctx: dist_utils.DistContext) -> dict[str, float]:
    names = sorted(losses)
    values = torch.tensor([losses[n] for n in names], dtype=torch.float64)
    dist_utils.all_reduce_mean([values], ctx)
    return dict(zip(names, values.tolist(), strict=True))


def _optimizer(model: nn.Module, weighting: nn.Module,
               cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``model`` (decay on matrices only; a tuned text encoder at its own rate)
    and the weights of ``weighting`` (and of any other module given with it), undecayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    text: list[nn.Parameter] = []  # a tuned text encoder's (LoRA or full), at its own rate
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("text_tuner."):
            text.append(p)
            continue
        (no_decay if p.ndim < 2 or "norm" in name or "bias" in name else decay).append(p)
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": cfg.weight_decay},
                                    {"params": no_decay, "weight_decay": 0.0}]
    if text:
        tuner: Any = getattr(model, "text_tuner", None)
        groups.append({"params": text, "weight_decay": 0.0,
                       "lr": tuner.encoder.config.lr})
    extra = [p for p in weighting.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % at ``total``.

    >>> f = _schedule(10, 110)
    >>> f(0), f(10), round(f(110), 3)
    (0.1, 1.0, 0.1)
    """
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def _log(ctx: dist_utils.DistContext, message: str) -> None:
    if ctx.is_main:
        print(message, file=sys.stderr, flush=True)


class _Logger:
    """Per-epoch rows to ``history.csv`` and TensorBoard (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.path, self.enabled, self.writer = out_dir / "history.csv", enabled, None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rows = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, int | float):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
