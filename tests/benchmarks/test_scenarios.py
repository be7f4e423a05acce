"""benchmarks/scenarios.py: joint-minus-alone differences paired by seed, with their 95 %
interval, and the targets drawn from the summary."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.scenarios import deltas, summarize, targets


def _rows() -> list[dict[str, object]]:
    values = {"alone": [0.010, 0.012, 0.011], "joint-star": [0.013, 0.014, 0.016]}
    return [{"dataset": "d", "scenario": "phone", "system": s, "seed": k, "ndcg@10": v,
             "recall@10": 2 * v, "test_users": 5, "seconds": 1.0, "best_epoch": 3}
            for s, vs in values.items() for k, v in enumerate(vs)]


def test_deltas_are_paired_by_seed_with_a_t_interval() -> None:
    (row,) = deltas(_rows())
    diffs = [0.003, 0.002, 0.005]
    assert row["system"] == "joint-star" and row["seeds"] == 3
    assert row["delta"] == pytest.approx(statistics.fmean(diffs))
    assert row["ci95"] == pytest.approx(4.303 * statistics.stdev(diffs) / 3 ** 0.5)


def test_targets_compare_the_best_joint_model_with_alone() -> None:
    (line,) = targets(summarize(_rows()))
    assert line.startswith("d / phone: best joint (joint-star) 0.0143 vs alone 0.0110 = +30.3%")


def test_each_dataset_runs_its_own_protocol_and_model() -> None:
    """The pairs: ID only, a fresh order every epoch (they have none); the three Amazon
    categories: each split as in its own benchmark, ids per source, text + ID."""
    from benchmarks.scenarios import PAIRS, THREE, run_config

    for pair in PAIRS:
        c = run_config(pair, 1, "star", ("phone",))
        assert c.train.shuffle_unordered and not c.model.item.use_text
        assert (c.data.protocol, c.data.scenarios, c.model.mtl.kind) == (
            "source", ("phone",), "star")
    three = run_config(THREE, 0)
    assert (three.data.protocol, three.data.item_ids) == ("loo/source/source", "per-source")
    assert three.model.item.use_text and three.train.seed == 0 and not three.train.refit
