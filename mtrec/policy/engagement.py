"""The engagement head: user-level long-term engagement on the multi-task model's user state.

``EngagementModel(recommender, head)`` reads a user at a cut through the recommender's
user tower (the history before the cut, and the gap from its last event to the cut) and
adds the pre-cut recency / frequency features (:func:`mtrec.policy.labels.user_features`);
the head gives, per user, a return logit for each horizon, the expected number of active
days and of purchases in the count horizon (squared error, each scaled by its training
variance: the metric is RMSE), and the log of a return hazard (an exponential
time-to-return model fitted with right-censoring).
Training is joint (:mod:`mtrec.policy.fit`): each step adds the recommender's own task
losses (next item, purchase) on a batch of training sequences to the engagement loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtrec.data.interactions import Interactions
from mtrec.models.batches import gap_bucket, input_grid
from mtrec.models.model import Batch, MultiTaskRecommender
from mtrec.policy.labels import CutExamples


@dataclass(frozen=True)
class EngagementHeadConfig:
    hidden: int = 64
    dropout: float = 0.1
    use_state: bool = True  # read the user tower's state beside the features
    counts_from_state: bool = True  # False: the count outputs read the features only
    train_state: bool = True  # False: the engagement loss does not train the user tower


#: The head's outputs, each with its own loss (and its own early stopping) and the key of
#: its prediction in :meth:`EngagementOutput.predictions`.
OUTPUTS = {"returned": "returned", "active_days": "active_days", "purchases": "purchases",
           "time_to_return": "risk"}


@dataclass
class EngagementOutput:
    """Per user: return logits ``[T, R]``, the expected counts and the log hazard ``[T]``;
    ``loss`` only when targets were given."""

    return_logits: torch.Tensor
    days: torch.Tensor  # expected active days in the count horizon
    purchases: torch.Tensor  # expected purchases in the count horizon
    log_hazard: torch.Tensor  # log rate of the exponential time to return (per day)
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None  # per output (keys: OUTPUTS)

    def predictions(self) -> dict[str, np.ndarray]:
        """What the metrics score: probabilities, expected counts, a return-risk score."""
        def arr(x: torch.Tensor) -> np.ndarray:
            return np.asarray(x.detach().float().numpy(), dtype=np.float64)

        return {"returned": arr(torch.sigmoid(self.return_logits)),
                "active_days": arr(self.days),
                "purchases": arr(self.purchases),
                "risk": arr(self.log_hazard)}


@dataclass(frozen=True)
class EngagementTargets:
    returned: torch.Tensor  # [T, R]
    active_days: torch.Tensor  # [T]
    purchases: torch.Tensor  # [T]
    time_to_return: torch.Tensor  # [T] days
    observed: torch.Tensor  # [T] bool

    @staticmethod
    def of(examples: CutExamples) -> EngagementTargets:
        t = torch.from_numpy
        return EngagementTargets(t(examples.returned), t(examples.active_days),
                                 t(examples.purchases), t(examples.time_to_return),
                                 t(examples.observed))


class EngagementHead(nn.Module):
    """A small tower over ``[user state, standardised log1p features]``."""

    mean: torch.Tensor
    std: torch.Tensor
    count_scale: torch.Tensor  # [2] training variance of active days and of purchases

    def __init__(self, config: EngagementHeadConfig, state_dim: int, n_features: int,
                 n_returns: int) -> None:
        super().__init__()
        self.config, self.n_returns = config, n_returns
        width = n_features + (state_dim if config.use_state else 0)
        split = config.use_state and not config.counts_from_state
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("count_scale", torch.ones(2))
        self.net = _tower(width, config, n_returns + (1 if split else 3))
        self.counts = _tower(n_features, config, 2) if split else None

    def fit_scaler(self, features: np.ndarray, examples: CutExamples) -> EngagementHead:
        """Feature standardisation and count-loss scales from the training examples."""
        x = torch.log1p(torch.from_numpy(features).clamp(min=0))
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp(min=1e-3))
        counts = np.stack([examples.active_days, examples.purchases])
        self.count_scale.copy_(torch.from_numpy(counts.var(1).clip(min=1e-3)))
        return self

    def forward(self, state: torch.Tensor | None, features: torch.Tensor,
                targets: EngagementTargets | None = None) -> EngagementOutput:
        """``state``: ``[T, dim]``, or None for a head that does not read it."""
        x = (torch.log1p(features.clamp(min=0)) - self.mean) / self.std
        out = self.net(x if state is None else torch.cat([state.float(), x], -1)).float()
        r = self.n_returns
        if self.counts is not None:  # [returns, hazard] and, from the features, the counts
            out = torch.cat([out[:, :r], self.counts(x).float(), out[:, r:]], -1)
        counts = F.softplus(out[:, r:r + 2])
        result = EngagementOutput(out[:, :r], counts[:, 0], counts[:, 1], out[:, r + 2])
        if targets is not None:
            result.losses = engagement_losses(result, targets, self.count_scale)
            result.loss = torch.stack(list(result.losses.values())).sum()
        return result


def _tower(width: int, config: EngagementHeadConfig, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                         nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                         nn.Linear(config.hidden, out))


def engagement_losses(out: EngagementOutput, y: EngagementTargets,
                      count_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per output (means over users): binary cross-entropy over the horizons, squared
    error of each count over its training variance, and the right-censored exponential
    negative log-likelihood of the time to return."""
    rate = out.log_hazard.clamp(-20, 20)
    return {
        "returned": F.binary_cross_entropy_with_logits(out.return_logits, y.returned),
        "active_days": F.mse_loss(out.days, y.active_days) / count_scale[0],
        "purchases": F.mse_loss(out.purchases, y.purchases) / count_scale[1],
        "time_to_return": (rate.exp() * y.time_to_return - y.observed.float() * rate).mean(),
    }


class EngagementModel(nn.Module):
    """The multi-task recommender and the engagement head on its user state."""

    def __init__(self, recommender: MultiTaskRecommender, head: EngagementHead) -> None:
        super().__init__()
        self.recommender, self.head = recommender, head

    def forward(self, data: Interactions, examples: CutExamples, features: np.ndarray,
                max_len: int) -> EngagementOutput:
        """Outputs and losses for ``examples`` (users at their cuts, with their labels) and
        their ``features``; the user tower runs only for a head that reads its state."""
        state = None
        if self.head.config.use_state:
            rec = self.recommender
            batch = cut_batch(data, examples.user, examples.cut, max_len)
            state = rec.encode(batch, rec.item_tables()).h
            if not self.head.config.train_state:  # the recommender's own tasks shape it
                state = state.detach()
        return self.head(state, torch.from_numpy(features), EngagementTargets.of(examples))


def cut_batch(data: Interactions, users: np.ndarray, cuts: np.ndarray, max_len: int) -> Batch:
    """One example per (user, cut): the state after the user's events before the cut (the
    last ``max_len - 1``), read at the cut's time (its gap from the last event)."""
    seqs = []
    for u, cut in zip(users.tolist(), cuts.tolist(), strict=True):
        rows = np.arange(data.offsets[u], data.offsets[u + 1])
        ts = data.ts[rows]
        before = rows[(ts >= 0) & (ts < cut)]
        seqs.append(before[max(0, len(before) - (max_len - 1)):])
    grid = input_grid(data, seqs)
    n = len(seqs)
    rows, cols = np.arange(n), np.array([len(s) for s in seqs], np.int64)
    t = torch.from_numpy
    return Batch(items=t(grid.items), behaviors=t(grid.behaviors), scenarios=t(grid.scenarios),
                 rows=t(rows), cols=t(cols), target=torch.zeros(n, dtype=torch.long),
                 target_scenario=t(np.maximum(grid.scenarios[rows, cols], 1)),
                 next_item=torch.zeros(n, dtype=torch.bool), gaps=t(grid.gaps),
                 target_gap=t(gap_bucket(cuts.astype(np.int64), grid.ts[rows, cols])))
