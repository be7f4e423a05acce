"""A training budget from the data, not a fixed one: the history window, the epoch cap and
the patience that ``0`` ("auto", the default) stands for in the run config.

A fixed budget fits one dataset.  Beauty (22,363 users, 8.9 interactions each) takes 175
optimizer steps an epoch at batch 128; MovieLens-100K (943 users, 106 each) takes 8: its 20
epochs were 160 steps, fewer than the warm-up, and a 50-item window cut half of every
history.  So:

* ``model.user.max_len``: the 90th percentile of the users' training sequence lengths, up to
  a multiple of 10, within [50, 200];
* ``train.epochs``: enough epochs for ``TARGET_STEPS`` optimizer steps, within [20, 500];
* ``train.patience``: as many epochs as ``PATIENCE_STEPS`` steps take (a validation score
  rises slowly when each epoch is a few steps), within [3, 50].

The resolved values are what the bundle saves, and the summary says where they came from.

>>> b = plan_budget(np.full(1000, 9), 128, epochs=0, patience=0, max_len=0)
>>> b.max_len, b.epochs, b.patience, b.steps_per_epoch
(50, 438, 50, 8)
>>> plan_budget(np.full(22363, 9), 128, epochs=0, patience=0, max_len=0).epochs
20
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mtrec.run_config import RunConfig, TrainConfig

TARGET_STEPS = 3500  # the Beauty default: 20 epochs of 175 steps
# 4 Beauty epochs: with 3, a run whose score still crept up (by less than min_delta an
# epoch) stopped at epoch 13 of a curve that peaked at 15 in another seed, and the refit
# trains the chosen count
PATIENCE_STEPS = 700
MIN_EPOCHS, MAX_EPOCHS = 20, 500
MAX_PATIENCE = 50  # epochs: a tiny dataset (one step an epoch) plateaus well before
MIN_LEN, MAX_LEN = 50, 200


@dataclass(frozen=True)
class Budget:
    max_len: int
    epochs: int
    patience: int
    steps_per_epoch: int
    derived: tuple[str, ...]  # which of max_len, epochs, patience came from the data

    def describe(self) -> str:
        """One line for the log: the budget and what it was derived from."""
        parts = [f"history window {self.max_len}", f"at most {self.epochs} epochs",
                 f"patience {self.patience}"]
        source = (f" ({', '.join(self.derived)} from the data: {self.steps_per_epoch} steps an "
                  f"epoch)") if self.derived else ""
        return "budget: " + ", ".join(parts) + source


def plan_budget(lengths: np.ndarray, batch_size: int, epochs: int, patience: int,
                max_len: int) -> Budget:
    """The budget for users with training sequences of ``lengths``; a value given as 0 is
    derived (see the module's doc), any other is kept."""
    steps = max(1, math.ceil(len(lengths) / batch_size))
    derived = []
    if max_len == 0:
        p90 = float(np.percentile(lengths, 90)) if len(lengths) else 0.0
        max_len = int(min(MAX_LEN, max(MIN_LEN, 10 * math.ceil(p90 / 10))))
        derived.append("max_len")
    if epochs == 0:
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps)))
        derived.append("epochs")
    if patience == 0:
        patience = min(MAX_PATIENCE, max(3, math.ceil(PATIENCE_STEPS / steps)))
        derived.append("patience")
    return Budget(max_len, epochs, patience, steps, tuple(derived))


def resolve_budget(config: RunConfig, lengths: np.ndarray) -> tuple[RunConfig, Budget]:
    """``config`` with its auto (0) history window, epochs and patience made concrete for
    training sequences of ``lengths`` (one per training user)."""
    user, train = config.model.user, config.train
    budget = plan_budget(lengths, train.batch_size, train.epochs, train.patience,
                         user.max_len)
    model = replace(config.model, user=replace(user, max_len=budget.max_len))
    train = replace(train, epochs=budget.epochs, patience=budget.patience)
    return replace(config, model=model, train=train), budget


def still_improving(best_epoch: int, epochs_run: int, epochs: int, patience: int,
                    stopped_early: bool) -> bool:
    """The run ended at its epoch cap with its best epoch within its patience of the cap:
    its own early stopping had not ended it, so more epochs would likely have helped.
    (Regression: "within a tenth of the cap" missed an Office run whose best was 9 epochs
    before its 90-epoch cap with a patience of 18, its curve still rising.)

    >>> still_improving(19, 20, 20, 3, False), still_improving(81, 90, 90, 18, False)
    (True, True)
    >>> still_improving(10, 13, 20, 3, True), still_improving(15, 20, 20, 3, False)
    (False, False)
    """
    return not stopped_early and epochs_run >= epochs and epochs_run - best_epoch < patience


def time_capped(best_epoch: int, epochs_run: int, seconds: float, train: TrainConfig) -> bool:
    """The wall-time cap (``max_minutes``) ended the run: past the cap, before the epoch cap
    and before patience ran out.

    >>> cfg = TrainConfig(epochs=20, patience=3, max_minutes=1.0)
    >>> time_capped(9, 10, 61.0, cfg), time_capped(7, 10, 61.0, cfg)  # patience ended it
    (True, False)
    """
    return (0 < train.max_minutes * 60 < seconds and epochs_run < train.epochs
            and epochs_run - best_epoch < train.patience)
