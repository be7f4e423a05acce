"""The training loop: early stopping, best-epoch bundle, resume, determinism, logs, weighting."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtrec.run_config import KINDS, load_run_config
from mtrec.train.checkpoint import load_weights
from mtrec.train.evaluate import evaluate_bundle
from mtrec.train.run import train_run
from tests.planted import fast_torch, planted, tiny, write_store

pytestmark = pytest.mark.usefixtures("fast")


@pytest.fixture(scope="module")
def fast() -> Iterator[None]:
    """One torch thread (the machine is shared) and no fsync in checkpoints."""
    with fast_torch():
        yield


TASKS = ["next_item", "rating"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(planted(n_users=120, n_items=50), tmp_path_factory.mktemp("store"))


RMSE = {"train.metric": "rating/rmse"}


def _train(store: Path, out: Path, extra: dict[str, Any], resume: bool = False
           ) -> dict[str, Any]:
    # These tests check the selection itself, so the bundle is the selected model (no refit).
    overrides = tiny(store, **{"model.tasks": TASKS, "train.epochs": 5, "train.batch_size": 16,
                               "train.refit": False, **extra})
    return train_run(load_run_config(None, **overrides), out, store_dir=out.parent / "home",
                     resume=resume)


def _history(out: Path) -> list[dict[str, str]]:
    with (out / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def straight(store: Path, tmp_path_factory: pytest.TempPathFactory, fast: None
             ) -> tuple[dict[str, Any], Path]:
    """Five epochs in one go, selecting on a lower-is-better metric."""
    out = tmp_path_factory.mktemp("straight") / "bundle"
    return _train(store, out, RMSE), out


def test_logs_every_epoch(straight: tuple[dict[str, Any], Path]) -> None:
    result, out = straight
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    for column in ("loss/next_item", "loss/rating", "weight/next_item", "weight/rating",
                   "valid/next_item/ndcg@10", "valid/rating/rmse", "lr", "seconds"):
        assert all(math.isfinite(float(r[column])) for r in rows), column
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert result["epochs_run"] == 5 and not result["stopped_early"]


def test_best_epoch_minimises_a_lower_is_better_metric(
        straight: tuple[dict[str, Any], Path]) -> None:
    result, out = straight
    rmse = [float(r["valid/rating/rmse"]) for r in _history(out)]
    assert result["selection_metric"] == "rating/rmse"
    assert result["best_epoch"] == int(np.argmin(rmse)) + 1
    assert result["best_valid"] == pytest.approx(min(rmse))
    # The bundle holds that epoch's weights: re-evaluating it gives the logged value.
    assert result["valid"]["rating/rmse"] == pytest.approx(min(rmse), rel=1e-5)
    again = evaluate_bundle(out, "valid", store_dir=out.parent / "home")
    assert again["metrics"]["rating/rmse"] == pytest.approx(min(rmse), rel=1e-5)


def test_eval_reproduces_a_bf16_runs_figures(store: Path, tmp_path: Path) -> None:
    """Regression: ``mtrec eval`` scored in float32 a model that training evaluated under
    bfloat16 autocast, so its figures differed from the ones the run reported."""
    out = tmp_path / "bundle"
    result = _train(store, out, {**RMSE, "train.epochs": 2, "train.bf16": True})
    again = evaluate_bundle(out, "valid", store_dir=tmp_path / "home")
    assert again["metrics"] == pytest.approx(result["valid"], rel=1e-6)


def test_same_seed_same_run(store: Path, straight: tuple[dict[str, Any], Path],
                            tmp_path: Path) -> None:
    first, first_out = straight
    second = _train(store, tmp_path / "bundle", RMSE)
    assert second["valid"] == first["valid"]
    assert second["test"] == first["test"]
    assert _drop_time(_history(tmp_path / "bundle")) == _drop_time(_history(first_out))
    other = _train(store, tmp_path / "other", {**RMSE, "train.seed": 1})
    assert other["valid"] != first["valid"]  # the seed is what makes runs repeat


def _drop_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_resume_continues_after_the_last_epoch(
        store: Path, straight: tuple[dict[str, Any], Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    _train(store, out, {**RMSE, "train.epochs": 3})
    first_rows = _history(out)
    assert [int(r["epoch"]) for r in first_rows] == [1, 2, 3]
    capsys.readouterr()
    resumed = _train(store, out, RMSE, resume=True)
    log = capsys.readouterr().err
    assert "after epoch 3" in log
    assert "epoch 4:" in log and "epoch 5:" in log and "epoch 1:" not in log
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert _drop_time(rows[:3]) == _drop_time(first_rows)  # the first three are kept as is
    assert resumed["epochs_run"] == 5
    # Same model and data; the first three epochs ran under a 3-epoch learning-rate decay,
    # so the result is close to, not equal to, five epochs straight.
    straight_result, _ = straight
    for key in ("rating/rmse", "next_item/ndcg@10"):
        assert resumed["valid"][key] == pytest.approx(straight_result["valid"][key], abs=0.1)


def test_resume_after_an_interruption_matches_a_straight_run(
        store: Path, straight: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    """Stopped after epoch 1 (out of time), then resumed: the same as never stopping."""
    out = tmp_path / "bundle"
    stopped = _train(store, out, {**RMSE, "train.max_minutes": 1e-9})
    assert stopped["epochs_run"] == 1 and stopped["stopped_early"]
    resumed = _train(store, out, RMSE, resume=True)
    straight_result, straight_out = straight
    assert resumed["valid"] == pytest.approx(straight_result["valid"], rel=1e-4, abs=1e-6)
    assert _drop_time(_history(out)) == _drop_time(_history(straight_out))


def test_early_stopping_keeps_the_best_epoch(store: Path, tmp_path: Path) -> None:
    """With a huge ``min_delta`` nothing after epoch 1 counts as better."""
    out = tmp_path / "bundle"
    result = _train(store, out, {"train.epochs": 10, "train.patience": 2,
                                 "train.min_delta": 10.0})
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # 1 + patience
    assert result["stopped_early"] and result["epochs_run"] == 3
    assert result["best_epoch"] == 1
    first = float(rows[0]["valid/next_item/ndcg@10"])
    # several tasks: selection on the mean share of each task's best so far, 1 at epoch 1
    # (every task's best); the reported best is re-scored against the later bests, <= 1
    assert result["selection_metric"] == "mean"
    assert float(rows[0]["valid/mean"]) == 1.0 >= result["best_valid"] > 0
    assert result["valid"]["next_item/ndcg@10"] == pytest.approx(first, rel=1e-5)
    again = evaluate_bundle(out, "valid", store_dir=tmp_path / "home")
    assert again["metrics"]["next_item/ndcg@10"] == pytest.approx(first, rel=1e-5)
    bundle = load_weights(out / "model.safetensors")
    best = load_weights(out / "checkpoint" / "best" / "model.safetensors")
    last = load_weights(out / "checkpoint" / "last" / "model.safetensors")
    key = "user_tower.position.weight"
    assert np.array_equal(bundle[key].numpy(), best[key].numpy())
    assert not np.array_equal(bundle[key].numpy(), last[f"model.{key}"].numpy())
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best_epoch"] == 1 and saved["stopped_early"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_every_weighting_trains(store: Path, tmp_path: Path, kind: str) -> None:
    extra: dict[str, Any] = {"weighting.kind": kind, "train.epochs": 2,
                             "model.tasks": ["next_item", "click"]}
    if kind in ("fixed", "gradnorm"):
        extra["weighting.weights"] = [["click", 0.5]]
    result = _train(store, tmp_path / "bundle", extra)
    rows = _history(tmp_path / "bundle")
    assert len(rows) == 2
    for row in rows:
        for column, value in row.items():
            assert math.isfinite(float(value)), (column, value)
    weights = [[float(r[f"weight/{t}"]) for t in ("next_item", "click")] for r in rows]
    assert all(w > 0 for ws in weights for w in ws)
    if kind == "fixed":
        assert weights == [[1.0, 0.5], [1.0, 0.5]]
    elif kind in ("gradnorm", "dwa"):  # both keep the weights summing to the task count
        assert sum(weights[-1]) == pytest.approx(2.0, rel=1e-5)
        assert weights[-1] != [1.0, 1.0]
    else:  # uncertainty learns log-variances from 0
        assert weights[-1] != [1.0, 1.0]
    assert math.isfinite(result["test"]["click/auc"])


def test_refit_retrains_on_train_and_valid_for_the_chosen_epochs(tmp_path: Path) -> None:
    """``train.refit``: the selected epoch count is retrained on train + valid; the valid
    metrics reported are the selected model's, and the refit history has exactly that many
    epochs."""
    store = write_store(planted(n_users=60, n_items=30), tmp_path)
    overrides = tiny(store, **{"train.epochs": 3})  # refit is the default
    assert load_run_config(None, **overrides).train.refit
    result = train_run(load_run_config(None, **overrides), tmp_path / "b", store_dir=tmp_path)
    with (tmp_path / "b" / "refit" / "history.csv").open() as f:
        refit_epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert refit_epochs == list(range(1, result["best_epoch"] + 1))
    assert result["refit"]["epochs"] == result["best_epoch"] and result["refit"]["seconds"] > 0
    assert result["valid"]["next_item/ndcg@10"] == pytest.approx(result["best_valid"])
    assert "next_item/ndcg@10" in result["test"]
    # the bundle is the refit model, not the selected checkpoint
    key = "user_tower.position.weight"
    bundle = load_weights(tmp_path / "b" / "model.safetensors")[key]
    best = load_weights(tmp_path / "b" / "checkpoint" / "best" / "model.safetensors")[key]
    assert not np.array_equal(bundle.numpy(), best.numpy())
    # and its valid figures are flagged as not held out
    again = evaluate_bundle(tmp_path / "b", "valid", store_dir=tmp_path)
    assert "not held out" in again["note"]
    assert "note" not in evaluate_bundle(tmp_path / "b", "test", store_dir=tmp_path)
