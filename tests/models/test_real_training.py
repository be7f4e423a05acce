"""One short training run on a real dataset (ML-100k), from the CLI's entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrec.run_config import load_run_config
from mtrec.train.run import train_run

pytestmark = pytest.mark.real_data


def test_ml100k_two_epochs_beat_random(real_root: Path, tmp_path: Path) -> None:
    config = load_run_config(None, **{
        "data.dataset": "ml-100k", "data.protocol": "temporal",
        "model.tasks": ["next_item", "rating", "like"], "model.item.use_text": False,
        "train.epochs": 2, "train.batch_size": 64, "model.user.max_len": 50})
    result = train_run(config, tmp_path / "b", root=real_root, store_dir=tmp_path)
    test = result["test"]
    # A random ranking of 1,682 movies has NDCG@10 about 0.003 and recall@10 about 0.006;
    # two epochs reach about 0.025 and 0.05.
    assert test["next_item/ndcg@10"] > 0.012 and test["next_item/recall@10"] > 0.024
    assert 0.0 <= test["like/auc"] <= 1.0  # two epochs do not reliably learn likes here
    assert test["rating/rmse"] < 1.3  # predicting 1..5 at random is about 1.9
    assert result["dataset"] == "ml-100k" and result["epochs_run"] == 2
