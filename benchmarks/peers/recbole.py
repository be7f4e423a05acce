"""RecBole 1.2.1 (sequential: SASRec, BERT4Rec, GRU4Rec, CORE, ...; graph: BPR, LightGCN) on
mtrec's own split, scored as mtrec scores.

``run_recbole`` exports the split (``benchmarks/export_recbole.py``), checks the round trip,
runs ``recbole_runner.py`` once per model in RecBole's own virtualenv and turns the masked
test ranks it writes into mtrec's metrics (``mtrec.eval.metrics.ranking_metrics`` plus the
cold subset, as ``mtrec.eval.protocols.evaluate`` reports them).

Same test targets and masking as mtrec: the first test interaction of each user, ranked over
the full catalog with the user's whole visible history masked (a target in it is a miss).
What differs by construction (RecBole's data format): RecBole's sequential models see the
last 50 history items (mtrec: a begin token and the last 49), train on every training
position t >= 1 of every user (mtrec: the last ``max_len`` training items of each user,
including the first one, predicted from the begin token) and never train on a user with a
single training interaction.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.export_recbole import RecBoleExport, check_round_trip, export_recbole
from benchmarks.peers.venv import PeerError, run_runner
from mtrec.data.interactions import Prepared
from mtrec.data.split import TRAIN
from mtrec.eval.metrics import ranking_metrics
from mtrec.eval.protocols import COLD_MAX

MODELS = ("SASRec", "BERT4Rec", "GRU4Rec", "BPR")
SYSTEM = "RecBole"


def run_recbole(prepared: Prepared, models: Sequence[str], epochs: int, stopping_step: int,
                workdir: Path, seed: int = 0, *, threads: int = 0,
                config: dict[str, Any] | None = None, timeout: float | None = None,
                max_seconds: float = 0.0, resume: bool = False) -> list[dict[str, Any]]:
    """One result row per model (see :func:`result_row`); a model that fails gives a row
    with ``error`` (the exact error text) and no metrics.  ``config`` overrides RecBole's
    config_dict for every model; ``threads`` 0 means the machine's cores; ``max_seconds``
    (0: none) caps each model's fit wall time (the row says ``capped``); with ``resume`` each
    fit saves its state after every validation under ``workdir/MODEL`` and a rerun on the
    same ``workdir`` continues a killed fit from there."""
    workdir = Path(workdir).resolve()
    export = export_recbole(prepared, workdir / "data")
    check_round_trip(prepared, export)
    cold = cold_targets(prepared, export.test_targets)
    rows = []
    for model in models:
        out = workdir / model
        out.mkdir(parents=True, exist_ok=True)
        args = [*_runner_args(export, model, out, epochs, stopping_step, seed, threads,
                              config), "--max-seconds", str(max_seconds),
                *(["--resume"] if resume else [])]
        try:
            result = run_runner("recbole", "recbole_runner.py", args, out / "result.json",
                                timeout=timeout)
            ranks = np.load(out / "ranks.npy")
            if ranks.shape != export.test_targets.shape:
                raise PeerError(f"{model}: {ranks.shape[0]} ranks for "
                                f"{len(export.test_targets)} test rows")
        except (PeerError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            rows.append(error_row(model, seed, exc))
            continue
        rows.append(result_row(model, seed, result, masked_metrics(ranks, cold)))
    return rows


def _runner_args(export: RecBoleExport, model: str, out: Path, epochs: int, stopping_step: int,
                 seed: int, threads: int, config: dict[str, Any] | None) -> list[str]:
    return ["--model", model, "--data-path", str(export.data_path),
            "--dataset", export.seq_name, "--history", str(export.history_path),
            "--workdir", str(out), "--ranks", str(out / "ranks.npy"),
            "--epochs", str(epochs), "--stopping-step", str(stopping_step),
            "--seed", str(seed), "--threads", str(threads),
            "--config", json.dumps(config or {})]


def cold_targets(prepared: Prepared, targets: np.ndarray, cold_max: int = COLD_MAX) -> np.ndarray:
    """Whether each target item has at most ``cold_max`` training interactions."""
    data = prepared.interactions
    counts = np.bincount(data.item[data.part == TRAIN], minlength=prepared.catalog.n_items + 1)
    return np.asarray(counts[targets] <= cold_max, dtype=bool)


def masked_metrics(ranks: np.ndarray, cold: np.ndarray) -> dict[str, float]:
    """mtrec's next-item metrics of masked ranks: all targets, the cold ones (``cold_``
    prefix), the cold share and the number of users."""
    metrics = dict(ranking_metrics(ranks))
    if cold.any():
        metrics.update({f"cold_{k}": v for k, v in ranking_metrics(ranks[cold]).items()})
    metrics["cold_share"] = float(cold.mean()) if len(cold) else 0.0
    metrics["users"] = float(len(ranks))
    return metrics


def result_row(model: str, seed: int, result: dict[str, Any],
               metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "system": SYSTEM, "model": model, "kind": "peer", "metrics": metrics,
        "train_seconds": result["train_seconds"],
        "seconds_per_epoch": result["seconds_per_epoch"], "epochs": result["epochs"],
        "best_epoch": result["best_epoch"], "peak_rss_gib": result["peak_rss_gib"],
        "wall_seconds": result["outer_wall_seconds"], "seed": seed,
        "config": result["config"], "config_overrides": result["config_dict"],
        "recbole_own_test": result["recbole_own_test"],
        "own_style_test": result["own_style_test"],
        "timings": {k: result[k] for k in ("fit_wall_seconds", "epoch_seconds",
                                           "load_seconds", "score_seconds")},
        "valid_scores": result["valid_scores"], "threads": result["threads"],
        "curve": [[e, s, v] for e, s, v in zip(result.get("valid_epochs", []),
                                               result.get("valid_seconds", []),
                                               result["valid_scores"], strict=False)],
        "capped": bool(result.get("capped")),
        "epoch_budget": result.get("config_dict", {}).get("epochs"),
        "versions": result["versions"], "allocator": result["allocator"], "note": "",
    }


def error_row(model: str, seed: int, exc: BaseException) -> dict[str, Any]:
    """A failed model: the exact error text, and a note with its last line (the exception)."""
    text = str(exc) if not isinstance(exc, subprocess.TimeoutExpired) else (
        f"{model}: timed out after {exc.timeout} s")
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), text)
    return {"system": SYSTEM, "model": model, "kind": "peer", "seed": seed, "error": text,
            "note": f"RecBole {model} did not finish: {last}"}
