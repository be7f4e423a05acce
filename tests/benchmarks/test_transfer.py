"""benchmarks/transfer.py: which users a share draws, what the few-shot systems may see,
and the tables and targets drawn from the runs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.transfer import ChosenBatcher, baseline_row, chosen_users, summarize, targets
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.run_config import load_run_config
from mtrec.train.run import prepare_run
from tests.planted import planted, tiny, write_store


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    store = write_store(planted(n_users=200, n_items=60), tmp_path_factory.mktemp("transfer"))
    return prepare_run(load_run_config(None, **tiny(store)), store_dir=store.parent)


def test_a_share_draws_that_many_training_users(prepared: Prepared) -> None:
    data = prepared.interactions
    trainers = np.unique(data.user[data.part == TRAIN])
    five = chosen_users(prepared, 0.05, 0)
    assert five.sum() == round(0.05 * len(trainers)) and np.isin(np.flatnonzero(five),
                                                                 trainers).all()
    assert np.array_equal(five, chosen_users(prepared, 0.05, 0))  # the seed fixes the draw
    assert not np.array_equal(five, chosen_users(prepared, 0.05, 1))
    assert chosen_users(prepared, 0.001, 0).sum() == 1 and chosen_users(prepared, 0, 0).sum() == 0
    assert chosen_users(prepared, 1.0, 0).sum() == len(trainers)


def test_few_shot_systems_see_only_the_chosen_users_labels(prepared: Prepared) -> None:
    chosen = chosen_users(prepared, 0.1, 0)
    batcher = ChosenBatcher(prepared.interactions, 16, {}, chosen)
    assert set(batcher.train_users()) <= set(np.flatnonzero(chosen))
    assert chosen[batcher.eval_users(VALID)].all()  # validation: the chosen users only
    assert len(batcher.eval_users(TEST)) > chosen.sum()  # test: every test user


def test_baselines_fit_on_the_chosen_users(prepared: Prepared) -> None:
    few = baseline_row(prepared, "itemknn", 0.05, 0)
    full = baseline_row(prepared, "itemknn", 1.0, 0)
    pop = baseline_row(prepared, "popularity", 1.0, 0)
    assert few["train_users"] < full["train_users"] and few["test_users"] == full["test_users"]
    assert full["ndcg@10"] > pop["ndcg@10"] > 0 and "neighbors" in full
    assert full["ndcg@10"] > few["ndcg@10"]


def test_summary_and_targets() -> None:
    rows = [{"held_out": "c", "system": s, "share": share, "seed": seed, "ndcg@10": v + seed / 100,
             "recall@10": 2 * v, "train_users": 9, "seconds": 1.0}
            for seed in (0, 1) for s, share, v in (
                ("pretrained", 0.0, 0.03), ("pretrained", 0.05, 0.04), ("scratch", 0.05, 0.02),
                ("pretrained", 1.0, 0.05), ("scratch", 1.0, 0.05), ("popularity", 1.0, 0.01))]
    summary = summarize(rows)
    first = next(r for r in summary if r["system"] == "pretrained" and r["share"] == 0.0)
    assert first["seeds"] == 2 and first["ndcg@10"] == pytest.approx(0.035)
    assert first["ndcg@10_sd"] == pytest.approx(np.std([0.03, 0.04], ddof=1))
    lines = targets(summary)
    assert lines[0].startswith("c: zero-shot 0.0350 = 2.33x popularity")
    assert "5% pre-trained 0.0450 vs scratch 0.0250 = 1.80x" in lines[1]
    assert "100% pre-trained 0.0550 vs scratch 0.0550 = 1.00x" in lines[2]


def test_the_wide_table_has_a_column_per_share() -> None:
    from benchmarks.transfer import render_wide

    rows = [{"held_out": "c", "system": "pretrained", "share": 0.0, "seeds": 1,
             "ndcg@10": 0.03}, {"held_out": "c", "system": "scratch", "share": 1.0,
                                "seeds": 3, "ndcg@10": 0.05}]
    lines = render_wide(rows).splitlines()
    assert lines[0] == "| held out | system | 0% | 100% |"
    assert lines[2] == "| c | pretrained | 0.0300 | - |"
    assert lines[3] == "| c | scratch | - | 0.0500 (3) |"
