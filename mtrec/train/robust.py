"""Defences against poisoned training data, chosen by ``[train.robust]`` (all off by default).

- :func:`adversarial_losses`: adversarial training on the item vectors (APR, He et al. 2018).
- :class:`SequenceAugmenter`: crop, mask and reorder of training sequences that never let an
  example see its own future.
- :func:`suspicious_users`: a fake-user filter over item cohorts.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.interactions import Interactions
from mtrec.data.split import TRAIN
from mtrec.models.model import Batch, MultiTaskRecommender
from mtrec.run_config import RobustConfig
from mtrec.train.loss import task_losses

Targets = tuple[np.ndarray, np.ndarray]
EXTREME = 2.5  # robust deviations from the median user that make a profile extreme
MIN_GAP = 0.5  # popularity gaps under a factor e**0.5 (log units) never count as anomalous


# ---------------------------------------------------------------- adversarial training
def perturbation(loss: torch.Tensor, vectors: torch.Tensor, eps: float) -> torch.Tensor:
    """``eps`` x the gradient of ``loss`` w.r.t. ``vectors`` ``[N, d]``, each row scaled
    to norm ``eps`` (rows without gradient stay zero); the graph is kept."""
    (grad,) = torch.autograd.grad(loss, vectors, retain_graph=True)
    return (eps * F.normalize(grad.detach().float(), dim=-1)).to(vectors.dtype)


def adversarial_losses(model: MultiTaskRecommender, batch: Batch, eps: float,
                       weight: float) -> dict[str, torch.Tensor]:
    """Per task: the clean loss + ``weight`` x the loss with every item vector moved by
    :func:`perturbation` of the summed clean loss (inputs and scored items move together)."""
    text = None
    if model.text_tuner is not None and model.training:
        text = model.text_tuner.step_rows(model.item_tower.text_vectors, batch.items,
                                          batch.target)
    tables = model.item_tables(text)
    clean = task_losses(model, model(batch, tables), batch)
    delta = perturbation(sum(clean.values()), tables.vectors, eps)  # type: ignore[arg-type]
    raw_text = model.item_tower.text_vectors if text is None else text
    moved = model.tables_for(tables.vectors + delta, raw_text)
    adv = task_losses(model, model(batch, moved), batch)
    return {name: clean[name] + weight * adv[name] for name in clean}


# ---------------------------------------------------------------- sequence augmentation
class SequenceAugmenter:
    """Augments one training sequence into (inputs, (targets, cols)) for
    :meth:`mtrec.models.batches.SequenceBatcher.train_batch`.

    Without augmentation input ``c`` is ``seq[c]`` and target ``seq[t]`` is read at column
    ``t``.  Here: crop keeps the last ``crop_keep`` share (the last target always stays);
    a masked input is removed and each target is read after the inputs before it; a
    reordered window of inputs drops the targets read inside it.  Every kept target
    ``seq[t]`` is read at a column whose inputs all come from ``seq[:t]``.
    """

    def __init__(self, config: RobustConfig, seed: int | tuple[int, ...] = 0) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | tuple[int, ...]) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, seq: np.ndarray) -> tuple[np.ndarray, Targets]:
        cfg, rng = self.config, self.rng
        if len(seq) > 1 and rng.random() < cfg.crop_prob:
            seq = seq[len(seq) - max(1, math.ceil(cfg.crop_keep * len(seq))):]
        inputs = np.arange(len(seq) - 1)  # positions in seq
        if cfg.mask_prob > 0:
            inputs = inputs[rng.random(len(inputs)) >= cfg.mask_prob]
        cols = np.searchsorted(inputs, np.arange(len(seq)))  # inputs before each target
        keep = np.ones(len(seq), bool)
        if len(inputs) > 1 and rng.random() < cfg.reorder_prob:
            width = min(len(inputs), max(2, round(cfg.reorder_share * len(inputs))))
            start = int(rng.integers(0, len(inputs) - width + 1))
            inputs = inputs.copy()
            inputs[start:start + width] = rng.permutation(inputs[start:start + width])
            keep = ~((cols > start) & (cols < start + width))
        return seq[inputs], (seq[keep], cols[keep])


# ---------------------------------------------------------------- fake-user filter
def suspicious_users(data: Interactions, config: RobustConfig) -> np.ndarray:
    """Per user code, whether the ``cohort`` filter flags the user (training part only).

    An item's *cohort* is its training users (when at least ``filter_min_users``); for each
    member, ``other`` is the mean log popularity of the member's other training items.
    Shilling profiles that pair a target with random or with popular filler items give the
    target a cohort unlike any natural item's, flagged by two rules:

    1. the cohort's mean ``other`` is more than ``filter_z`` robust deviations (and at
       least ``MIN_GAP``) off a line fitted, over all cohorts, to log cohort size (a popular
       item's users also like popular items); its members on that side of the median
       ``other`` are flagged;
    2. at least ``filter_share`` of the cohort are individually extreme (``other`` more
       than ``EXTREME`` robust deviations, and ``MIN_GAP``, from the median user's mean log
       popularity); those members are flagged.

    On data with flat popularity (no gap reaches ``MIN_GAP``) it flags no one.
    """
    n_users = len(data.offsets) - 1
    flagged = np.zeros(n_users, bool)
    if config.user_filter == "none":
        return flagged
    train = data.part == TRAIN
    user, item = data.user[train], data.item[train]
    n_items = int(item.max(initial=0)) + 1
    log_pop = np.log1p(np.bincount(item, minlength=n_items))
    length = np.bincount(user, minlength=n_users)
    ok = length[user] >= 2
    user, item = user[ok], item[ok]
    other = ((np.bincount(user, weights=log_pop[item], minlength=n_users)[user] - log_pop[item])
             / (length[user] - 1))
    size = np.bincount(item, minlength=n_items)
    cohort = size >= config.filter_min_users
    if cohort.sum() < 3:
        return flagged
    m = np.bincount(item, weights=other, minlength=n_items) / np.maximum(size, 1)
    z, residual = _size_residual_z(m, size, cohort)
    median = float(np.median(other))
    per_user = np.bincount(user, weights=log_pop[item], minlength=n_users)[length >= 2] / (
        length[length >= 2])
    spread = EXTREME * 1.4826 * float(np.median(np.abs(per_user - np.median(per_user))))
    extreme = np.abs(other - np.median(per_user)) > max(spread, MIN_GAP)
    share = np.bincount(item, weights=extreme, minlength=n_items) / np.maximum(size, 1)
    for side in (-1.0, 1.0):
        items = np.flatnonzero(cohort & (side * z > config.filter_z)
                               & (side * residual >= MIN_GAP))
        flagged[user[np.isin(item, items) & (side * (other - median) > 0)]] = True
    items = np.flatnonzero(cohort & (share >= config.filter_share))
    flagged[user[np.isin(item, items) & extreme]] = True
    return flagged


def _size_residual_z(m: np.ndarray, size: np.ndarray,
                     cohort: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust z of each cohort's ``m`` around a least-squares line in log cohort size
    (residuals centred on their median, scaled by 1.4826 x their median absolute
    deviation), and the centred residuals; 0 outside ``cohort``."""
    x, y = np.log(size[cohort]), m[cohort]
    design = np.stack([np.ones_like(x), x], 1)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    residual = y - design @ coef
    centre = float(np.median(residual))
    scale = 1.4826 * float(np.median(np.abs(residual - centre)))
    z, centred = np.zeros(len(m)), np.zeros(len(m))
    centred[cohort] = residual - centre
    z[cohort] = centred[cohort] / max(scale, 1e-12)
    return z, centred
