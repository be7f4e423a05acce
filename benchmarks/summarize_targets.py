"""Turn benchmarks/results/model_*.json into benchmarks/results/model_targets.md.

    python -m benchmarks.summarize_targets
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
NEXT = ("next_item/ndcg@10", "next_item/recall@10", "next_item/cold_ndcg@10",
        "next_item/cold_recall@10", "next_item/cold_share")
MAIN = {"next_item": "next_item/ndcg@10", "rating": "rating/rmse", "like": "like/auc",
        "engagement": "engagement/return_auc", "purchase": "purchase/auc",
        "cart": "cart/auc", "collect": "collect/auc"}
EXTRA = {"engagement": "engagement/log_count_rmse", "next_item": "next_item/recall@10"}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"model_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _run_rows(record: dict[str, Any]) -> list[str]:
    rows = ["| run | test NDCG@10 | test Recall@10 | cold NDCG@10 | cold Recall@10 | cold share "
            "| best / run epochs | wall | peak RSS |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in record["runs"]:
        test = run["test"]
        rows.append(f"| {run['label']} | " + " | ".join(f"{test.get(k, float('nan')):.4f}"
                                                      for k in NEXT)
                    + f" | {run['best_epoch']} / {run['epochs_run']} "
                    f"| {run['wall_seconds']:.0f} s | {run['peak_rss_gib']:.2f} GiB |")
    return rows


def _joint_vs_single(record: dict[str, Any], tasks: tuple[str, ...]) -> list[str]:
    rows = ["| task | metric | joint (mean ± sd) | single-task (mean ± sd) "
            "| joint at least as good |", "|---|---|---:|---:|---|"]
    for task in tasks:
        for metric in filter(None, (MAIN.get(task), EXTRA.get(task))):
            joint = [r["test"][metric] for r in record["runs"]
                     if "joint" in r["label"] and metric in r["test"]]
            single = [r["test"][metric] for r in record["runs"]
                      if f"single {task}" in r["label"] and metric in r["test"]]
            if not joint or not single:
                continue
            lower = metric.endswith(("rmse", "mae", "logloss"))
            ok = (statistics.mean(joint) <= statistics.mean(single) if lower
                  else statistics.mean(joint) >= statistics.mean(single))
            rows.append(f"| {task} | {metric.split('/')[1]} | {_ms(joint)} | {_ms(single)} | "
                        f"{'yes' if ok else 'no'} |")
    return rows


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f} (n={len(values)})"


def main() -> None:
    out = ["# Model targets (issue 3)", "",
           "Reproduce each block with the command above it; every run is `mtrec train` in a "
           "child process (wall time and peak RSS of that process). Full ranking over the "
           "whole catalog with the user's earlier items masked; cold = test targets whose item "
           "has <= 5 training interactions.", ""]
    for name, title in (("beauty", "Amazon Beauty, leave-one-out"),
                        ("scientific", "Amazon Scientific, its own split")):
        record = _load(name)
        if record:
            out += [f"## {title}", "", f"`{record['command']}`", "", *_run_rows(record), ""]
            out += [f"- {r['label']}: {r['note']}" for r in record["runs"] if r.get("note")]
            out += [""]
    for name, title, tasks in (
            ("ml100k", "ML-100k, temporal split, joint vs single-task, 3 seeds",
             ("next_item", "rating", "like", "engagement")),
            ("jdata", "JData, pair split, ID only, joint vs single-task",
             ("purchase", "cart", "collect"))):
        record = _load(name)
        if record:
            out += [f"## {title}", "", f"`{record['command']}`", "",
                    *_joint_vs_single(record, tasks), ""]
    machine = next((r["machine"] for n in ("beauty", "scientific", "ml100k", "jdata")
                    if (r := _load(n))), None)
    if machine:
        out += ["Machine: " + json.dumps(machine), ""]
    (RESULTS / "model_targets.md").write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
