"""Train one torch-rechub multi-task model on a group written by ``benchmarks/export_tabular.py``
and write its predictions for the valid and test rows.  Runs inside the rechub virtualenv
(never imports mtrec):

    python rechub_runner.py --manifest DIR/purchase-cart-collect.manifest.json --model MMoE \\
        --epochs 8 --patience 2 --seed 0 --pred-dir W --out W/result.json [--esmm cart,purchase]

Training is torch-rechub's own ``MTLTrainer.train_one_epoch`` (its losses: BCE for
classification, MSE for regression, the mean over tasks; ESMM: its CTR + CTCVR losses) with
Adam.  After every epoch the valid rows are predicted and the epoch is scored as mtrec's
trainer scores a multi-task epoch (``--select`` names the outputs that count: the mean over
them of validation AUC - 0.5, or 1 / RMSE, as a share of each one's best so far); the best
epoch's weights are kept, and training stops after ``patience`` epochs without improvement or
at ``epochs``.  (``MTLTrainer.fit`` keeps the best weights only when it stops early, so the
loop is driven here.)

ESMM (``--esmm CLICK,CONVERSION``): CTR is trained on the CLICK label and CTCVR on
CLICK x CONVERSION, as torch-rechub's Ali-CCP example builds ``ctcvr_label``; the prediction
columns are ``CLICK`` (pCTR), ``CLICK_CONVERSION`` (pCTCVR) and ``CONVERSION_given_CLICK``
(pCVR).

torch, torch_rechub and pandas are imported inside functions, so the helpers here can be
imported (and tested) without them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# The script's folder holds modules named like packages (surprise.py, venv.py): drop it.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

MODELS = ("MMoE", "PLE", "ESMM", "SharedBottom")
PARTS = {"train": 0, "valid": 1, "test": 2}
MIN_DELTA = 0.0002  # mtrec's TrainConfig.min_delta: a smaller gain in the selection is noise
#: Sizes of torch-rechub's examples/ranking/run_ali_ccp_multi_task.py (embeddings at 16,
#: the size its ESMM example uses, for every model).
HPARAMS: dict[str, Any] = {
    "embed_dim": 16, "batch_size": 1024, "lr": 1e-3, "weight_decay": 1e-4,
    "MMoE": {"n_expert": 8, "expert_params": {"dims": [16]}, "tower_dims": [8]},
    "PLE": {"n_level": 1, "n_expert_specific": 2, "n_expert_shared": 1,
            "expert_params": {"dims": [16]}, "tower_dims": [8]},
    "SharedBottom": {"bottom_params": {"dims": [117]}, "tower_dims": [8]},
    "ESMM": {"cvr_params": {"dims": [16, 8]}, "ctr_params": {"dims": [16, 8]}},
}


def auc_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, average ranks for ties); NaN with a single class.

    >>> auc_score(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y = np.asarray(labels, np.float64) > 0.5
    s = np.asarray(scores, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s))
    start = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[start[1:], len(s)]
    for a, b in zip(start, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def outputs(labels: list[dict[str, Any]], esmm: tuple[str, str] | None,
            select: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The model's output columns, in order: CSV name, task type, what it is trained on
    (label column names, multiplied) and whether it counts for epoch selection (those named
    in ``select``; all but ESMM's pCVR when ``select`` is empty).

    >>> [o["name"] for o in outputs([{"column": "cart", "kind": "binary"}], None)]
    ['cart']
    >>> [o["name"] for o in outputs([], ("cart", "purchase"))]
    ['purchase_given_cart', 'cart', 'cart_purchase']
    """
    if esmm is None:
        outs = [{"name": c["column"], "type": "classification" if c["kind"] == "binary"
                 else "regression", "from": [c["column"]]} for c in labels]
    else:
        click, conv = esmm
        outs = [{"name": f"{conv}_given_{click}", "type": "classification", "from": [conv]},
                {"name": click, "type": "classification", "from": [click]},
                {"name": f"{click}_{conv}", "type": "classification", "from": [click, conv]}]
    unknown = set(select) - {o["name"] for o in outs}
    if unknown:
        raise ValueError(f"--select names no output: {sorted(unknown)}")
    for k, o in enumerate(outs):
        o["select"] = o["name"] in select if select else not (esmm and k == 0)
    return outs


def esmm_arg(text: str) -> tuple[str, str] | None:
    """``"click,conversion"`` as a pair (``""``: None).

    >>> esmm_arg("cart,purchase"), esmm_arg("")
    (('cart', 'purchase'), None)
    """
    if not text:
        return None
    click, conv = text.split(",")
    return click, conv


def targets(columns: dict[str, np.ndarray], outs: list[dict[str, Any]]) -> np.ndarray:
    """``[n, len(outs)]`` training targets (a product of label columns for CTCVR)."""
    return np.stack([np.prod([columns[c] for c in o["from"]], axis=0) for o in outs], 1)


def valid_metrics(y: np.ndarray, preds: np.ndarray,
                  outs: list[dict[str, Any]]) -> dict[str, float]:
    """Each selecting output's validation metric: AUC (classification) or RMSE."""
    out = {}
    for k, o in enumerate(outs):
        if o["select"]:
            out[o["name"]] = (auc_score(y[:, k], preds[:, k]) if o["type"] == "classification"
                              else float(np.sqrt(np.mean((y[:, k] - preds[:, k]) ** 2))))
    return out


def _skill(kind: str, value: float) -> float:
    return value - 0.5 if kind == "classification" else 1.0 / max(value, 1e-12)


def mean_best_share(epoch: dict[str, float], history: list[dict[str, float]],
                    kinds: dict[str, str]) -> float:
    """mtrec's multi-task selection score: the mean over outputs of this epoch's skill (AUC
    - 0.5, or 1 / RMSE) as a share of the output's best skill over ``history``.

    >>> h = [{"a": 0.70, "r": 1.0}, {"a": 0.60, "r": 0.5}]
    >>> k = {"a": "classification", "r": "regression"}
    >>> mean_best_share(h[0], h, k), mean_best_share(h[1], h, k)
    (0.75, 0.75)
    """
    shares = []
    for name, value in epoch.items():
        best = max(_skill(kinds[name], past[name]) for past in history)
        if best > 0 and np.isfinite(best) and np.isfinite(value):
            shares.append(_skill(kinds[name], value) / best)
    return float(np.mean(shares)) if shares else float("nan")


def select_epoch(history: list[dict[str, float]], kinds: dict[str, str], best_epoch: int,
                 min_delta: float = MIN_DELTA) -> bool:
    """Whether the last epoch of ``history`` beats ``best_epoch`` (1-based; 0 = none yet) by
    more than ``min_delta``, the best re-scored against the same per-output bests.

    >>> k = {"a": "classification"}
    >>> select_epoch([{"a": 0.7}], k, 0), select_epoch([{"a": 0.7}, {"a": 0.8}], k, 1)
    (True, True)
    >>> select_epoch([{"a": 0.7}, {"a": 0.6}], k, 1)
    False
    """
    if best_epoch == 0:
        return True
    last = mean_best_share(history[-1], history, kinds)
    best = mean_best_share(history[best_epoch - 1], history, kinds)
    return bool(last - best > min_delta)


def parse_sequence(cells: Any, width: int) -> np.ndarray:
    """``|``-joined codes as an ``[n, width]`` int64 array.

    >>> parse_sequence(["3|1|0", "2|0|0"], 3).tolist()
    [[3, 1, 0], [2, 0, 0]]
    """
    rows = [[int(v) for v in str(cell).split("|")] for cell in cells]
    if any(len(r) != width for r in rows):
        raise ValueError(f"a sequence cell does not have {width} codes")
    return np.array(rows, np.int64).reshape(len(rows), width)


def peak_rss() -> dict[str, float]:
    """This process's peak RSS in GiB: ``peak_rss_gib`` from ``VmHWM`` (this program only),
    and ``ru_maxrss_gib`` from ``getrusage``, which on Linux keeps the high-water mark of the
    process that forked it (the caller's size when it is larger)."""
    out = {"ru_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    try:
        status = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        return {"peak_rss_gib": out["ru_maxrss_gib"], **out}
    hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    out["peak_rss_gib"] = round(int(hwm[0]) / 2**20, 3) if hwm else out["ru_maxrss_gib"]
    return out


def write_predictions(path: Path, names: list[str], preds: np.ndarray) -> None:
    """A CSV with a header of ``names`` and one line per example (float64 precision)."""
    np.savetxt(path, np.asarray(preds, np.float64).reshape(len(preds), len(names)),
               delimiter=",", header=",".join(names), comments="", fmt="%.17g")


def load_parts(manifest: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The manifest and, per part, every feature and label column as arrays."""
    import pandas as pd

    meta = json.loads(manifest.read_text(encoding="utf-8"))
    seq = [f["name"] for f in meta["features"] if f["kind"] == "sequence"]
    frame = pd.read_csv(manifest.parent / meta["csv"], dtype={n: str for n in seq})
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, code in PARTS.items():
        sub = frame[frame["part"] == code]
        cols: dict[str, np.ndarray] = {}
        for f in meta["features"]:
            cols[f["name"]] = (parse_sequence(sub[f["name"]], f["max_len"])
                               if f["kind"] == "sequence" else sub[f["name"]].to_numpy(np.int64))
        for c in meta["labels"]:
            cols[c["column"]] = sub[c["column"]].to_numpy(np.float64)
        parts[name] = cols
    return meta, parts


def build_model(name: str, meta: dict[str, Any], outs: list[dict[str, Any]]) -> Any:
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.multi_task import ESMM, MMOE, PLE, SharedBottom

    dim, hp = HPARAMS["embed_dim"], HPARAMS[name]

    def feature(f: dict[str, Any]) -> Any:
        if f["kind"] == "sequence":
            return SequenceFeature(f["name"], f["vocab"], dim, pooling="mean", padding_idx=0)
        return SparseFeature(f["name"], f["vocab"], dim)

    feats = [feature(f) for f in meta["features"]]
    types = [o["type"] for o in outs]
    towers = [{"dims": list(hp.get("tower_dims", []))} for _ in outs]
    if name == "MMoE":
        return MMOE(feats, types, hp["n_expert"], hp["expert_params"], towers)
    if name == "PLE":
        return PLE(feats, types, hp["n_level"], hp["n_expert_specific"],
                   hp["n_expert_shared"], hp["expert_params"], towers)
    if name == "SharedBottom":
        return SharedBottom(feats, types, hp["bottom_params"], towers)
    if name == "ESMM":
        owners = [f["owner"] for f in meta["features"]]
        return ESMM([f for f, o in zip(feats, owners, strict=True) if o == "user"],
                    [f for f, o in zip(feats, owners, strict=True) if o == "item"],
                    hp["cvr_params"], hp["ctr_params"])
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def _loaders(parts: dict[str, dict[str, np.ndarray]], names: list[str],
             y_train: np.ndarray, batch_size: int) -> tuple[Any, Any, Any]:
    from torch.utils.data import DataLoader
    from torch_rechub.utils.data import PredictDataset, TorchDataset

    x = {p: {n: parts[p][n] for n in names} for p in parts}
    train = DataLoader(TorchDataset(x["train"], y_train), batch_size=batch_size, shuffle=True)
    valid = DataLoader(PredictDataset(x["valid"]), batch_size=batch_size, shuffle=False)
    test = DataLoader(PredictDataset(x["test"]), batch_size=batch_size, shuffle=False)
    return train, valid, test


def fit(model: Any, outs: list[dict[str, Any]], parts: dict[str, dict[str, np.ndarray]],
        meta: dict[str, Any], epochs: int, patience: int,
        workdir: Path) -> tuple[Any, dict[str, Any]]:
    """Train with early stopping on the validation selection score; the best weights."""
    import torch
    from torch_rechub.trainers import MTLTrainer

    names = [f["name"] for f in meta["features"]]
    train, valid, _ = _loaders(parts, names, targets(parts["train"], outs),
                               HPARAMS["batch_size"])
    y_valid = targets(parts["valid"], outs)
    trainer = MTLTrainer(model, [o["type"] for o in outs], optimizer_fn=torch.optim.Adam,
                         optimizer_params={"lr": HPARAMS["lr"],
                                           "weight_decay": HPARAMS["weight_decay"]},
                         n_epoch=epochs, earlystop_patience=patience, device="cpu",
                         model_path=str(workdir))
    kinds = {o["name"]: o["type"] for o in outs if o["select"]}
    history: list[dict[str, Any]] = []
    scores: list[dict[str, float]] = []
    best_epoch, best_state, waited = 0, copy.deepcopy(model.state_dict()), 0
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        losses = trainer.train_one_epoch(train)
        preds = np.asarray(trainer.predict(model, valid), np.float64)
        scores.append(valid_metrics(y_valid, preds, outs))
        improved = select_epoch(scores, kinds, best_epoch)
        history.append({"epoch": epoch, "valid": scores[-1],
                        "train_loss": [float(v) for v in losses],
                        "seconds": round(time.perf_counter() - tick, 2)})
        print(f"epoch {epoch}: valid {scores[-1]}{' *' if improved else ''}",
              file=sys.stderr, flush=True)
        if improved:
            best_epoch, best_state, waited = epoch, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    return trainer, {"train_seconds": round(time.perf_counter() - started, 2),
                     "epochs": len(history), "best_epoch": best_epoch,
                     "best_valid": scores[best_epoch - 1], "history": history}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta, parts = load_parts(args.manifest)
    esmm = esmm_arg(args.esmm)
    if (args.model == "ESMM") != (esmm is not None):
        raise SystemExit("--esmm CLICK,CONVERSION is needed for ESMM and only for it")
    outs = outputs(meta["labels"], esmm, tuple(filter(None, args.select.split(","))))
    model = build_model(args.model, meta, outs)
    trainer, summary = fit(model, outs, parts, meta, args.epochs, args.patience,
                           args.pred_dir)
    names = [f["name"] for f in meta["features"]]
    _, valid, test = _loaders(parts, names, targets(parts["train"], outs), 4096)
    tick = time.perf_counter()
    predictions = {}
    for part, loader in (("valid", valid), ("test", test)):
        path = args.pred_dir / f"{args.model}.{part}.csv"
        write_predictions(path, [o["name"] for o in outs],
                          np.asarray(trainer.predict(model, loader), np.float64))
        predictions[part] = str(path)
    return {
        "model": args.model, **summary,
        "predict_seconds": round(time.perf_counter() - tick, 2),
        **peak_rss(),
        "predictions": predictions, "outputs": outs,
        "config": {"hparams": {k: v for k, v in HPARAMS.items() if k not in MODELS},
                   "model_params": HPARAMS[args.model], "epochs_max": args.epochs,
                   "patience": args.patience, "optimizer": "Adam",
                   "selection": "mtrec's multi-task rule: mean over the selecting outputs "
                                "of validation skill (AUC - 0.5, or 1 / RMSE) as a share of "
                                f"its best so far, min_delta {MIN_DELTA}",
                   "selecting_outputs": [o["name"] for o in outs if o["select"]],
                   "loss": "torch-rechub MTLTrainer (BCE / MSE, mean over tasks; ESMM: "
                           "CTR + CTCVR)",
                   "torch_threads": torch.get_num_threads(),
                   "parameters": int(sum(p.numel() for p in model.parameters())),
                   "train_rows": len(parts["train"][names[0]])},
    }


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--esmm", default="", help="CLICK,CONVERSION label columns")
    parser.add_argument("--select", default="",
                        help="outputs whose validation metrics pick the epoch (default: all)")
    parser.add_argument("--pred-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.pred_dir.mkdir(parents=True, exist_ok=True)
    result = run(args)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
