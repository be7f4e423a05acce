"""The run config: one frozen dataclass per component, read from TOML/JSON.

It lives outside the trainer so that everything reading a bundle (evaluation, the
``Recommender``, the service) can parse the config saved in it without importing training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrec.config import from_dict, read_config_file
from mtrec.models.model import ModelConfig
from mtrec.rank.config import RankConfig

KINDS = ("fixed", "uncertainty", "gradnorm", "dwa")


@dataclass(frozen=True)
class WeightingConfig:
    """How task losses are combined.

    ``weights`` lists ``(task, weight)`` pairs; tasks not listed weigh 1.0. They are the fixed
    weights for ``"fixed"`` and the initial weights for ``"gradnorm"``; ``"uncertainty"`` starts
    from log-variances of 0 and ``"dwa"`` from equal weights, so both ignore them.
    """

    kind: str = "fixed"
    weights: tuple[tuple[str, float], ...] = ()
    gradnorm_alpha: float = 1.5
    dwa_temperature: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown weighting kind {self.kind!r}; expected one of {KINDS}")
        names = [name for name, _ in self.weights]
        if len(set(names)) != len(names):
            raise ValueError(f"weights name a task more than once: {names}")
        for name, weight in self.weights:
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of task {name!r} must be finite and >= 0, got {weight}")
        if self.gradnorm_alpha < 0:
            raise ValueError(f"gradnorm_alpha must be >= 0, got {self.gradnorm_alpha}")
        if self.dwa_temperature <= 0:
            raise ValueError(f"dwa_temperature must be > 0, got {self.dwa_temperature}")


FILTERS = ("none", "cohort")


@dataclass(frozen=True)
class RobustConfig:
    """Defences against poisoned training data, all off by default (README "Robustness").

    - Adversarial training (APR, He et al. 2018): after the clean loss, the item-tower
      vectors (what the user tower reads as inputs and the next-item task scores against)
      are moved by ``adversarial_eps`` x their loss gradient, normalised per item, and
      ``adversarial_weight`` x the loss at the moved vectors is added.  0 = off.
    - Sequence augmentation of training sequences: with probability ``crop_prob`` only the
      last ``crop_keep`` share is kept; each input is masked (dropped from the input, its
      target kept) with probability ``mask_prob``; with probability ``reorder_prob`` a
      window of ``reorder_share`` of the inputs is shuffled (targets that would see a later
      item are dropped, so no example sees its future).
    - ``user_filter = "cohort"``: users flagged by :func:`mtrec.train.robust.suspicious_users`
      (members of an item's cohort of at least ``filter_min_users`` users whose other
      items are, as a group, anomalously popular or unpopular: ``filter_z`` robust
      deviations, or ``filter_share`` of members individually extreme) are left out of
      training (they stay as histories in evaluation).
    """

    adversarial_eps: float = 0.0
    adversarial_weight: float = 0.0
    crop_prob: float = 0.0
    crop_keep: float = 0.6
    mask_prob: float = 0.0
    reorder_prob: float = 0.0
    reorder_share: float = 0.3
    user_filter: str = "none"
    filter_min_users: int = 20
    filter_z: float = 3.5
    filter_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("crop_prob", "mask_prob", "reorder_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"train.robust.{name} must be in [0, 1), got "
                                 f"{getattr(self, name)}")
        for name in ("crop_keep", "reorder_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"train.robust.{name} must be in (0, 1], got "
                                 f"{getattr(self, name)}")
        if self.adversarial_eps < 0 or self.adversarial_weight < 0:
            raise ValueError("train.robust.adversarial_eps and adversarial_weight must be >= 0")
        if self.user_filter not in FILTERS:
            raise ValueError(f"train.robust.user_filter must be one of {FILTERS}, got "
                             f"{self.user_filter!r}")
        if self.filter_min_users < 2 or self.filter_z <= 0 or not 0 < self.filter_share <= 1:
            raise ValueError("train.robust.filter_min_users must be >= 2, filter_z > 0 and "
                             "filter_share in (0, 1]")

    @property
    def adversarial(self) -> bool:
        return self.adversarial_eps > 0 and self.adversarial_weight > 0

    @property
    def augments(self) -> bool:
        return self.crop_prob > 0 or self.mask_prob > 0 or self.reorder_prob > 0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 0  # 0: from the data (mtrec/train/budget.py), else the most epochs
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    clip_norm: float = 5.0
    patience: int = 0  # epochs without a validation gain; 0: from the data (budget.py)
    # "auto": the task's main metric (next_item/ndcg@10, rating/rmse, <binary>/auc,
    # engagement/log_count_rmse) for one task; "mean" over tasks for several.
    metric: str = "auto"
    min_delta: float = 0.0002  # a smaller gain in the selection metric is noise
    seed: int = 0
    # After selecting the epoch count on valid, retrain on train + valid for it: the model
    # then learns each user's most recent interactions (Beauty: test NDCG@10 .058 -> .065).
    refit: bool = True
    bf16: bool = True
    eval_batch_size: int = 512
    max_minutes: float = 0.0  # 0 = no limit
    init: str = ""  # a bundle (e.g. from `mtrec pretrain`) to start from; "" = from scratch
    # remedies for negative transfer (mtrec/train/remedies.py): "pcgrad" projects conflicting
    # task gradients; task_patience N freezes a task's head N epochs after its own best
    conflict: str = "none"
    task_patience: int = 0  # 0: off
    # On data with no order within a user (no timestamps, no source order: JData, the Amazon
    # cross-domain pairs), draw a fresh order of each user's training interactions every
    # epoch, so the causal model learns from sets rather than memorising one arbitrary order
    # (ordered data is never reordered).
    shuffle_unordered: bool = False
    robust: RobustConfig = field(default_factory=RobustConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 1, or 0 for a value from the "
                                 f"data, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1 or self.warmup_steps < 0:
            raise ValueError("train.eval_batch_size must be >= 1 and train.warmup_steps >= 0")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if self.max_minutes < 0:
            raise ValueError(f"train.max_minutes must be >= 0 (0: no limit), got "
                             f"{self.max_minutes}")
        if self.conflict not in ("none", "pcgrad"):
            raise ValueError(f"train.conflict must be 'none' or 'pcgrad', got {self.conflict!r}")
        if self.task_patience < 0:
            raise ValueError(f"train.task_patience must be >= 0 (0: off), got "
                             f"{self.task_patience}")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "amazon-beauty"
    protocol: str = "loo"
    kcore: int = 0
    scenarios: tuple[str, ...] = ()  # train on these scenarios only (empty = all)
    # a multi-source dataset ("a+b"): are item ids one namespace ("shared": an id in two
    # parts is one item) or one per part ("per-source")?  See mtrec.data.multi_source.
    item_ids: str = "shared"

    def __post_init__(self) -> None:
        if self.item_ids not in ("shared", "per-source"):
            raise ValueError(f"data.item_ids must be 'shared' or 'per-source', got "
                             f"{self.item_ids!r}")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rank: RankConfig = field(default_factory=RankConfig)


def load_run_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """The default config, updated by a TOML/JSON file, then by ``overrides`` (dotted keys)."""
    data: dict[str, Any] = read_config_file(path) if path else {}
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(RunConfig, data)
