"""The engagement head on the multi-task model, on logs with a planted answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtrec.models.batches import gap_bucket
from mtrec.policy.engagement import (
    OUTPUTS,
    EngagementHead,
    EngagementHeadConfig,
    EngagementModel,
    cut_batch,
)
from mtrec.policy.fit import EngagementTrainConfig, fit_engagement, predict, predict_best
from mtrec.policy.labels import DAY, EngagementConfig
from mtrec.policy.run import before_cut, engagement_split, run_engagement
from mtrec.run_config import load_run_config
from mtrec.train.run import budgeted, build
from tests.policy.logs import START, engagement_logs

PROTOCOL = EngagementConfig(return_days=(3, 7), train_cuts=4, cut_step_days=4)


def _config():
    return load_run_config(**{
        "data.dataset": "engagement-logs", "model.tasks": ["next_item", "purchase"],
        "model.item.use_text": False, "model.item.dim": 32, "model.user.layers": 1,
        "model.user.heads": 2, "model.user.max_len": 16, "model.mtl.expert_dim": 32,
        "model.mtl.tower_dim": 16})


def _run(prepared, head=EngagementHeadConfig(hidden=32), **train):
    split = engagement_split(prepared, PROTOCOL)
    options = {"epochs": 6, "patience": 6, "batch_size": 128, "seq_batch_size": 32,
               "lr": 3e-3, "bf16": False, **train}
    return split, run_engagement(_config(), prepared, split, PROTOCOL, head,
                                 EngagementTrainConfig(**options))


@pytest.fixture(scope="module")
def planted():
    return engagement_logs(n_users=160)


def test_joint_model_predicts_the_planted_returns(planted):
    split, result = _run(planted)
    m = result["metrics"]
    assert m["return_7d/auc"] > 0.85 and m["return_3d/auc"] > 0.8
    assert m["time_to_return/cindex"] > 0.75
    # the counts: better than predicting the training mean for everyone
    mean_days = split.train[0].active_days.mean()
    naive = float(np.sqrt(np.mean((split.test[0].active_days - mean_days) ** 2)))
    assert m["active_days/rmse"] < naive
    assert all(row["loss/tasks"] > 0 for row in result["history"])  # joint: tasks trained


def test_cut_batch_reads_the_history_before_each_cut(planted):
    """Each row's state is read after exactly the user's pre-cut events (the last
    max_len - 1), with the gap from the last of them to the cut."""
    data = planted.interactions
    users = np.array([0, 1, 0])
    cuts = np.array([START + 20 * DAY, START + 30 * DAY, START + 45 * DAY])
    batch = cut_batch(data, users, cuts, max_len=8)
    for row, (u, cut) in enumerate(zip(users, cuts, strict=True)):
        own = np.arange(data.offsets[u], data.offsets[u + 1])
        before = own[data.ts[own] < cut][-7:]
        col = int(batch.cols[row])
        assert col == len(before) and int(batch.rows[row]) == row
        assert batch.items[row, 1:col + 1].tolist() == data.item[before].tolist()
        assert (batch.items[row, col + 1:] == 0).all() and batch.items[row, 0] == -1
        expected = gap_bucket(np.array([cut]), data.ts[before[-1:]])
        assert int(batch.target_gap[row]) == int(expected[0])


def test_events_after_the_test_cut_change_no_prediction(planted):
    """Leakage: the model trains and predicts from events before the test cut only."""
    split = engagement_split(planted, PROTOCOL)
    data = planted.interactions
    later = data.ts >= split.test_cut
    rng = np.random.default_rng(3)
    changed = dataclasses.replace(planted, interactions=dataclasses.replace(
        data, item=np.where(later, rng.integers(1, 41, len(data)), data.item)))
    _, a = _run(planted, epochs=1, patience=1)
    _, b = _run(changed, epochs=1, patience=1)
    for key in a["predictions"]:
        # (the same run twice differs by float rounding in threaded kernels: ~1e-7)
        np.testing.assert_allclose(a["predictions"][key], b["predictions"][key], atol=1e-5)


def test_each_output_is_predicted_from_its_own_best_epoch(planted):
    """Per-output early stopping: the snapshots kept are exactly the outputs' best
    epochs, and each output's predictions come from its own."""
    split = engagement_split(planted, PROTOCOL)
    at_cut = before_cut(planted, split.test_cut)
    config, _ = budgeted(_config(), at_cut)
    recommender, batcher = build(config, at_cut, None)
    head = EngagementHead(EngagementHeadConfig(hidden=16, counts_from_state=False),
                          config.model.item.dim, len(split.features), 2)
    model = EngagementModel(recommender, head)
    data = at_cut.interactions
    fit = fit_engagement(model, batcher, data, split.train, split.valid,
                         EngagementTrainConfig(epochs=4, patience=4, batch_size=128,
                                               seq_batch_size=32, bf16=False), 16)
    assert set(fit.snapshots) == set(fit.best_epochs.values())
    for name, epoch in fit.best_epochs.items():
        values = [row[f"valid/{name}"] for row in fit.history]
        assert values[epoch - 1] <= min(values) + 1e-4  # (a gain must exceed 1e-4)
        assert all(v > values[epoch - 1] - 1e-4 for v in values[epoch:])
    best = predict_best(model, fit, data, *split.test, max_len=16)
    for name, key in OUTPUTS.items():
        model.load_state_dict(fit.snapshots[fit.best_epochs[name]])
        own = predict(model, data, *split.test, max_len=16).predictions()[key]
        np.testing.assert_array_equal(best[key], own)


def test_a_head_that_does_not_train_the_state_leaves_the_tower_alone(planted):
    """``train_state=False``: the engagement loss reaches the head only; the user tower is
    shaped by the recommender's own tasks.  ``use_state=False``: the tower is not run."""
    split = engagement_split(planted, PROTOCOL)
    at_cut = before_cut(planted, split.test_cut)
    config, _ = budgeted(_config(), at_cut)
    for options, tower_trained in (({}, True), ({"train_state": False}, False),
                                   ({"use_state": False}, False)):
        recommender, _ = build(config, at_cut, None)
        head = EngagementHead(EngagementHeadConfig(hidden=16, **options),
                              config.model.item.dim, len(split.features), 2)
        model = EngagementModel(recommender, head.fit_scaler(split.train[1], split.train[0]))
        out = model(at_cut.interactions, split.train[0].take(np.arange(32)),
                    split.train[1][:32], 16)
        out.loss.backward()
        tower = [p.grad for p in recommender.user_tower.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in tower) == tower_trained
        assert all(p.grad is not None for p in head.net.parameters())
