"""Fit one Surprise rating model on a group written by ``benchmarks/export_tabular.py`` (it
needs a ``rating`` label column) and write its predicted ratings for the valid and test rows.
Runs inside the surprise virtualenv (never imports mtrec):

    python surprise_runner.py --manifest DIR/rating-like.manifest.json --algo SVD --seed 0 \\
        --pred-dir W --out W/result.json

The model is fitted on the train rows only, with Surprise's defaults (``SVD``: 100 factors,
20 epochs; ``SVDpp``: 20 factors, 20 epochs; ``random_state`` = seed).  Predictions are
Surprise's ``predict(...).est``: clipped to the training rating scale, and the global mean
for a user or item unseen in training (counted as ``impossible``).  Surprise has no
validation-based stopping, so the valid rows are only predicted.

surprise is imported inside functions, so the helpers here can be imported (and tested)
without it; only the standard library and numpy are used besides.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# The script's folder holds benchmarks/peers/surprise.py, which would shadow the package.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

ALGOS = ("SVD", "SVDpp")
PARTS = {"train": 0, "valid": 1, "test": 2}


def read_ratings(manifest: Path) -> dict[str, list[tuple[str, str, float]]]:
    """Per part, ``(user_id, item_id, rating)`` of every row, in file order."""
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    if not any(c["column"] == "rating" for c in meta["labels"]):
        raise SystemExit(f"{manifest}: no 'rating' label column")
    out: dict[str, list[tuple[str, str, float]]] = {p: [] for p in PARTS}
    names = {code: name for name, code in PARTS.items()}
    with (manifest.parent / meta["csv"]).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            part = names[int(row["part"])]
            out[part].append((row["user_id"], row["item_id"], float(row["rating"])))
    return out


def rating_scale(train: list[tuple[str, str, float]]) -> tuple[float, float]:
    """The (lowest, highest) training rating.

    >>> rating_scale([("1", "2", 3.0), ("1", "3", 5.0), ("2", "2", 1.0)])
    (1.0, 5.0)
    """
    values = [r for _, _, r in train]
    return min(values), max(values)


def unseen_counts(train: list[tuple[str, str, float]],
                  rows: list[tuple[str, str, float]]) -> dict[str, int]:
    """How many ``rows`` have a user, or an item, that no training row has.

    >>> unseen_counts([("1", "a", 3.0)], [("1", "b", 4.0), ("2", "b", 1.0), ("1", "a", 5.0)])
    {'user': 1, 'item': 2}
    """
    users, items = {u for u, _, _ in train}, {i for _, i, _ in train}
    return {"user": sum(u not in users for u, _, _ in rows),
            "item": sum(i not in items for _, i, _ in rows)}


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


def write_predictions(path: Path, values: list[float]) -> None:
    """A one-column CSV (``rating``) of predicted ratings, float64 precision."""
    np.savetxt(path, np.asarray(values, np.float64).reshape(-1, 1), delimiter=",",
               header="rating", comments="", fmt="%.17g")


def make_algo(name: str, seed: int) -> Any:
    from surprise import SVD, SVDpp

    if name == "SVD":
        return SVD(random_state=seed)
    if name == "SVDpp":
        return SVDpp(random_state=seed)
    raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGOS)}")


def fit(name: str, seed: int, train: list[tuple[str, str, float]]) -> Any:
    from surprise import Dataset, Reader

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows(train)
        reader = Reader(line_format="user item rating", sep=",",
                        rating_scale=rating_scale(train))
        trainset = Dataset.load_from_file(str(path), reader=reader).build_full_trainset()
    algo = make_algo(name, seed)
    algo.fit(trainset)
    return algo


def run(args: argparse.Namespace) -> dict[str, Any]:
    ratings = read_ratings(args.manifest)
    started = time.perf_counter()
    algo = fit(args.algo, args.seed, ratings["train"])
    train_seconds = time.perf_counter() - started
    tick = time.perf_counter()
    predictions, impossible, unseen = {}, {}, {}
    for part in ("valid", "test"):
        preds = [algo.predict(u, i) for u, i, _ in ratings[part]]
        impossible[part] = sum(bool(p.details.get("was_impossible")) for p in preds)
        unseen[part] = unseen_counts(ratings["train"], ratings[part])
        path = args.pred_dir / f"{args.algo}.{part}.csv"
        write_predictions(path, [float(p.est) for p in preds])
        predictions[part] = str(path)
    params = {k: getattr(algo, k) for k in ("n_factors", "n_epochs", "lr_bu", "reg_bu",
                                             "init_mean", "init_std_dev") if hasattr(algo, k)}
    return {
        "model": args.algo, "train_seconds": round(train_seconds, 2),
        "predict_seconds": round(time.perf_counter() - tick, 2),
        "epochs": params.get("n_epochs"), "best_epoch": None,
        **peak_rss(),
        "predictions": predictions, "impossible": impossible,
        "unseen": unseen,
        "config": {"algo": args.algo, "params": params, "random_state": args.seed,
                   "rating_scale": list(rating_scale(ratings["train"])),
                   "train_rows": len(ratings["train"]), "fit_on": "train part only",
                   "clip": True},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--algo", choices=ALGOS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pred-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.pred_dir.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(run(args), indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
