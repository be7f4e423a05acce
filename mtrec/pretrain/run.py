"""``mtrec pretrain``: the text-based model trained on several datasets with no task labels.

The datasets are split by the config's protocol (``data.protocol``) and merged
(:mod:`mtrec.pretrain.merge`); the model reads items through their text alone (ID
embeddings cannot carry over to another catalog) and learns the objectives of
:mod:`mtrec.pretrain.objectives`.  Early stopping, checkpoints, resume and the progress bar
are the trainer's; the result is a bundle that ``mtrec train --init DIR`` starts from.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec import bundle
from mtrec.config import ConfigError
from mtrec.data.imports import home
from mtrec.data.interactions import Prepared
from mtrec.data.split import VALID
from mtrec.eval.protocols import evaluate
from mtrec.pretrain.init import check_encoder, initialise
from mtrec.pretrain.merge import check_text, merge
from mtrec.pretrain.objectives import ObjectiveConfig, PretrainLoss
from mtrec.run_config import RunConfig
from mtrec.train.match import fit_text_match
from mtrec.train.run import budgeted, build, checked_tasks, prepare_run, text_vectors
from mtrec.train.trainer import Trainer
from mtrec.train.weighting import FixedWeighting

METRIC = "next_item/ndcg@10"


def pretrain_config(config: RunConfig, datasets: list[str]) -> RunConfig:
    """``config`` as pre-training runs it: next-item only, items through their text alone,
    no refit (the selected model is what later runs start from)."""
    if not config.model.item.use_text:
        raise ConfigError("pre-training learns from item text: model.item.use_text must be "
                          "true (drop --no-text)")
    if config.model.text.mode != "frozen":
        raise ConfigError(f"pre-training reads cached text vectors: model.text.mode must be "
                          f"'frozen', got {config.model.text.mode!r}")
    model = replace(config.model, tasks=("next_item",),
                    item=replace(config.model.item, use_id=False))
    return replace(config, model=model, train=replace(config.train, refit=False),
                   data=replace(config.data, dataset="+".join(datasets)))


def prepare_all(config: RunConfig, datasets: list[str], root: Path | None = None,
                store_dir: Path | None = None) -> Prepared:
    """Every dataset split by ``config.data``'s protocol, checked for text, merged."""
    if not datasets or not all(datasets):
        raise ConfigError(f"--datasets needs comma-separated dataset names, got "
                          f"{','.join(datasets)!r}")
    if len(set(datasets)) != len(datasets):
        raise ConfigError(f"--datasets names a dataset twice: {','.join(datasets)}")
    parts = [prepare_run(replace(config, data=replace(config.data, dataset=name)), root,
                         store_dir) for name in datasets]
    check_text(parts)
    return merge(parts)


def pretrain_run(config: RunConfig, datasets: list[str], out: Path,
                 objectives: ObjectiveConfig | None = None, root: Path | None = None,
                 store_dir: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Pre-train on ``datasets`` and write the bundle to ``out``; returns its summary."""
    started = time.perf_counter()
    objectives = objectives or ObjectiveConfig()
    datasets = [d.strip() for d in datasets]
    config = pretrain_config(config, datasets)
    if config.train.init:
        check_encoder(Path(config.train.init), config)
    prepared = prepare_all(config, datasets, root, store_dir)
    config, budget = budgeted(config, prepared)
    print(f"pre-training on {prepared.dataset}: {prepared.catalog.n_items:,} items, "
          f"{len(prepared.catalog.user_ids):,} users; {budget.describe()}",
          file=sys.stderr, flush=True)
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    vectors = text_vectors(config, prepared, home(store_dir) / "embeddings")
    model, batcher = build(config, prepared, vectors, checked_tasks(config, prepared))
    initialise(model, config)
    weights = objectives.weights()
    out.mkdir(parents=True, exist_ok=True)

    def validate(m: Any) -> dict[str, float]:
        return evaluate(m, batcher, VALID, config.train.eval_batch_size,
                        autocast=config.train.bf16, rolling=prepared.causal_parts)

    result = Trainer(model, FixedWeighting(list(weights), list(weights.values())), batcher,
                     config.train, METRIC, validate, out,
                     objective=PretrainLoss(model, objectives)).fit(resume)
    fit_text_match(model, batcher, VALID, config.train.eval_batch_size,
                   autocast=config.train.bf16)
    summary = {
        "datasets": datasets, "items": prepared.catalog.n_items,
        "users": len(prepared.catalog.user_ids), "objectives": asdict(objectives),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early, "train_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "valid": validate(model), "seed": config.train.seed,
    }
    bundle.save(out, config, prepared, model, summary, extra={"pretrain": {
        "datasets": datasets, "objectives": asdict(objectives)}})
    return summary
