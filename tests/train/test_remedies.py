"""Remedies for negative transfer: PCGrad against a brute-force projection, per-task early
stopping on a scripted metric sequence, and both inside a real training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtrec.data.split import TEST
from mtrec.models.model import build_model
from mtrec.run_config import TrainConfig, load_run_config
from mtrec.train.remedies import TaskStopper, pcgrad
from mtrec.train.run import train_run
from tests.planted import fast_torch, planted, random_ndcg_at_10, tiny, write_store


def _reference(grads: list[np.ndarray], order: list[list[int]]) -> np.ndarray:
    """PCGrad written out for 2-D arrays: each task's gradient projected, in ``order[i]``,
    off every other task's original gradient it conflicts with; then the sum."""
    out = []
    for i, g in enumerate(grads):
        p = g.copy()
        for j in order[i]:
            if j != i and p @ grads[j] < 0:
                p = p - (p @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        out.append(p)
    return np.sum(out, axis=0)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_matches_the_projection_written_out(seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets = [rng.normal(size=6) for _ in range(3)]
    w = nn.Parameter(torch.zeros(6))
    terms = [(w * torch.tensor(t, dtype=torch.float32)).sum() for t in targets]
    gen = torch.Generator().manual_seed(seed)
    probe = torch.Generator().manual_seed(seed)
    order = [torch.randperm(3, generator=probe).tolist() for _ in range(3)]
    pcgrad(terms, [w], gen)
    assert w.grad is not None
    np.testing.assert_allclose(w.grad.numpy(), _reference(targets, order), atol=1e-5)


def test_pcgrad_without_conflict_is_the_plain_sum() -> None:
    w = nn.Parameter(torch.zeros(3))
    a, b = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.5, 0.0, 1.0])
    pcgrad([(w * a).sum(), (w * b).sum()], [w])
    assert w.grad is not None and torch.allclose(w.grad, a + b)


def test_a_frozen_task_trains_nothing() -> None:
    w = nn.Parameter(torch.zeros(2))
    pcgrad([(w * torch.tensor([1.0, 1.0])).sum(), (w * 3.0).sum().detach()], [w])
    assert w.grad is not None and w.grad.tolist() == [1.0, 1.0]


def test_a_task_is_frozen_at_its_best_epoch(tmp_path: Path) -> None:
    config = load_run_config(None, **tiny(tmp_path / "none.duckdb", **{
        "model.tasks": ["next_item", "click"]}))
    model = build_model(config.model, 20, 2, None)
    stopper = TaskStopper(model, patience=2, folder=tmp_path / "tasks")
    head = model.tasks["click"]
    first = next(head.parameters())
    script = [(1, 0.70), (2, 0.80), (3, 0.75), (4, 0.74)]
    at_best = None
    for epoch, auc in script:
        with torch.no_grad():
            first.add_(1.0)  # the head moves every epoch
        if epoch == 2:
            at_best = first.detach().clone()
        frozen = stopper.update({"click/auc": auc, "next_item/ndcg@10": 0.1 * epoch}, epoch)
        assert frozen == (["click"] if epoch == 4 else []), epoch
    assert at_best is not None and torch.equal(first, at_best)  # put back to epoch 2
    assert not any(p.requires_grad for p in head.parameters())
    assert all(p.requires_grad for p in model.user_tower.parameters())
    losses = stopper.losses({"click": torch.ones((), requires_grad=True) * 2,
                             "next_item": torch.ones((), requires_grad=True) * 3})
    assert not losses["click"].requires_grad and losses["next_item"].requires_grad
    again = TaskStopper(model, 2, tmp_path / "tasks")
    again.restore(stopper.state())  # a resumed run finds the same state
    assert again.frozen == {"click"} and again.best == stopper.best


def test_training_with_both_remedies_still_learns(tmp_path: Path) -> None:
    data = planted(n_users=160, n_items=60)
    store = write_store(data, tmp_path)
    config = load_run_config(None, **tiny(store, **{
        "model.tasks": ["next_item", "click", "rating"], "train.conflict": "pcgrad",
        "train.task_patience": 2, "train.refit": False}))
    with fast_torch():
        result = train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    test = result["test"]
    from mtrec.train.run import prepare_run

    chance = random_ndcg_at_10(prepare_run(config, store_dir=tmp_path), TEST)
    assert test["next_item/ndcg@10"] > 2 * chance
    assert test["click/auc"] > 0.75
    history = (tmp_path / "bundle" / "history.csv").read_text()
    assert "frozen" in history.splitlines()[0]


def test_pcgrad_trains_a_learned_weighting_too(tmp_path: Path) -> None:
    """Under uncertainty weighting the model's gradient is PCGrad's and the weighting's own
    parameters still learn (their gradient comes from the total)."""
    data = planted(n_users=40, n_items=30)
    store = write_store(data, tmp_path)
    config = load_run_config(None, **tiny(store, **{
        "model.tasks": ["next_item", "click"], "train.conflict": "pcgrad",
        "weighting.kind": "uncertainty", "train.epochs": 2, "train.refit": False}))
    with fast_torch():
        train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    history = (tmp_path / "bundle" / "history.csv").read_text().splitlines()
    header, last = history[0].split(","), history[-1].split(",")
    weight = float(last[header.index("weight/next_item")])
    assert weight != 1.0  # exp(-s) moved from its start at s = 0
    with pytest.raises(ValueError, match=r"train\.conflict must be 'none' or 'pcgrad'"):
        TrainConfig(conflict="cagrad")


def test_a_run_whose_every_task_is_frozen_stops(tmp_path: Path) -> None:
    """Regression: once every task's head was frozen, PCGrad had no gradient to stack
    (RuntimeError: stack expects a non-empty TensorList) and the plain path none to
    backpropagate; the run now stops there."""
    data = planted(n_users=40, n_items=30)
    store = write_store(data, tmp_path)
    config = load_run_config(None, **tiny(store, **{
        "model.tasks": ["next_item", "click"], "train.conflict": "pcgrad",
        "train.task_patience": 1, "train.epochs": 30, "train.refit": False,
        "train.lr": 1e-6}))  # no task gains: each is frozen one epoch after epoch 1
    with fast_torch():
        result = train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    assert result["epochs_run"] < 30
    w = nn.Parameter(torch.zeros(2))
    pcgrad([(w * 3.0).sum().detach()], [w])  # nothing to train: no gradient set
    assert w.grad is None


def test_a_refit_freezes_each_task_where_the_selection_did(tmp_path: Path) -> None:
    """The refit (train + valid, no validation) repeats the selection's freezes: each frozen
    task's head stops at its own best epoch there too, not at the end."""
    data = planted(n_users=60, n_items=30)
    store = write_store(data, tmp_path)
    config = load_run_config(None, **tiny(store, **{
        "model.tasks": ["next_item", "click", "rating"], "train.task_patience": 1,
        "train.epochs": 8, "train.refit": True}))
    with fast_torch():
        result = train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    chosen = result["frozen_at"]
    assert chosen, "no task was frozen in the selection run"
    expected = {t: e for t, e in chosen.items() if e <= result["refit"]["epochs"]}
    assert result["refit"].get("frozen_at", {}) == expected


def test_a_schedule_freezes_at_the_given_epoch(tmp_path: Path) -> None:
    config = load_run_config(None, **tiny(tmp_path / "none.duckdb", **{
        "model.tasks": ["next_item", "click"]}))
    model = build_model(config.model, 20, 2, None)
    stopper = TaskStopper(model, 1, tmp_path / "tasks", schedule={"click": 2})
    first = next(model.tasks["click"].parameters())
    assert stopper.update({}, 1) == []
    with torch.no_grad():
        first.add_(1.0)
    at_two = first.detach().clone()
    assert stopper.update({}, 2) == ["click"]
    assert torch.equal(first, at_two) and not first.requires_grad
    assert stopper.frozen_at() == {"click": 2}
