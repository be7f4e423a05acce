"""The side-by-side comparisons: mtrec, its baselines, the peers and published anchors.

Every row is one system on the same split of the same dataset, ranked or scored by the same
code.  Row format (also read by ``mtrec report`` and the README table)::

    {"system": "mtrec" | "RecBole" | "torch-rechub" | "Surprise" | "published",
     "model": str, "kind": "mtrec" | "baseline" | "peer" | "published",
     "metrics": {"ndcg@10": ..., "cold_ndcg@10": ..., "purchase/auc": ..., ...},
     "train_seconds": float, "peak_rss_gib": float, "note": str, ...}

Next-item metric names carry no task prefix (``ndcg@10``); pointwise ones do
(``like/auc``, ``rating/rmse``).  A row whose run failed has ``error`` and no metrics.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.anchors import anchors_for
from benchmarks.model_targets import run_train
from benchmarks.peers.venv import allocator_env
from mtrec.data.interactions import Interactions, Prepared
from mtrec.data.sources import DATASETS
from mtrec.data.sources.base import data_root
from mtrec.data.split import TEST, VALID
from mtrec.eval.protocols import evaluate_scorer
from mtrec.models.baselines import ItemKNN, Popularity
from mtrec.models.batches import SequenceBatcher
from mtrec.run_config import load_run_config
from mtrec.train.run import prepare_run

CONFIGS = Path(__file__).parent / "configs"
Row = dict[str, Any]
KNN_GRID = [(n, d) for n in (50, 200) for d in (1.0, 0.8, 0.5, 0.3)]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mtrec_row(args: list[str], model: str, kind: str = "mtrec", note: str = "",
              out: Path | None = None) -> Row:
    """One ``mtrec train`` run (child process, same allocator as the peers) as a row;
    ``out``: a lasting bundle directory, so that a killed run resumes."""
    try:
        result = run_train(args, f"mtrec {model}", env=allocator_env(), out=out)
    except RuntimeError as err:
        return {"system": "mtrec", "model": model, "kind": kind, "error": str(err)}
    metrics = {k.removeprefix("next_item/"): v for k, v in result["test"].items()}
    epochs = result["epochs_run"]
    budget = int(args[args.index("--epochs") + 1]) if "--epochs" in args else None
    refit = result.get("refit") or {"epochs": 0, "seconds": 0.0}
    return {"system": "mtrec", "model": model, "kind": kind, "metrics": metrics,
            "epoch_budget": budget, "valid": result.get("valid", {}),
            # the model scored is the refit one: its training time counts the selection
            # (to its early stop) and the refit
            "train_seconds": round(result["train_seconds"] + refit["seconds"], 1),
            "selection_seconds": result["train_seconds"], "refit_seconds": refit["seconds"],
            "refit_epochs": refit["epochs"],
            "seconds_per_epoch": round(result["train_seconds"] / max(epochs, 1), 2),
            "epochs": epochs, "best_epoch": result["best_epoch"],
            "peak_rss_gib": result["peak_rss_gib"], "wall_seconds": result["wall_seconds"],
            "seed": result["seed"], "tasks": result["tasks"],
            "curve": result.get("curve", []), "budget": result.get("budget"),
            "capped": bool(result.get("time_capped")),
            "still_improving": bool(result.get("still_improving")),
            "command": result["command"], "allocator": _allocator(), "note": note}


def _allocator() -> str:
    return "tcmalloc" if allocator_env() else "glibc"


def prepared_for(dataset: str, protocol: str, config: Path | None = None) -> Prepared:
    overrides = {"data.dataset": dataset, "data.protocol": protocol}
    return prepare_run(load_run_config(config, **overrides))


def best_knn(data: Interactions, valid: SequenceBatcher, n_items: int,
             scope: np.ndarray | None = None) -> tuple[float, int, float]:
    """ItemKNN fitted on ``data``: the (valid NDCG@10, neighbours, recency decay) of
    :data:`KNN_GRID` that ranks ``valid``'s validation part best (the first of ties);
    ``scope``: each item's scenario on a multi-scenario catalog (ranked within it)."""
    best: tuple[float, int, float] | None = None
    for neighbors, decay in KNN_GRID:
        knn = ItemKNN(neighbors=neighbors, decay=decay).fit(data, n_items)
        value = evaluate_scorer(knn.score, valid, VALID, n_items,
                                scope=scope)["next_item/ndcg@10"]
        if best is None or value > best[0]:
            best = (value, neighbors, decay)
    assert best is not None
    return best


def baseline_rows(prepared: Prepared) -> list[Row]:
    """Popularity, and ItemKNN with its neighbours and recency decay chosen on valid."""
    batcher = SequenceBatcher(prepared.interactions, 50, {})
    n = prepared.catalog.n_items
    rows = [_fit_and_rank("Popularity", Popularity(), prepared, batcher, n, {})]
    started = time.perf_counter()
    best = best_knn(prepared.interactions, batcher, n)
    grid_seconds = time.perf_counter() - started
    row = _fit_and_rank("ItemKNN", ItemKNN(neighbors=best[1], decay=best[2]), prepared,
                        batcher, n, {"neighbors": best[1], "decay": best[2], "shrink": 10.0})
    row["note"] = (f"neighbours {{50, 200}} x recency decay {{1, .8, .5, .3}} chosen on valid "
                   f"NDCG@10 ({best[0]:.4f}; grid {grid_seconds:.0f} s)")
    return [*rows, row]


def _fit_and_rank(name: str, model: Popularity | ItemKNN, prepared: Prepared,
                  batcher: SequenceBatcher, n: int, config: dict[str, Any]) -> Row:
    started = time.perf_counter()
    model.fit(prepared.interactions, n)
    fit = time.perf_counter() - started
    metrics = evaluate_scorer(model.score, batcher, TEST, n)
    return {"system": "mtrec", "model": name, "kind": "baseline",
            "metrics": {k.removeprefix("next_item/"): v for k, v in metrics.items()},
            "train_seconds": round(fit, 2),
            "eval_seconds": round(time.perf_counter() - started - fit, 2),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "config": config, "note": ""}


def published_rows(dataset: str) -> list[Row]:
    spec = DATASETS[dataset]
    return anchors_for(data_root(None) / spec.folder.split("/")[0])


def guarded(label: str, step: Callable[[], list[Row]]) -> list[Row]:
    """Run one step; a step that raises becomes a row carrying the error text."""
    started = time.perf_counter()
    try:
        rows = step()
    except Exception as err:  # a peer that cannot run is reported, never hidden
        log(f"{label}: failed: {err}")
        return [{"system": label, "model": label, "kind": "peer",
                 "error": f"{type(err).__name__}: {err}"}]
    log(f"{label}: {len(rows)} rows in {time.perf_counter() - started:.0f} s")
    return rows
