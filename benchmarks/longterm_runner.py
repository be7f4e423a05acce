"""Runs in the ``longterm`` virtualenv (lifetimes, LightGBM); never imports mtrec.

Reads the examples benchmarks/longterm.py exported (pre-cut features of the training,
validation and test users; labels of the training and validation users only) and writes,
per system, its test predictions (``returned [n, R]``, ``active_days``, ``purchases``,
``risk``: higher = sooner back) to ``--predictions``; mtrec scores them.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

MC_SAMPLES = 2000  # posterior draws per user for Pareto/NBD's P(no visit in t | alive)


def _col(data: dict[str, Any], part: str, name: str) -> np.ndarray:
    names = [str(n) for n in data["features"]]
    return np.asarray(data[f"{part}_x"][:, names.index(name)], dtype=np.float64)


def lightgbm(data: dict[str, Any], seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One classifier per return horizon and one L2 regressor per count, each early-stopped
    on the validation users (50 rounds without a gain, at most 5,000)."""
    import lightgbm as lgb

    params = {"learning_rate": 0.03, "num_leaves": 31, "min_child_samples": 20,
              "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
              "n_estimators": 5000, "random_state": seed, "verbose": -1, "n_jobs": 2}
    stop = [lgb.early_stopping(50, verbose=False)]
    x, xv, xt = data["train_x"], data["valid_x"], data["test_x"]
    out: dict[str, np.ndarray] = {}
    rounds: dict[str, int] = {}
    probs = []
    for k, days in enumerate(data["return_days"]):
        clf = lgb.LGBMClassifier(objective="binary", **params)
        clf.fit(x, data["train_returned"][:, k], eval_set=[(xv, data["valid_returned"][:, k])],
                callbacks=stop)
        probs.append(clf.predict_proba(xt)[:, 1])
        rounds[f"return_{days}d"] = int(clf.best_iteration_)
    out["returned"] = np.stack(probs, 1)
    for name in ("active_days", "purchases"):
        reg = lgb.LGBMRegressor(objective="regression", **params)
        reg.fit(x, data[f"train_{name}"], eval_set=[(xv, data[f"valid_{name}"])],
                callbacks=stop)
        out[name] = np.clip(reg.predict(xt), 0, None)
        rounds[name] = int(reg.best_iteration_)
    out["risk"] = out["returned"][:, 0]
    return out, {"best_iterations": rounds}


def _summaries(data: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """lifetimes' (frequency, recency, T) in days from the test users' pre-cut features:
    a visit is an active day."""
    t = _col(data, "test", "tenure_days")
    freq = _col(data, "test", "active_days") - 1
    rec = np.where(freq > 0, t - _col(data, "test", "recency_days"), 0.0)
    return freq, np.clip(rec, 0, t), t


def _fit(kind: str, f: np.ndarray, r: np.ndarray, t: np.ndarray) -> tuple[Any, float]:
    """The model with the smallest penalizer (of 0.001, 0.01, 0.1, 1) that converges."""
    from lifetimes import BetaGeoFitter, ParetoNBDFitter
    from lifetimes.utils import ConvergenceError

    cls = BetaGeoFitter if kind == "bgnbd" else ParetoNBDFitter
    for penalizer in (0.001, 0.01, 0.1, 1.0):
        try:
            return cls(penalizer_coef=penalizer).fit(f, r, t), penalizer
        except ConvergenceError:
            continue
    raise RuntimeError(f"{cls.__name__} did not converge with any penalizer up to 1")


def _p_no_visit(model: Any, kind: str, f: np.ndarray, t_cal: np.ndarray, t: float,
                rng: np.random.Generator) -> np.ndarray:
    """P(no visit in the next ``t`` days | alive at the cut), from the posterior."""
    p = model.params_
    if kind == "bgnbd":  # no dropout without a purchase: the Gamma posterior's e^{-lambda t}
        return ((p["alpha"] + t_cal) / (p["alpha"] + t_cal + t)) ** (p["r"] + f)
    out = np.empty(len(f))
    for lo in range(0, len(f), 2048):
        sl = slice(lo, lo + 2048)
        lam = rng.gamma(p["r"] + f[sl, None], 1.0 / (p["alpha"] + t_cal[sl, None]),
                        (len(out[sl]), MC_SAMPLES))
        mu = rng.gamma(p["s"], 1.0 / (p["beta"] + t_cal[sl, None]), (len(out[sl]), MC_SAMPLES))
        gone = np.exp(-(lam + mu) * t)
        out[sl] = (mu / (lam + mu) * (1 - gone) + gone).mean(1)
    return out


def btyd(data: dict[str, Any], kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """BG/NBD or Pareto/NBD fitted on the test users' pre-cut active days.  Expected
    purchases: expected active days times the user's purchases per active day, shrunk
    towards the population's by one day of it."""
    rng = np.random.default_rng(0)
    f, r, t_cal = _summaries(data)
    model, penalizer = _fit(kind, f, r, t_cal)
    alive = model.conditional_probability_alive(f, r, t_cal)
    days = [float(d) for d in data["return_days"]]
    returned = np.stack([alive * (1 - _p_no_visit(model, kind, f, t_cal, d, rng))
                         for d in days], 1)
    horizon = float(data["count_days"])  # the labels' count horizon
    visits = model.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t_cal)
    bought, active = _col(data, "test", "purchase_count"), f + 1
    rate = (bought + bought.sum() / active.sum()) / (active + 1)
    out = {"returned": returned, "active_days": visits, "purchases": visits * rate,
           "risk": returned[:, 0]}
    params = {k: float(v) for k, v in model.params_.items()}
    return ({k: np.asarray(v, dtype=np.float64) for k, v in out.items()},
            {"params": params, "penalizer": penalizer})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=Path, required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # lifetimes' optimiser probes log(0)
    data = dict(np.load(args.examples))
    args.predictions.mkdir(parents=True, exist_ok=True)
    systems = []
    jobs: list[tuple[str, int | None, Any]] = [
        ("BG/NBD", None, lambda s: btyd(data, "bgnbd")),
        ("Pareto/NBD", None, lambda s: btyd(data, "pareto")),
        *(("LightGBM", int(s), lambda s: lightgbm(data, s)) for s in args.seeds.split(","))]
    for system, seed, fit in jobs:
        started = time.perf_counter()
        row: dict[str, Any] = {"system": system, "seed": seed}
        try:
            preds, extra = fit(seed)
        except Exception as exc:  # a peer that fails gives its error text, not a crash
            systems.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        name = f"{system.replace('/', '').lower()}-{seed}.npz"
        np.savez(args.predictions / name, **preds)
        systems.append({**row, **extra, "file": name,
                        "train_s": round(time.perf_counter() - started, 2)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.write_text(json.dumps({"systems": systems, "peak_rss_mb": round(peak)}, indent=2))


if __name__ == "__main__":
    main()
