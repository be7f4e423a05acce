"""Surprise (SVD, SVD++) on mtrec's ML-100k split, scored by mtrec's own metric functions:

    python -m benchmarks.peers.surprise            # ml100k, temporal split, seed 0

The ``rating`` group (every rated interaction; ``like`` shares its examples) is exported and
verified (benchmarks/export_tabular.py); each algorithm is fitted on the train rows in the
surprise virtualenv (``surprise_runner.py``) and its predicted ratings of the test rows are
scored here by the rating task's ``metrics`` (``rating/rmse``, ``rating/mae``).  The
predicted rating also ranks the ``like`` examples: ``like/auc`` and ``like/gauc`` come from
mtrec's ``auc`` / ``gauc`` on it (no ``like/logloss``: a rating is no probability).
A model that fails gives a row with ``error`` (the exact text) and no metrics.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.export_tabular import (
    Export,
    ExportError,
    benchmark_split,
    export_group,
    read_predictions,
    score,
    verify_export,
)
from benchmarks.peers.venv import PeerError, print_rows, run_runner
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, VALID
from mtrec.eval.metrics import auc, gauc
from mtrec.tasks import PointwiseTask, TaskDims, TaskOptions, build_tasks

ALGOS = ("SVD", "SVDpp")


def rating_tasks(prepared: Prepared, options: TaskOptions | None = None) -> dict[
        str, PointwiseTask]:
    """mtrec's ``rating`` and ``like`` tasks (``like``: rating >= options.like_threshold)."""
    built = build_tasks(("rating", "like"), options or TaskOptions(),
                        TaskDims(prepared.catalog.n_items, 8, 8))
    return {n: t for n, t in built.items() if isinstance(t, PointwiseTask)}


def _like_metrics(export: Export, prepared: Prepared, tasks: dict[str, PointwiseTask],
                  part: int, rating: np.ndarray) -> dict[str, float]:
    rows = export.part_rows(part)
    labels = tasks["like"].labels(prepared.interactions)
    y = labels.values[rows, 0]
    if not labels.mask[rows].all() or y.min() == y.max():
        return {}
    users = prepared.interactions.user[rows]
    return {"like/auc": auc(y, rating), "like/gauc": gauc(y, rating, users)}


def _metrics(export: Export, prepared: Prepared, tasks: dict[str, PointwiseTask],
             result: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for part, key in ((TEST, "test"), (VALID, "valid")):
        preds = read_predictions(Path(result["predictions"][key]), len(export.part_rows(part)))
        metrics = score(export, prepared, tasks, part, {"rating": preds["rating"]})
        metrics.update(_like_metrics(export, prepared, tasks, part, preds["rating"]))
        out[key] = metrics
    return out


def run_algo(algo: str, export: Export, prepared: Prepared, tasks: dict[str, PointwiseTask],
             workdir: Path, seed: int, timeout: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"system": "surprise", "model": algo, "kind": "peer",
                           "dataset": prepared.dataset, "protocol": prepared.protocol,
                           "tasks": ["rating"], "seed": seed,
                           "features": ["user_id", "item_id"], "note": ""}
    run_dir = workdir / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    args = ["--manifest", str(export.manifest), "--algo", algo, "--seed", str(seed),
            "--pred-dir", str(run_dir)]
    started = time.perf_counter()
    try:
        result = run_runner("surprise", "surprise_runner.py", args,
                            run_dir / f"{algo}.result.json", timeout=timeout)
        metrics = _metrics(export, prepared, tasks, result)
    except (PeerError, ExportError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        row.update(error=str(exc), wall_seconds=round(time.perf_counter() - started, 1))
        return row
    unseen = result["unseen"]["test"]
    row.update(metrics=metrics["test"], valid_metrics=metrics["valid"],
               train_seconds=result["train_seconds"], epochs=result["epochs"],
               best_epoch=None, peak_rss_gib=result["peak_rss_gib"],
               ru_maxrss_gib=result.get("ru_maxrss_gib"),
               wall_seconds=result["outer_wall_seconds"], versions=result["versions"],
               allocator=result["allocator"],
               config={**result["config"], "unseen": result["unseen"]},
               note=(f"fitted on the train part with Surprise defaults (no early stopping); "
                     f"test rows with a user unseen in training: {unseen['user']}, with an "
                     f"unseen item: {unseen['item']} (predicted from the known biases); "
                     "like/* rank the like examples by the predicted rating"))
    return row


def run_surprise(prepared: Prepared, workdir: Path, seed: int = 0,
                 algos: Sequence[str] = ALGOS, options: TaskOptions | None = None,
                 timeout: float | None = None) -> list[dict[str, Any]]:
    """SVD and SVD++ on the rated interactions of ``prepared``: one result row each."""
    tasks = rating_tasks(prepared, options)
    try:
        export = export_group(prepared, tasks, ("rating", "like"), workdir / "data")
        verify_export(export, prepared, tasks)
    except (ExportError, OSError, ValueError) as exc:
        return [{"system": "surprise", "model": a, "kind": "peer", "seed": seed,
                 "error": str(exc)} for a in algos]
    rows = []
    for algo in algos:
        print(f"surprise {algo} on {prepared.dataset}", file=sys.stderr, flush=True)
        rows.append(run_algo(algo, export, prepared, tasks, workdir, seed, timeout))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(".mtrec/peers/work/surprise"))
    parser.add_argument("--out", type=Path, help="write the rows here (JSON)")
    args = parser.parse_args()
    cfg, prepared, _ = benchmark_split("ml100k")
    rows = run_surprise(prepared, args.workdir, args.seed, options=cfg.model.task_options)
    print_rows(rows, args.out)


if __name__ == "__main__":
    main()
