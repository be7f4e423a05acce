"""Train one RecBole model on files written by ``benchmarks/export_recbole.py``; score the
test rows with mtrec's masking.  Runs inside the RecBole virtualenv (never imports mtrec):

    python recbole_runner.py --model SASRec --data-path DIR --dataset NAME \\
        --history DIR/NAME.test_history.jsonl --workdir W --epochs 2 --stopping-step 3 \\
        --seed 0 --ranks W/ranks.npy --out W/result.json

Masking, as mtrec's: every catalog item is ranked; the items of the user's whole visible
history are excluded; a target in that history is a miss (rank ``MISS``); ties count against
the target.  RecBole's own ``trainer.evaluate(test)`` (its built-in metric, which does not
mask a sequential model's history) is recorded for reference.

recbole, torch and pandas are imported inside functions, so the ranking function can be
imported (and tested) without them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MISS = 1 << 40  # the rank of a masked target, as mtrec.eval.protocols.MISS
SEQUENTIAL = ("SASRec", "BERT4Rec", "GRU4Rec")
SCORE_BATCH = 256


def masked_target_ranks(scores: np.ndarray, targets: np.ndarray,
                        histories: Sequence[np.ndarray], pad: int | None = 0) -> np.ndarray:
    """0-based rank of each row's ``targets`` column among all columns but ``pad`` and the
    row's ``histories`` columns: the number of those scoring >= the target (pessimistic
    ties; NaN never ranks ahead).  A target in its history or scored NaN gets ``MISS``.

    >>> masked_target_ranks(np.array([[9.0, 0.1, 0.9, 0.5]]), np.array([3]), [np.array([2])])
    array([0])
    """
    scores = np.asarray(scores, dtype=np.float64)
    b, n = scores.shape
    if targets.shape != (b,) or len(histories) != b:
        raise ValueError(f"{b} score rows, {targets.shape} targets, {len(histories)} histories")
    exclude = np.zeros((b, n), dtype=bool)
    if pad is not None:
        exclude[:, pad] = True
    for row, cols in enumerate(histories):
        exclude[row, np.asarray(cols, dtype=np.int64)] = True
    rows = np.arange(b)
    target_score = scores[rows, targets]
    ahead = (scores >= target_score[:, None]) & ~exclude
    ahead[rows, targets] = False
    ranks = ahead.sum(axis=1, dtype=np.int64)
    ranks[exclude[rows, targets] | np.isnan(target_score)] = MISS
    return ranks


def read_history(path: Path) -> list[dict[str, Any]]:
    """The exporter's test histories (tokens), one entry per test row, in order."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def file_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip()) - 1


def build_config(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """The config_dict given to RecBole (model defaults fill the rest)."""
    sequential = model in SEQUENTIAL
    cfg: dict[str, Any] = {
        "data_path": str(args.data_path), "checkpoint_dir": str(args.workdir / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"] if sequential
                     else ["user_id", "item_id"], "item": ["item_id"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": args.epochs, "stopping_step": args.stopping_step, "seed": args.seed,
        "reproducibility": True, "worker": 0, "gpu_id": "", "use_gpu": False,
        "state": "WARNING", "show_progress": False, "embedding_size": 64,
    }
    if sequential:
        cfg.update({"alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": 50,
                    "loss_type": "CE", "train_neg_sample_args": None, "hidden_size": 64})
    cfg.update(json.loads(args.config or "{}"))
    return cfg


def load_data(model: str, cfg: dict[str, Any], dataset: str, args: argparse.Namespace
              ) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    """RecBole's config, full dataset and dataloaders, checked against the files: no row
    dropped and the item vocabulary is the catalog plus padding."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    config = Config(model=model, dataset=dataset, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    full = create_dataset(config)
    folder = Path(args.data_path) / dataset
    catalog = file_rows(folder / f"{dataset}.item")
    if full.item_num != catalog + 1:
        raise RuntimeError(f"RecBole's item vocabulary has {full.item_num} ids; the catalog "
                           f"has {catalog} items + padding")
    loaders = data_preparation(config, full)
    for part, loader in zip(("train", "valid", "test"), loaders, strict=True):
        want, got = file_rows(folder / f"{dataset}.{part}.inter"), len(loader._dataset)
        if want != got:
            raise RuntimeError(f"RecBole kept {got} of the {want} rows of {dataset}.{part}.inter")
    return config, full, loaders


class WallCap(Exception):
    """Raised after a validation once the fit has run past ``--max-seconds``."""


class FitState:
    """What a killed fit needs to resume, in one file (``DIR/resume.pth``, replaced atomically)
    written after every validation: model, optimizer, epoch, RecBole's patience counter and
    best score, a copy of the best weights, the RNG states (global ones and the training
    loader's generator, so later epochs shuffle as an uninterrupted fit would) and this
    runner's curves with the fit seconds spent so far."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "resume.pth"

    def save(self, trainer: Any, stats: dict[str, Any], loader: Any = None,
             improved: bool = False) -> None:
        import random

        import torch

        previous = self._load() if not improved else None
        if not improved and previous is None:
            raise RuntimeError(f"{self.path}: no saved best weights to carry over")
        best = (_copy_state(trainer.model.state_dict()) if improved
                else previous["best_state"])  # type: ignore[index]
        generator = getattr(loader, "generator", None)
        state = {
            "epoch": stats["valid_epochs"][-1] - 1, "cur_step": trainer.cur_step,
            "best_valid_score": trainer.best_valid_score,
            "best_valid_result": _plain(trainer.best_valid_result),
            "state_dict": trainer.model.state_dict(),
            "other_parameter": trainer.model.other_parameter(),
            "optimizer": trainer.optimizer.state_dict(), "best_state": best,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.get_rng_state(),
                    "loader": None if generator is None else generator.get_state()},
            "stats": stats}
        tmp = self.path.with_name("resume.pth.partial")
        torch.save(state, tmp)
        tmp.replace(self.path)

    def _load(self) -> dict[str, Any] | None:
        import torch

        if not self.path.is_file():
            return None
        state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=False)
        return state

    def restore(self, trainer: Any, loader: Any = None) -> dict[str, Any] | None:
        """Load a saved state into ``trainer`` (and ``loader``'s generator) and rewrite the
        best checkpoint RecBole will load from the saved copy; the saved stats, or None."""
        import random

        import torch

        state = self._load()
        if state is None:
            return None
        trainer.model.load_state_dict(state["best_state"])
        trainer._save_checkpoint(state["epoch"], verbose=False)  # the best file, rewritten
        trainer.model.load_state_dict(state["state_dict"])
        trainer.model.load_other_parameter(state.get("other_parameter"))
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.start_epoch, trainer.cur_step = state["epoch"] + 1, state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = state["best_valid_result"]
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        generator = getattr(loader, "generator", None)
        if generator is not None and rng["loader"] is not None:
            generator.set_state(rng["loader"])
        return dict(state["stats"])


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in state.items()}


def train(config: Any, train_data: Any, valid_data: Any,
          max_seconds: float = 0.0, resume: Path | None = None
          ) -> tuple[Any, Any, dict[str, Any]]:
    """Fit with RecBole's trainer (best-on-valid checkpoint); timings and valid scores.  Past
    ``max_seconds`` (0: none) of fit wall time the fit stops after its next validation (the
    best checkpoint so far is the model).  With ``resume`` (a folder) the fit saves its state
    after every validation and, when the folder holds one, continues from it (the time
    between the kill and the resume is not counted)."""
    from recbole.utils import get_model, get_trainer, init_seed

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return model, trainer, fit(trainer, train_data, valid_data, max_seconds, resume)


def fit(trainer: Any, train_data: Any, valid_data: Any, max_seconds: float = 0.0,
        resume: Path | None = None) -> dict[str, Any]:
    """``trainer.fit`` (RecBole's loop) with timings, the wall cap and the resumable state of
    :func:`train`; the fit's statistics."""
    state = FitState(resume) if resume is not None else None
    stats: dict[str, Any] = {"epoch_seconds": [], "valid_scores": [], "valid_epochs": [],
                             "valid_seconds": [], "resumed_after": [], "capped": False,
                             "done": False}
    restored = state.restore(trainer, train_data) if state is not None else None
    if restored is not None:
        stats = {**stats, **restored}
        # (past the epoch cap RecBole's fit would save the last model over the best one)
        stats["done"] = stats["done"] or trainer.start_epoch >= trainer.epochs
        stats["resumed_after"].append(trainer.start_epoch)
        print(f"resumed after epoch {trainer.start_epoch}", file=sys.stderr, flush=True)
    elapsed = float(stats["valid_seconds"][-1]) if stats["valid_seconds"] else 0.0
    inner = trainer._train_epoch

    def timed_epoch(*a: Any, **kw: Any) -> Any:
        began = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            stats["epoch_seconds"].append(time.perf_counter() - began)

    trainer._train_epoch = timed_epoch
    started = time.perf_counter() - elapsed

    def after_validation(epoch: int, score: float) -> None:
        stats["valid_scores"].append(float(score))
        stats["valid_epochs"].append(int(epoch) + 1)
        seconds = time.perf_counter() - started
        stats["valid_seconds"].append(round(seconds, 2))
        capped = 0 < max_seconds < seconds
        stats["done"] = capped or trainer.cur_step > trainer.stopping_step
        stats["capped"] = capped
        if state is not None:  # (RecBole resets its patience counter on an improvement)
            state.save(trainer, stats, train_data, improved=trainer.cur_step == 0)
        if capped:
            raise WallCap

    if not stats["done"]:  # (a resumed fit that had already stopped trains no further)
        with contextlib.suppress(WallCap):  # the cap stops the fit after a validation
            trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False,
                        callback_fn=after_validation)
    return _fit_stats(stats, trainer, time.perf_counter() - started)


def _fit_stats(stats: dict[str, Any], trainer: Any, fit_wall: float) -> dict[str, Any]:
    best, best_epoch = -np.inf, -1
    for epoch, score in zip(stats["valid_epochs"], stats["valid_scores"], strict=True):
        if score >= best:  # RecBole keeps the last of equal bests
            best, best_epoch = score, epoch
    seconds = stats["epoch_seconds"]
    return {"train_seconds": round(sum(seconds), 2), "fit_wall_seconds": round(fit_wall, 2),
            "epoch_seconds": [round(s, 2) for s in seconds],
            "seconds_per_epoch": round(sum(seconds) / max(1, len(seconds)), 2),
            "epochs": len(seconds), "best_epoch": best_epoch,
            "valid_scores": stats["valid_scores"], "valid_epochs": stats["valid_epochs"],
            "valid_seconds": stats["valid_seconds"], "capped": stats["capped"],
            "resumed_after": stats["resumed_after"], "best_valid": trainer.best_valid_result}


def score_test(model: Any, test_dataset: Any, full: Any, history: list[dict[str, Any]],
               sequential: bool) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the test rows, in the order of the exporter's history file: masked as mtrec
    masks, and masked as RecBole's own evaluation masks (a cross-check of the scoring)."""
    import torch

    uid, iid = full.uid_field, full.iid_field
    inter = test_dataset.inter_feat
    users = full.id2token(uid, inter[uid].numpy())
    row_of = {str(u): k for k, u in enumerate(users)}
    if len(row_of) != len(users) or len(users) != len(history):
        raise RuntimeError(f"test rows: {len(users)} in RecBole ({len(row_of)} users), "
                           f"{len(history)} in the history file")
    order = np.array([row_of[h["user"]] for h in history], dtype=np.int64)
    targets = full.token2id(iid, [h["target"] for h in history])
    loaded = inter[iid].numpy()[order]
    if not np.array_equal(loaded, targets):
        bad = int(np.flatnonzero(loaded != targets)[0])
        raise RuntimeError(f"test row {bad}: RecBole's target differs from the history file's")
    hist_ids = [full.token2id(iid, h["history"]) if h["history"] else np.zeros(0, np.int64)
                for h in history]
    # RecBole's own masking: none for sequential models; for general ones the items the user
    # had before the test part, except the target itself.
    own_style = ([np.zeros(0, np.int64)] * len(hist_ids) if sequential else
                 [h[h != t] for h, t in zip(hist_ids, targets, strict=True)])
    model.eval()
    ranks, own = [], []
    with torch.no_grad():
        for start in range(0, len(order), SCORE_BATCH):
            idx = torch.from_numpy(order[start:start + SCORE_BATCH])
            scores = model.full_sort_predict(inter[idx]).view(len(idx), -1).float().numpy()
            batch = targets[start:start + len(idx)]
            ranks.append(masked_target_ranks(scores, batch, hist_ids[start:start + len(idx)]))
            own.append(masked_target_ranks(scores, batch, own_style[start:start + len(idx)]))
    empty = np.zeros(0, np.int64)
    return (np.concatenate(ranks) if ranks else empty,
            np.concatenate(own) if own else empty)


def top_k(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """recall@k and ndcg@k of one target per row (for the cross-check with RecBole's own)."""
    hit = ranks < k
    gain = np.where(hit, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
    return {f"recall@{k}": float(hit.mean()) if len(ranks) else 0.0,
            f"ndcg@{k}": float(gain.mean()) if len(ranks) else 0.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's own checkpoints
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)  # RecBole writes log_tensorboard/ into the working directory
    sequential = args.model in SEQUENTIAL
    dataset = args.dataset if sequential else f"{args.dataset}_pairs"
    cfg = build_config(args.model, args)
    started = time.perf_counter()
    config, full, (train_data, valid_data, test_data) = load_data(args.model, cfg, dataset, args)
    load_seconds = time.perf_counter() - started
    model, trainer, stats = train(config, train_data, valid_data, args.max_seconds,
                                  args.workdir if args.resume else None)
    own = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    started = time.perf_counter()
    ranks, own_ranks = score_test(model, test_data._dataset, full, read_history(args.history),
                              sequential)
    np.save(args.ranks, ranks)
    return {
        "model": args.model, "dataset": dataset, "seed": args.seed, **stats,
        "load_seconds": round(load_seconds, 2),
        "score_seconds": round(time.perf_counter() - started, 2),
        "recbole_own_test": {k: float(v) for k, v in (own or {}).items()},
        "own_style_test": top_k(own_ranks),  # should reproduce recbole_own_test
        "test_rows": len(ranks), "item_vocabulary": int(full.item_num),
        "threads": torch.get_num_threads(),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "config_dict": cfg, "config": _plain(config.final_config_dict),
    }


def _plain(value: Any) -> Any:
    """A JSON-able copy of RecBole's final config (enums, devices and the like as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-path", type=Path, required=True)
    parser.add_argument("--dataset", required=True, help="the sequential dataset's name")
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--ranks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--stopping-step", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="0: the machine's cores")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="stop after the validation past this fit wall time (0: none)")
    parser.add_argument("--config", default="", help="JSON overriding the config_dict")
    parser.add_argument("--resume", action="store_true",
                        help="save the fit's state after every validation in --workdir and "
                             "continue from a state found there")
    args = parser.parse_args(argv)
    for name in ("data_path", "history", "workdir", "ranks", "out"):
        setattr(args, name, getattr(args, name).resolve())
    return args


def _drop_own_dir() -> None:
    """Run as a script, this folder is sys.path[0], and its ``recbole.py`` (mtrec's driver)
    would shadow the recbole package."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]


def main() -> None:
    _drop_own_dir()
    args = parse()
    result = run(args)
    args.out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("model", "epochs", "seconds_per_epoch")}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
