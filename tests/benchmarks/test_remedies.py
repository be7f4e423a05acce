"""benchmarks/remedies.py: per task, systems ordered best first by the metric's direction,
the single-task models pooled as one system."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.remedies import best_peers, deltas, render, summarize, targets


def test_summary_orders_by_each_metrics_direction() -> None:
    rows = [{"dataset": "d", "system": s, "seed": k, m: v}
            for s, m, vals in (("joint", "rating/rmse", (1.0, 1.3)),
                               ("joint + pcgrad", "rating/rmse", (0.9, 0.9)),
                               ("single-task rating", "rating/rmse", (1.1, 1.1)),
                               ("joint", "like/auc", (0.70, 0.72)),
                               ("single-task like", "like/auc", (0.69, 0.69)))
            for k, v in enumerate(vals)]
    summary = summarize(rows)
    rmse = [r["system"] for r in summary if r["metric"] == "rating/rmse"]
    auc = [r["system"] for r in summary if r["metric"] == "like/auc"]
    assert rmse == ["joint + pcgrad", "single-task", "joint"]  # lower is better
    assert auc == ["joint", "single-task"]  # higher is better
    table = render(summary)
    assert "| d | rating/rmse | 1.1000 ± 0.0000 (2) | 1.1500 ± 0.2121 (2) | 0.9000 ± 0.0000 (2)" \
        in table and table.rstrip().endswith("| joint + pcgrad | - |")
    assert "| d | like/auc | 0.6900 ± 0.0000 (2) | 0.7100 ± 0.0141 (2) | - | - | - | joint |" \
        in table


def test_the_best_torch_rechub_model_per_task_is_read_from_its_comparison(
        tmp_path: Path) -> None:
    rows = [{"system": "torch-rechub", "model": m, "metrics": metrics}
            for m, metrics in (("MMoE", {"rating/rmse": 1.07, "like/auc": 0.70}),
                               ("PLE", {"rating/rmse": 1.06, "like/auc": 0.69,
                                        "like/gauc": 0.99}))]
    rows.append({"system": "Surprise", "model": "SVD", "metrics": {"rating/rmse": 0.5}})
    (tmp_path / "compare_ml100k.json").write_text(json.dumps({"rows": rows}))
    peers = best_peers("ml100k", tmp_path)
    assert [(p["metric"], p["system"], p["mean"]) for p in peers] == [
        ("like/auc", "torch-rechub MMoE", 0.70), ("rating/rmse", "torch-rechub PLE", 1.06)]
    assert best_peers("jdata", tmp_path) == []  # its comparison has not run
    summary = summarize([{"dataset": "ml100k", "system": s, "seed": 0, "rating/rmse": v}
                         for s, v in (("joint", 1.05), ("single-task rating", 1.04))])
    (line,) = targets(summary, peers)
    assert line == ("ml100k rating/rmse: joint 1.0500 vs single-task 1.0400 (not met); vs best "
                    "torch-rechub PLE 1.0600 (met)")
    assert render(summary, peers).splitlines()[2].endswith("| 1.0600 (PLE) |")


def test_deltas_are_skill_gains_paired_by_seed() -> None:
    rows = [{"dataset": "ml100k", "system": s, "seed": k, "rating/rmse": r, "like/auc": a}
            for s, vals in (("joint", ((1.0, 0.70), (1.2, 0.72))),
                            ("single-task like", ((None, 0.69), (None, 0.69))),
                            ("single-task rating", ((1.1, None), (1.1, None))))
            for k, (r, a) in enumerate(vals)]
    rows = [{k: v for k, v in r.items() if v is not None} for r in rows]
    got = {r["metric"]: r for r in deltas(rows)}
    assert got["rating/rmse"]["delta"] == pytest.approx(0.0)  # -(-0.1 + 0.1) / 2
    assert got["like/auc"]["delta"] == pytest.approx(0.02)
    assert got["like/auc"]["ci95"] == pytest.approx(12.706 * 0.01414214 / 2 ** 0.5, rel=1e-4)
    assert got["like/auc"]["store"] == "ml-100k"
