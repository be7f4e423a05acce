"""Evaluate a saved bundle on its dataset, after checking the data is the one it was trained on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from mtrec import bundle
from mtrec.config import ConfigError, from_dict
from mtrec.data.split import TEST, VALID
from mtrec.data.store import StoreError
from mtrec.eval.protocols import evaluate
from mtrec.models.batches import SequenceBatcher
from mtrec.recommender import Recommender
from mtrec.run_config import RunConfig
from mtrec.train.run import prepare_run

PARTS = {"valid": VALID, "test": TEST}


def evaluate_bundle(path: Path, split: str = "test", dataset: str | None = None,
                    root: Path | None = None, store_dir: Path | None = None) -> dict[str, Any]:
    """Metrics of the bundle at ``path`` on ``split`` of its dataset (or ``dataset``)."""
    if split not in PARTS:
        raise ConfigError(f"--split must be valid or test, got {split!r}")
    rec = Recommender.load(path)
    if "pretrain" in rec.meta and dataset is None:
        raise ConfigError(f"{path} is a pre-trained model (`mtrec pretrain` on "
                          f"{rec.meta['dataset']}): it has no split of its own to evaluate; "
                          "start a model from it with `mtrec train --init`, or give --dataset")
    run = dict(rec.meta["run"])
    name = dataset or rec.meta["dataset"]
    config = from_dict(RunConfig, {**run, "data": {**run["data"], "dataset": name}},
                       f"{path / 'config.json'}: run")
    try:
        prepared = prepare_run(config, root, store_dir)
    except StoreError:
        trained_on = rec.meta.get("store")  # where the bundle was trained from
        if dataset is not None or not trained_on or not Path(trained_on).is_file():
            raise
        prepared = prepare_run(replace(config, data=replace(config.data, dataset=trained_on)),
                               root, store_dir)
    bundle.check_fits(rec.meta, prepared.catalog, f"dataset {name!r}")
    labels = {n: t.labels(prepared.interactions) for n, t in rec.model.pointwise_tasks().items()}
    batcher = SequenceBatcher(prepared.interactions, rec.model.user_tower.config.max_len, labels,
                              per_scenario=rec.catalog.scoped)
    # in the precision training evaluated in, so the figures are the ones it reported
    metrics = evaluate(rec.model, batcher, PARTS[split], autocast=config.train.bf16,
                       rolling=prepared.causal_parts)
    out = {"bundle": str(path), "dataset": name, "protocol": rec.meta["protocol"],
           "split": split, "metrics": metrics}
    if split == "valid" and config.train.refit:
        out["note"] = ("this bundle was retrained on train + valid (train.refit), so its valid "
                       "figures are not held out; the selection's valid figures are in its "
                       "metrics.json")
    return out
