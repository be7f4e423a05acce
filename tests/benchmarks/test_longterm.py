"""The long-term engagement benchmark's own logic (no training, no peer environment)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from benchmarks.longterm import _export, _summary, render
from mtrec.policy.labels import EngagementConfig
from mtrec.policy.run import engagement_split
from tests.policy.logs import engagement_logs


def test_the_peers_never_receive_test_labels(tmp_path: Path) -> None:
    """What the peer runner reads: features of every part, labels of training and
    validation only."""
    config = EngagementConfig(return_days=(3, 7), train_cuts=3, cut_step_days=4)
    split = engagement_split(engagement_logs(n_users=60), config)
    data = dict(np.load(_export(split, config, tmp_path)))
    assert {k for k in data if k.startswith("test_")} == {"test_x"}
    assert np.array_equal(data["test_x"], split.test[1])
    assert np.array_equal(data["train_returned"], split.train[0].returned)
    assert int(data["count_days"]) == 7


def test_a_non_finite_metric_is_left_out_and_named() -> None:
    """Bug: one NaN metric (BG/NBD's undefined expected count on Taobao) crashed the
    summary after every system had trained."""
    rows = [{"seed": None, "train_s": 1.0,
             "metrics": {"return_1d/auc": 0.6, "active_days/rmse": math.nan}}]
    summary = _summary("BG/NBD", rows)
    assert summary["mean"] == {"return_1d/auc": 0.6}
    assert summary["not_finite"] == ["active_days/rmse"]
    table = render([{"dataset": "x", "protocol": {"return_days": [1]},
                     "split": {"test_cut": 0, "examples": {"test": 1, "train": 1},
                               "test_return_rate": [0.5]},
                     "systems": [summary], "pending": ["mtrec joint"]}])
    assert "| BG/NBD (deterministic) | 0.6000 ± 0.0000 |" in table
    assert "not finite" in table and "Not finished yet: mtrec joint." in table
