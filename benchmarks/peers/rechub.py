"""torch-rechub's multi-task models (MMoE, PLE, ESMM, SharedBottom) on mtrec's split, scored
by mtrec's own metric functions:

    python -m benchmarks.peers.rechub jdata --features id     # epochs, patience: jdata.toml's
    python -m benchmarks.peers.rechub ml100k --features side

Each task group (tasks labelled on the same interactions, see benchmarks/export_tabular.py)
is exported once, verified against the tasks' labels, and every model is trained on it in
the rechub virtualenv (``rechub_runner.py``).  The runner's test predictions are scored here
with each task's ``metrics``, so ``purchase/auc`` means what it means in mtrec's results.
A model that fails gives a row with ``error`` (the exact text) and no metrics.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.export_tabular import (
    BENCHMARKS,
    Export,
    ExportError,
    benchmark_split,
    export_group,
    read_predictions,
    score,
    task_groups,
    verify_export,
)
from benchmarks.peers.venv import PeerError, print_rows, run_runner
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, VALID
from mtrec.eval.metrics import binary_metrics
from mtrec.eval.protocols import main_metric
from mtrec.tasks import PointwiseTask
from mtrec.tasks.binary import BinaryTask

MODELS = ("MMoE", "PLE", "ESMM", "SharedBottom")
ESMM_DEFAULT = ("cart", "purchase")  # JData: a cart is the "click", a purchase the conversion


def esmm_pair(group: tuple[str, ...], tasks: Mapping[str, PointwiseTask],
              esmm: tuple[str, str] | None) -> tuple[str, str] | None:
    """``(click, conversion)`` when both are binary tasks of ``group``, else None."""
    if esmm is None or not set(esmm) <= set(group):
        return None
    return esmm if all(isinstance(tasks[t], BinaryTask) for t in esmm) else None


def selecting_outputs(export: Export, pair: tuple[str, str] | None) -> list[str]:
    """The runner outputs that pick the epoch, as mtrec's trainer picks it: each task's main
    metric (``like/auc``, ``rating/rmse``, ``engagement/log_count_rmse``, ...); for ESMM its
    two supervised outputs, pCTR and pCTCVR."""
    if pair is not None:
        return [pair[0], f"{pair[0]}_{pair[1]}"]
    out = []
    for task in export.tasks:
        kind = "binary" if main_metric(task).endswith("auc") else "regression"
        out.append(next(c.column for c in export.labels if c.task == task and c.kind == kind))
    return out


def _base_row(model: str, prepared: Prepared, group: tuple[str, ...], seed: int,
              feature_names: list[str]) -> dict[str, Any]:
    return {"system": "torch-rechub", "model": model, "kind": "peer",
            "dataset": prepared.dataset, "protocol": prepared.protocol, "tasks": list(group),
            "seed": seed, "features": feature_names, "note": ""}


def _esmm_metrics(export: Export, prepared: Prepared, part: int, click: str, conv: str,
                  preds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """pCTCVR against the click x conversion label, by mtrec's ``binary_metrics``."""
    rows, data = export.part_rows(part), prepared.interactions
    label = (data.has_behavior(click) & data.has_behavior(conv))[rows].astype(np.float64)
    out = binary_metrics(label, preds[f"{click}_{conv}"], data.user[rows])
    return {f"{click}_{conv}/{k}": v for k, v in out.items()}


def _metrics(export: Export, prepared: Prepared, tasks: Mapping[str, PointwiseTask],
             result: dict[str, Any], pair: tuple[str, str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part, key in ((TEST, "test"), (VALID, "valid")):
        preds = read_predictions(Path(result["predictions"][key]), len(export.part_rows(part)))
        metrics = score(export, prepared, tasks, part, preds)
        if pair is not None:
            metrics.update(_esmm_metrics(export, prepared, part, *pair, preds))
        out[key] = metrics
    return out


def _note(model: str, pair: tuple[str, str] | None) -> str:
    if pair is None:
        return ""
    click, conv = pair
    return (f"ESMM with '{click}' as the click stage and '{conv}' as the conversion: pCTR is "
            f"scored as task '{click}' (same examples and labels as mtrec); pCTCVR predicts "
            f"'{click} and {conv}' on every interaction and is scored against that label as "
            f"'{click}_{conv}/*' (not an mtrec task). ESMM gives no plain '{conv}' score, so "
            f"it has no '{conv}/*' metrics.")


def run_model(model: str, export: Export, prepared: Prepared,
              tasks: Mapping[str, PointwiseTask], workdir: Path, *, epochs: int,
              patience: int, seed: int, pair: tuple[str, str] | None = None,
              threads: int = 0, timeout: float | None = None) -> dict[str, Any]:
    """One model on one exported group: a result row (with ``error`` when it failed)."""
    row = _base_row(model, prepared, export.tasks, seed, [f.name for f in export.features])
    run_dir = workdir / "runs" / "-".join(export.tasks)
    args = ["--manifest", str(export.manifest), "--model", model, "--epochs", str(epochs),
            "--patience", str(patience), "--seed", str(seed), "--threads", str(threads),
            "--pred-dir", str(run_dir),
            "--select", ",".join(selecting_outputs(export, pair))]
    if pair is not None:
        args += ["--esmm", ",".join(pair)]
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        result = run_runner("rechub", "rechub_runner.py", args,
                            run_dir / f"{model}.result.json", timeout=timeout)
        metrics = _metrics(export, prepared, tasks, result, pair)
    except (PeerError, ExportError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        row.update(error=str(exc), wall_seconds=round(time.perf_counter() - started, 1))
        return row
    row.update(metrics=metrics["test"], valid_metrics=metrics["valid"],
               train_seconds=result["train_seconds"], epochs=result["epochs"],
               best_epoch=result["best_epoch"], peak_rss_gib=result["peak_rss_gib"],
               ru_maxrss_gib=result.get("ru_maxrss_gib"),
               wall_seconds=result["outer_wall_seconds"], versions=result["versions"],
               allocator=result["allocator"], history=result["history"],
               config={**result["config"], "outputs": result["outputs"]},
               note=_note(model, pair))
    return row


def run_rechub(prepared: Prepared, tasks: Mapping[str, PointwiseTask], workdir: Path,
               models: Sequence[str] = MODELS, epochs: int = 15, seed: int = 0, *,
               patience: int = 3, feature_set: str = "id",
               esmm: tuple[str, str] | None = ESMM_DEFAULT, threads: int = 0,
               timeout: float | None = None) -> list[dict[str, Any]]:
    """Every model on every task group of ``tasks``; one result row per (model, group).

    ESMM runs on the group holding both tasks of ``esmm``; where no group does, its row
    says why it was skipped (``skipped``, no metrics)."""
    rows: list[dict[str, Any]] = []
    esmm_ran = False
    for group in task_groups(tasks, prepared):
        try:
            export = export_group(prepared, tasks, group, workdir / "data", feature_set)
            verify_export(export, prepared, tasks)
        except (ExportError, OSError, ValueError) as exc:
            rows += [{**_base_row(m, prepared, group, seed, []), "error": str(exc)}
                     for m in models]
            continue
        for model in models:
            pair = esmm_pair(group, tasks, esmm) if model == "ESMM" else None
            if model == "ESMM" and pair is None:
                continue
            esmm_ran |= model == "ESMM"
            print(f"torch-rechub {model} on {prepared.dataset} {group}", file=sys.stderr,
                  flush=True)
            rows.append(run_model(model, export, prepared, tasks, workdir, epochs=epochs,
                                  patience=patience, seed=seed, pair=pair, threads=threads,
                                  timeout=timeout))
    if "ESMM" in models and not esmm_ran:
        rows.append({**_base_row("ESMM", prepared, tuple(tasks), seed, []),
                     "skipped": f"ESMM needs a click stage and a conversion stage among the "
                                f"binary tasks {esmm}; this run's tasks are {tuple(tasks)}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--features", choices=("id", "side"), default="id")
    parser.add_argument("--epochs", type=int, help="default: the mtrec config's")
    parser.add_argument("--patience", type=int, help="default: the mtrec config's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path(".mtrec/peers/work/rechub"))
    parser.add_argument("--out", type=Path, help="write the rows here (JSON)")
    args = parser.parse_args()
    cfg, prepared, tasks = benchmark_split(args.benchmark)
    rows = run_rechub(prepared, tasks, args.workdir / args.benchmark / args.features,
                      tuple(args.models.split(",")), args.epochs or cfg.train.epochs,
                      args.seed, patience=args.patience or cfg.train.patience,
                      feature_set=args.features,
                      threads=args.threads)
    print_rows(rows, args.out)


if __name__ == "__main__":
    main()
