"""The training budget derived from the data (mtrec/train/budget.py).

Regression: the default was a fixed 20 epochs, patience 3 and a 50-item window.  On
MovieLens-100K (943 users, 8 steps an epoch at batch 128) that was 160 optimizer steps, fewer
than the warm-up, and the window cut half of every history: test NDCG@10 0.069 where the
derived budget reaches far more (README, "Training budget")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtrec.run_config import load_run_config
from mtrec.train.budget import (
    MAX_EPOCHS,
    MAX_LEN,
    MAX_PATIENCE,
    MIN_EPOCHS,
    MIN_LEN,
    TARGET_STEPS,
    plan_budget,
    still_improving,
)
from mtrec.train.run import train_run
from tests.planted import planted, tiny, write_store


def test_values_given_are_kept() -> None:
    budget = plan_budget(np.full(50, 300), 16, epochs=7, patience=2, max_len=12)
    assert (budget.max_len, budget.epochs, budget.patience, budget.derived) == (12, 7, 2, ())


@pytest.mark.parametrize(("users", "epochs", "patience"), [
    (943, 438, MAX_PATIENCE),  # MovieLens-100K: 8 steps an epoch (700 steps: 88 epochs)
    (4_000, 110, 22),  # 32 steps an epoch
    (22_363, MIN_EPOCHS, 4),  # Amazon Beauty: 175 steps
    (5_000_000, MIN_EPOCHS, 3),  # a big catalog: never fewer than 20 epochs
    (10, MAX_EPOCHS, MAX_PATIENCE),  # one step an epoch: both capped
])
def test_epochs_and_patience_follow_the_steps_an_epoch(users: int, epochs: int,
                                                        patience: int) -> None:
    budget = plan_budget(np.full(users, 5), 128, epochs=0, patience=0, max_len=0)
    assert (budget.epochs, budget.patience) == (epochs, patience)
    if MIN_EPOCHS < epochs < MAX_EPOCHS:  # about the target number of optimizer steps
        assert abs(budget.epochs * budget.steps_per_epoch - TARGET_STEPS) < budget.steps_per_epoch


@pytest.mark.parametrize(("lengths", "window"), [
    ([5] * 100, MIN_LEN),  # short histories: the old 50
    ([55] * 100, 60),  # up to a multiple of ten
    ([10] * 85 + [1000] * 15, MAX_LEN),  # the 90th percentile, at most 200
    ([10] * 95 + [1000] * 5, MIN_LEN),  # a few very long users do not set it
])
def test_the_window_covers_nine_users_in_ten(lengths: list[int], window: int) -> None:
    assert plan_budget(np.array(lengths), 128, 1, 1, max_len=0).max_len == window


def test_still_improving_only_at_the_cap() -> None:
    assert still_improving(best_epoch=20, epochs_run=20, epochs=20, patience=3,
                           stopped_early=False)
    assert not still_improving(best_epoch=10, epochs_run=20, epochs=20, patience=3,
                               stopped_early=False)  # flat for 10 epochs: converged
    assert not still_improving(best_epoch=5, epochs_run=8, epochs=20, patience=3,
                               stopped_early=True)


def test_a_run_saves_the_derived_window_and_says_when_the_cap_cut_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = write_store(planted(n_users=60, n_items=30), tmp_path)
    config = load_run_config(None, **tiny(store, **{"model.user.max_len": 0, "train.epochs": 2,
                                                    "train.min_delta": 0.0,
                                                    "train.patience": 1}))
    summary = train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    saved = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert summary["budget"]["from_data"] == ["max_len"]
    assert saved["run"]["model"]["user"]["max_len"] == summary["budget"]["max_len"] == MIN_LEN
    err = capsys.readouterr().err
    assert "budget: history window 50, at most 2 epochs" in err
    if summary["still_improving"]:  # the planted signal is learnt epoch after epoch
        assert "stopped at the 2-epoch cap while still improving" in err
    assert summary["still_improving"] == (summary["best_epoch"] == 2)
