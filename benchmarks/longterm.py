"""Long-term engagement at a global time cut: mtrec's joint model against the baselines a
data scientist would reach for, on RetailRocket and Taobao (issue: long-term engagement).

    python -m benchmarks longterm                      # both datasets, seeds 0, 1, 2
    python -m benchmarks longterm --datasets retailrocket --seeds 0
    python -m benchmarks longterm --datasets taobao-ub --no-joint   # all but the joint model

Writes benchmarks/results/longterm_<dataset>.json and .md.

Protocol (mtrec/policy/labels.py): the test cut is the end of the data minus the longest
horizon; every user active before it is a test example, labelled by what follows it
(return within each horizon, active days and purchases in the longest, days to the next
event, censored at the end).  Training examples come from earlier cuts, one step apart,
whose label windows close by the test cut; a tenth of their users is held out for early
stopping.  Systems, each scored by the same metric functions on the same test users:

- mtrec (``VARIANTS``): the engagement head on the user state of a multi-task model (next
  item, with a sampled softmax, and purchase, trained in the same loop on the events before
  the test cut; the engagement loss does not train the user tower) and the pre-cut
  features, the counts from the features only; and the same head on the features alone.
- LightGBM on the same pre-cut features (benchmarks/longterm_runner.py), trained on the
  same training examples, early-stopped on the same validation users.
- BG/NBD and Pareto/NBD (``lifetimes``) fitted on each test user's pre-cut active days;
  their return probability within t days is ``P(alive) * (1 - P(no visit in t | alive))``
  (closed form for BG/NBD, Monte Carlo over the posterior for Pareto/NBD), their active
  days the conditional expectation, their purchases that times the user's purchases per
  active day (shrunk towards the population's).

Each system's rows are cached as it finishes (benchmarks/results/runs/longterm-<dataset>);
a rerun reuses them.  LightGBM and lifetimes run in their own virtualenv
(.mtrec/peers/longterm).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare import guarded
from benchmarks.machine import describe
from benchmarks.peers.venv import PEERS, PeerSpec, print_rows, run_runner
from benchmarks.runs import cached_run, split_fingerprint
from mtrec.data.interactions import Prepared
from mtrec.policy.engagement import EngagementHeadConfig
from mtrec.policy.fit import EngagementTrainConfig, engagement_metrics
from mtrec.policy.labels import EngagementConfig
from mtrec.policy.run import EngagementSplit, prepare_engagement, run_engagement
from mtrec.run_config import load_run_config

RESULTS = Path(__file__).parent / "results"
PROTOCOLS = {
    "retailrocket": EngagementConfig(return_days=(7, 30), train_cuts=8, cut_step_days=7),
    "taobao-ub": EngagementConfig(return_days=(1, 3), train_cuts=3, cut_step_days=1),
}
TASKS = ("next_item", "purchase")
# mtrec's two heads (README, "Long-term engagement"): on the joint model's user state
# (trained by next item and purchase in the same loop; the engagement loss does not reach
# it) and the features, the counts from the features only; and on the features alone.
VARIANTS = {
    "mtrec joint (state + features)": (
        EngagementHeadConfig(train_state=False, counts_from_state=False),
        EngagementTrainConfig(patience=6, epochs=60)),
    "mtrec head on features only": (
        EngagementHeadConfig(use_state=False),
        EngagementTrainConfig(joint=False, patience=6, epochs=100)),
}
SEEDS = (0, 1, 2)
# The lifetimes / LightGBM environment.  Registered here, not in benchmarks/peers/venv.py:
# a change to benchmarks/peers/*.py changes the RecBole runs' fingerprint (it would
# restart their multi-hour resumable fits); move it there when none is in flight.
LONGTERM = PeerSpec("longterm", (), ("lifetimes==0.11.3", "lightgbm==4.7.0",
                                     "scikit-learn==1.9.1", "numpy==2.4.6", "pandas==3.1.1",
                                     "scipy==1.17.1", "autograd==1.9.1"),
                    "lifetimes, lightgbm.sklearn",
                    ("lifetimes", "lightgbm", "scikit-learn", "numpy", "pandas", "scipy"))
Row = dict[str, Any]


def _mtrec_row(prepared: Prepared, split: EngagementSplit, eng: EngagementConfig,
               head: EngagementHeadConfig, train: EngagementTrainConfig) -> list[Row]:
    config = load_run_config(**{"data.dataset": prepared.dataset,
                                "model.tasks": list(TASKS), "model.item.use_text": False,
                                "model.task_options.next_item_loss": "sampled"})
    out = run_engagement(config, prepared, split, eng, head, train)
    return [{"seed": train.seed, "metrics": out["metrics"], "best_epochs": out["best_epochs"],
             "epochs_run": out["epochs_run"], "train_s": out["fit_seconds"],
             "max_len": out["max_len"], "parameters": out["parameters"]}]


def _export(split: EngagementSplit, eng: EngagementConfig, folder: Path) -> Path:
    """The examples and features the peers read (no labels of the test part)."""
    path = folder / "examples.npz"
    arrays: dict[str, Any] = {"features": np.array(split.features),
                              "return_days": np.array(eng.return_days),
                              "count_days": np.array(eng.count_days)}
    for part in ("train", "valid", "test"):
        ex, x = getattr(split, part)
        arrays[f"{part}_x"] = x
        if part != "test":
            for name in ("returned", "active_days", "purchases"):
                arrays[f"{part}_{name}"] = getattr(ex, name)
    np.savez(path, **arrays)
    return path


def _peer_rows(split: EngagementSplit, eng: EngagementConfig, seeds: tuple[int, ...]
               ) -> list[Row]:
    PEERS.setdefault("longterm", LONGTERM)
    with tempfile.TemporaryDirectory() as tmp:
        examples = _export(split, eng, Path(tmp))
        result = run_runner("longterm", "../longterm_runner.py",
                            ["--examples", str(examples), "--seeds", ",".join(map(str, seeds)),
                             "--predictions", str(Path(tmp) / "pred")],
                            Path(tmp) / "result.json")
        rows = []
        for system in result["systems"]:
            if "error" in system:
                rows.append({**system, "versions": result["versions"]})
                continue
            preds = dict(np.load(Path(tmp) / "pred" / system["file"]))
            rows.append({**{k: v for k, v in system.items() if k != "file"},
                         "metrics": engagement_metrics(split.test[0], preds, eng.return_days),
                         "versions": result["versions"]})
    return rows


def _summary(system: str, rows: list[Row]) -> Row:
    """Mean and spread over seeds of every metric; a metric that is not finite in some run
    (a model whose predictions overflowed) is left out and named under ``not_finite``."""
    names = rows[0]["metrics"].keys()
    finite = [m for m in names if all(math.isfinite(r["metrics"][m]) for r in rows)]
    return {"system": system, "seeds": [r.get("seed") for r in rows],
            "mean": {m: statistics.fmean(r["metrics"][m] for r in rows) for m in finite},
            "sd": {m: statistics.pstdev([r["metrics"][m] for r in rows]) for m in finite},
            "not_finite": [m for m in names if m not in finite],
            "train_s": statistics.fmean(r.get("train_s", 0.0) for r in rows), "runs": rows}


def compare(dataset: str, seeds: tuple[int, ...], joint: bool = True) -> Row:
    """Every system on ``dataset``: the head on features first, then the peers, then the
    (slow) joint model; each cached as it finishes (``joint=False``: not run, its cached
    seeds reported)."""
    started = time.perf_counter()
    eng = PROTOCOLS[dataset]
    prepared, split = prepare_engagement(dataset, eng)
    machine = describe(("torch",))
    runner = hashlib.sha256((Path(__file__).parent / "longterm_runner.py").read_bytes())
    base = {"dataset": dataset, "split": split_fingerprint(prepared), "protocol": asdict(eng),
            "code": 2, "runner": runner.hexdigest()[:16], "env": list(LONGTERM.pins)}
    name = f"longterm-{dataset}"
    systems: dict[str, list[Row]] = {}

    def variant(system: str, cached_only: bool = False) -> list[Row]:
        head, train = VARIANTS[system]
        rows: list[Row] = []
        for seed in seeds:  # each seed cached as it finishes
            seeded = replace(train, seed=seed)
            rows += cached_run(name, f"{system} seed {seed}",
                               {**base, "head": asdict(head), "train": asdict(seeded)},
                               partial(_mtrec_row, prepared, split, eng, head, seeded),
                               cached_only=cached_only)
        return rows

    features, joint_name = "mtrec head on features only", "mtrec joint (state + features)"
    systems[features] = variant(features)
    for row in cached_run(name, "peers", {**base, "seeds": list(seeds)}, partial(
            guarded, "longterm peers", partial(_peer_rows, split, eng, seeds))):
        systems.setdefault(row.get("system", "peers"), []).append(row)
    systems[joint_name] = variant(joint_name, cached_only=not joint)
    done = {s: [r for r in rows if "metrics" in r] for s, rows in systems.items()}
    return {"dataset": dataset, "protocol": asdict(eng), "split": split.describe(),
            "features": list(split.features), "machine": machine,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "systems": [_summary(s, rows) for s, rows in done.items() if rows],
            "errors": [r for rows in systems.values() for r in rows if "error" in r],
            "pending": [s for s, rows in systems.items() if len(done[s]) < len(rows)]}


def render(results: list[Row]) -> str:
    lines = []
    for res in results:
        days = res["protocol"]["return_days"]
        cols = [*(f"return_{d}d/auc" for d in days), f"return_{days[-1]}d/logloss",
                "active_days/rmse", "purchases/rmse", "time_to_return/cindex"]
        cut = datetime.fromtimestamp(res["split"]["test_cut"], UTC).strftime("%Y-%m-%d %H:%M")
        lines += [f"**{res['dataset']}** (test cut {cut} UTC, "
                  f"{res['split']['examples']['test']:,} test users, "
                  f"{res['split']['examples']['train']:,} training examples; test return rate "
                  + " / ".join(f"{r:.3f}" for r in res["split"]["test_return_rate"])
                  + " per horizon; mean ± sd over seeds)", "",
                  "| system | " + " | ".join(cols) + " | train s |",
                  "|---|" + "---:|" * (len(cols) + 1)]
        for s in res["systems"]:
            cells = [f"{s['mean'][c]:.4f} ± {s['sd'][c]:.4f}" if c in s["mean"]
                     else "not finite" for c in cols]
            runs = len(s["runs"])
            label = "deterministic" if s["seeds"] == [None] else f"{runs} seed{'s' * (runs > 1)}"
            lines.append(f"| {s['system']} ({label}) | " + " | ".join(cells)
                         + f" | {s['train_s']:.0f} |")
        if res.get("pending"):
            lines.append(f"\nNot finished yet: {', '.join(res['pending'])}.")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks longterm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(PROTOCOLS),
                        help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)),
                        help="comma-separated seeds of mtrec and LightGBM")
    parser.add_argument("--no-joint", action="store_true",
                        help="do not train the (slow) joint model: its cached seeds only")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    for dataset in datasets:  # each written as it finishes
        result = compare(dataset, seeds, not args.no_joint)
        out = RESULTS / f"longterm_{dataset}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(render([result]))
        print_rows([{k: v for k, v in result.items() if k != "systems"}], None)
        print(render([result]))


if __name__ == "__main__":
    main()
