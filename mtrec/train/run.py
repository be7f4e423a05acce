"""One training run from a config: check everything, train, evaluate, write the bundle.

Every check that can fail (dataset, tasks, scenarios, text weights, empty split) runs
before the first training step.
"""

from __future__ import annotations

import platform
import resource
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec import bundle
from mtrec.config import ConfigError, to_dict
from mtrec.data.clean import CleanConfig
from mtrec.data.imports import find_store, home
from mtrec.data.interactions import Interactions, Prepared, prepare
from mtrec.data.multi_source import keep_scenarios, merge_sources, part_protocols, source_parts
from mtrec.data.split import TEST, TRAIN, VALID, SplitConfig
from mtrec.data.store import Store
from mtrec.eval.protocols import evaluate
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender, TextTuner, build_model, task_dims
from mtrec.pretrain.init import check_encoder, initialise, keeps_start_match
from mtrec.run_config import RunConfig
from mtrec.tasks import Task, TaskError, build_tasks, check_task_names, main_metric, task_class
from mtrec.tasks.base import Labels
from mtrec.train.budget import Budget, resolve_budget, still_improving, time_capped
from mtrec.train.distributed import context, shutdown
from mtrec.train.match import fit_text_match
from mtrec.train.trainer import Trainer, TrainResult
from mtrec.train.weighting import build_weighting


def prepare_run(config: RunConfig, root: Path | None = None,
                store_dir: Path | None = None) -> Prepared:
    """Dataset, split and task labels, with every check that needs no model.  A
    multi-source dataset (``"a+b"``) prepares each part on its own, then joins them."""
    check_task_names(config.model.tasks)
    name, data = config.data.dataset, config.data
    parts = source_parts(name)
    if parts:
        prepared = merge_sources([_prepare_one(config, part, protocol, (), root, store_dir)
                                  for part, protocol in
                                  zip(parts, part_protocols(data.protocol, parts),
                                      strict=True)], data.item_ids)
        _check_scenarios(prepared, data.scenarios)
        prepared = keep_scenarios(prepared, data.scenarios)
    else:
        prepared = _prepare_one(config, name, data.protocol, data.scenarios, root, store_dir)
    if not (prepared.interactions.part == TRAIN).any():
        raise TaskError(f"{name}: the training split is empty")
    return prepared


def _prepare_one(config: RunConfig, name: str, protocol: str, scenarios: tuple[str, ...],
                 root: Path | None, store_dir: Path | None) -> Prepared:
    with Store.open(find_store(name, store_dir, root)) as store:
        _check_requirements(store, config, name, protocol)
        prepared = prepare(store, name, SplitConfig(protocol),
                           CleanConfig(kcore=config.data.kcore), scenarios)
    _check_scenarios(prepared, scenarios)
    return prepared


def store_of(config: RunConfig, store_dir: Path | None = None,
             root: Path | None = None) -> Path | None:
    """The store a run trains from (none for a multi-source dataset: one per part)."""
    name = config.data.dataset
    return None if source_parts(name) else find_store(name, store_dir, root).resolve()


def _check_requirements(store: Store, config: RunConfig, name: str, protocol: str) -> None:
    """What each task class declares it needs: timestamps, a split protocol."""
    for task in config.model.tasks:
        cls = task_class(task)
        if cls.needs_time:
            total, timed = store.query("SELECT count(*), count(ts) FROM events")[0]
            if timed < total:
                raise TaskError(f"task {task!r} needs timestamps on every event; {name} has "
                                f"{timed:,} of {total:,}")
        if cls.protocols and protocol not in cls.protocols:
            raise TaskError(f"task {task!r} needs the {' or '.join(map(repr, cls.protocols))} "
                            f"protocol: its labels look ahead in time, which only a global "
                            f"time cut keeps out of {name}'s validation and test parts")


def checked_tasks(config: RunConfig, prepared: Prepared) -> dict[str, Task]:
    """The run's tasks, built once, checked against the training part (before any text is
    encoded) and prepared from it."""
    cfg, data = config.model, prepared.interactions
    tasks = build_tasks(cfg.tasks, cfg.task_options, task_dims(cfg, prepared.catalog.n_items))
    for task in tasks.values():
        task.check(data, cfg.tasks)
    for task in tasks.values():
        task.prepare(data)
    return tasks


def _check_scenarios(prepared: Prepared, wanted: tuple[str, ...]) -> None:
    known = prepared.catalog.scenarios[1:]
    for s in wanted:
        if s not in known:
            raise ConfigError(f"unknown scenario {s!r} for {prepared.dataset}; "
                              f"known: {', '.join(known)}")


def text_vectors(config: RunConfig, prepared: Prepared, cache_dir: Path) -> torch.Tensor | None:
    """Cached text-encoder vectors ``[N + 1, T]`` (row 0 and text-less items are zero)."""
    if not (config.model.item.use_text and prepared.catalog.has_text):
        return None
    from mtrec.text.cache import EmbeddingCache
    from mtrec.text.encoder import TextEncoder

    encoder = TextEncoder.from_config(replace(config.model.text, mode="frozen"))
    texts = prepared.catalog.texts[1:]
    vectors = EmbeddingCache(cache_dir).get_or_compute(encoder, texts)
    vectors[[not t for t in texts]] = 0.0
    return torch.from_numpy(np.concatenate([np.zeros((1, vectors.shape[1]), np.float32),
                                            vectors]))


def build(config: RunConfig, prepared: Prepared, vectors: torch.Tensor | None,
          tasks: dict[str, Task] | None = None, train_parts: tuple[int, ...] = (TRAIN,)
          ) -> tuple[MultiTaskRecommender, SequenceBatcher]:
    """The model and the batcher that trains on ``train_parts``; ``tasks`` from
    :func:`checked_tasks` (built and checked here when not given; checks raise TaskError).
    A history window of 0 is taken from the data (:func:`budgeted`)."""
    config, _ = budgeted(config, prepared)
    cat, data = prepared.catalog, prepared.interactions
    tuner = None
    if vectors is not None and config.model.text.mode != "frozen":
        from mtrec.text.encoder import TextEncoder

        tuner = TextTuner(TextEncoder.from_config(config.model.text), cat.texts,
                          config.model.text.tune_items)
    if tasks is None:
        tasks = checked_tasks(config, prepared)
    if tuner is not None and vectors is not None:  # tuning rewrites the cache in place:
        vectors = vectors.clone()  # the caller's (a refit's start) stay the pretrained ones
    model = build_model(config.model, cat.n_items, len(cat.scenarios), vectors, tuner, tasks)
    model.set_item_scope(cat.item_scenarios)  # each item ranked in its scenario (if scoped)
    if vectors is not None:  # items never seen in training are served from their text alone
        seen = np.bincount(data.item[np.isin(data.part, train_parts)],
                           minlength=cat.n_items + 1) > 0
        model.item_tower.set_text_only(torch.from_numpy(np.flatnonzero(~seen[1:]) + 1))
    return model, SequenceBatcher(data, config.model.user.max_len, task_labels(model, data),
                                  train_parts=train_parts, exclude=_filtered(config, data),
                                  per_scenario=cat.scoped,
                                  reorder=(prepared.unordered_users()
                                           if config.train.shuffle_unordered else None))


def budgeted(config: RunConfig, prepared: Prepared) -> tuple[RunConfig, Budget]:
    """``config`` with the history window, epochs and patience given as 0 derived from the
    training sequences (mtrec/train/budget.py)."""
    data = prepared.interactions
    lengths = np.bincount(data.user[data.part == TRAIN])
    return resolve_budget(config, lengths[lengths > 0])


def _filtered(config: RunConfig, data: Interactions) -> np.ndarray | None:
    """Users the configured fake-user filter leaves out of training (None: no filter)."""
    if config.train.robust.user_filter == "none":
        return None
    from mtrec.train.robust import suspicious_users

    flagged = suspicious_users(data, config.train.robust)
    print(f"user filter {config.train.robust.user_filter!r}: {int(flagged.sum()):,} of "
          f"{len(flagged):,} users left out of training", file=sys.stderr, flush=True)
    return flagged


def task_labels(model: MultiTaskRecommender, data: Interactions) -> dict[str, Labels]:
    """Per-interaction labels of every task that has them (what the batcher gathers)."""
    out = {}
    for name, task in model.tasks.items():
        labels = task.labels(data)  # type: ignore[operator]
        if labels is not None:
            out[name] = labels
    return out


def train_run(config: RunConfig, out_dir: Path, root: Path | None = None,
              store_dir: Path | None = None, resume: bool = False,
              prepared: Prepared | None = None) -> dict[str, Any]:
    """Train, pick the best epoch on validation, evaluate valid and test, write the bundle
    (``prepared``: an already prepared split to train on, e.g. one with injected users)."""
    started = time.perf_counter()
    if config.train.init:  # (before the data is split and the text encoded)
        check_encoder(Path(config.train.init), config)
    if prepared is None:
        prepared = prepare_run(config, root, store_dir)
    config, budget = budgeted(config, prepared)
    if context().is_main:
        print(budget.describe(), file=sys.stderr, flush=True)
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    tasks = checked_tasks(config, prepared)
    vectors = text_vectors(config, prepared, home(store_dir) / "embeddings")
    model, batcher = build(config, prepared, vectors, tasks)
    initialise(model, config, log=context().is_main)
    weighting = build_weighting(config.weighting, model.task_names)
    metric = _main_metric(config, model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:  # a refit left by an earlier run here must not be resumed later
        shutil.rmtree(out_dir / "refit", ignore_errors=True)

    def validate(m: MultiTaskRecommender) -> dict[str, float]:
        return evaluate(m, batcher, VALID, config.train.eval_batch_size,
                        autocast=config.train.bf16, rolling=prepared.causal_parts)

    def on_valid(m: MultiTaskRecommender) -> dict[str, float]:
        _sync_text(m)
        return validate(m)

    result = Trainer(model, weighting, batcher, config.train, metric, on_valid,
                     out_dir).fit(resume)
    fusion: dict[float, float] = {}
    if context().is_main:
        _sync_text(model)  # (once for both: the cache keeps what it re-encodes)
        if not keeps_start_match(model, config):
            fusion = fit_text_match(model, batcher, VALID, config.train.eval_batch_size,
                                    autocast=config.train.bf16)
    valid = validate(model) if context().is_main else {}
    refit: TrainResult | None = None
    if config.train.refit and result.best_epoch == 0:  # the pre-trained start won
        if context().is_main:
            print("no epoch beat the pre-trained start on validation: it is kept as it is (no "
                  "refit)", file=sys.stderr, flush=True)
    elif config.train.refit:
        lags = None if model.text_match is None else model.text_match.lag_weight.detach().clone()
        del model  # (the selected model is not kept in memory during the refit)
        model, refit = _refit(config, prepared, vectors, metric, result.best_epoch, out_dir,
                              resume, result.frozen_at)
        if model.text_match is not None and lags is not None:
            model.text_match.lag_weight.copy_(lags)
    tuned = None  # a fine-tuned encoder: re-encode the catalog once, save it with the bundle
    if model.text_tuner is not None:
        model.text_tuner.refresh_all(model.item_tower.text_vectors)
        tuned, model.text_tuner = model.text_tuner.encoder, None
    ctx = context()
    if not ctx.is_main:
        shutdown(ctx)
        return {}
    metrics = {
        "valid": valid,
        "test": evaluate(model, batcher, TEST, config.train.eval_batch_size,
                         autocast=config.train.bf16, rolling=prepared.causal_parts),
    }
    summary = _summary(config, prepared, result, metric, time.perf_counter() - started)
    if result.frozen_at:  # per-task early stopping: each frozen task's own best epoch
        summary["frozen_at"] = result.frozen_at
    if refit is not None:
        summary["refit"] = {"epochs": refit.epochs_run, "seconds": round(refit.seconds, 1),
                            **({"frozen_at": refit.frozen_at} if refit.frozen_at else {})}
    summary["curve"] = _curve(result, metric)
    summary["budget"] = {"max_len": budget.max_len, "epochs": budget.epochs,
                         "patience": budget.patience, "steps_per_epoch": budget.steps_per_epoch,
                         "from_data": list(budget.derived)}
    if summary["still_improving"]:
        print(f"stopped at the {config.train.epochs}-epoch cap while still improving (best "
              f"epoch {result.best_epoch}, within its patience of {config.train.patience}): "
              "more epochs would likely help (train.epochs, or 0 for a budget from the data)",
              file=sys.stderr, flush=True)
    if fusion:
        summary["text_match"] = {"scale": _scale(model), "valid_ndcg@10_by_scale": fusion}
    bundle.save(out_dir, config, prepared, model, {**summary, **metrics},
                store=store_of(config, store_dir, root),
                text_encoder=tuned)
    shutdown(ctx)
    return {**summary, **metrics}


def _refit(config: RunConfig, prepared: Prepared, vectors: torch.Tensor | None, metric: str,
           epochs: int, out_dir: Path, resume: bool = False,
           frozen_at: dict[str, int] | None = None
           ) -> tuple[MultiTaskRecommender, TrainResult]:
    """Retrain from scratch on train + valid for the epoch count chosen on valid (the
    reported valid metrics stay those of the selected model; test is untouched).  With
    ``resume`` a killed refit continues from its own last checkpoint.  ``max_minutes`` bounds
    the selection only: the refit runs its epochs (fewer would end the schedule early).  A
    task frozen in the selection (``frozen_at``: its best epoch) is frozen at that epoch here
    too."""
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    # (items first seen in valid train their own ID rows here)
    model, batcher = build(config, prepared, vectors, train_parts=(TRAIN, VALID))
    initialise(model, config, log=False)
    weighting = build_weighting(config.weighting, model.task_names)
    train_config = replace(config.train, epochs=max(1, epochs), patience=10**6, max_minutes=0.0)
    result = Trainer(model, weighting, batcher, train_config, metric, None,
                     out_dir / "refit", freeze_at=frozen_at or {}).fit(resume)
    return model, result


def _sync_text(model: MultiTaskRecommender) -> None:
    """While fine-tuning text, re-encode the whole cache with the current encoder (and keep
    it), so validation sees its vectors and every item follows it once an epoch (between
    validations only the rows a step re-encodes do)."""
    if model.text_tuner is not None:
        model.text_tuner.refresh_all(model.item_tower.text_vectors)


def _main_metric(config: RunConfig, model: MultiTaskRecommender) -> str:
    """``auto``: the task's main metric for one task, ``mean`` (over tasks) for several."""
    if config.train.metric == "mean" or (config.train.metric == "auto"
                                         and len(model.task_names) > 1):
        return "mean"
    if config.train.metric != "auto":
        task = config.train.metric.split("/", 1)[0]
        if "/" not in config.train.metric or task not in model.task_names:
            raise ConfigError(f"train.metric {config.train.metric!r} must be 'task/metric' "
                              f"for one of this run's tasks ({', '.join(model.task_names)}), "
                              "e.g. next_item/ndcg@10, rating/rmse, like/auc")
        return config.train.metric
    return main_metric(model.task_names[0])


def _curve(result: TrainResult, metric: str) -> list[list[float]]:
    """``[epoch, training seconds, valid NDCG@10 (or the selection metric)]`` per epoch: the
    time-to-accuracy curve."""
    key = "valid/next_item/ndcg@10"
    out = []
    for row in result.history:
        value = row.get(key, row.get(f"valid/{metric}"))
        if value is not None:
            out.append([int(row["epoch"]), float(row.get("seconds", 0.0)), float(value)])
    return out


def _scale(model: MultiTaskRecommender) -> float:
    match = model.text_match
    return float(match.lag_weight[0]) if match is not None else 0.0


def _summary(config: RunConfig, prepared: Prepared, result: TrainResult, metric: str,
             seconds: float) -> dict[str, Any]:
    return {
        "dataset": prepared.dataset, "protocol": prepared.protocol,
        "tasks": list(config.model.tasks), "seed": config.train.seed,
        "selection_metric": metric, "best_epoch": result.best_epoch,
        "best_valid": result.best_value, "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "time_capped": time_capped(result.best_epoch, result.epochs_run, result.seconds,
                                   config.train),
        "still_improving": still_improving(result.best_epoch, result.epochs_run,
                                           config.train.epochs, config.train.patience,
                                           result.stopped_early),
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
                   f"{torch.get_num_threads()} threads".strip(),
        "config": to_dict(config),
    }
