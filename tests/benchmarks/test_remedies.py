"""benchmarks/remedies.py: per task, systems ordered best first by the metric's direction,
the single-task models pooled as one system."""

from __future__ import annotations

from benchmarks.remedies import render, summarize


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
        in table and table.rstrip().endswith("| joint + pcgrad |")
    assert "| d | like/auc | 0.6900 ± 0.0000 (2) | 0.7100 ± 0.0141 (2) | - | - | - | joint |" \
        in table
