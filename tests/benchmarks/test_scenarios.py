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
