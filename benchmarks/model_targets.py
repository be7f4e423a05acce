"""The model targets of issue 3, each one command; results go to benchmarks/results/.

    python -m benchmarks.model_targets beauty          # default model, text on and off
    python -m benchmarks.model_targets scientific
    python -m benchmarks.model_targets ml100k          # joint vs single-task, 3 seeds
    python -m benchmarks.model_targets ml100k-joint    # re-run the joint model only
    python -m benchmarks.model_targets jdata           # buy/cart/collect joint vs single

Every run is ``mtrec train ... --json`` in a child process, so the wall time and peak RSS
(``ru_maxrss`` of the child) are what a user of the CLI gets.  Each result records the
dataset, protocol, seed, wall time and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"


def run_train(args: list[str], label: str, env: dict[str, str] | None = None,
              out: Path | None = None) -> dict[str, Any]:
    """One ``mtrec train`` in a child process (``env`` added to the environment): its JSON,
    wall seconds and peak RSS.  ``out``: a lasting bundle directory, resumed from its last
    checkpoint when a killed run left one (else a temporary one)."""
    with tempfile.TemporaryDirectory() as tmp:
        where = out or Path(tmp)
        resume = ["--resume"] if (where / "checkpoint" / "last").is_dir() else []
        cmd = [sys.executable, "-m", "mtrec.cli", "train", "--out", str(where), "--json",
               *resume, *args]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, **(env or {})})
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    result.pop("config", None)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far; the child's own figure
    # (peak_rss_gib in its JSON) is the one to report.
    result.update(label=label, command="mtrec train " + " ".join(args),
                  wall_seconds=round(wall, 1), children_max_rss_gib=round(peak / 2**20, 2))
    print(f"{label}: {wall:.0f} s, test {_headline(result)}", file=sys.stderr, flush=True)
    return result


def _headline(result: dict[str, Any]) -> str:
    test = result.get("test", {})
    keys = [k for k in ("next_item/ndcg@10", "next_item/recall@10", "next_item/cold_ndcg@10")
            if k in test] or list(test)[:4]
    return ", ".join(f"{k} {test[k]:.4f}" for k in keys)


def beauty() -> list[dict[str, Any]]:
    return [run_train(["--dataset", "amazon-beauty"], "beauty: default (text on, refit)"),
            run_train(["--dataset", "amazon-beauty", "--no-text"], "beauty: text off (ID only)"),
            run_train(["--dataset", "amazon-beauty", "--no-refit"],
                      "beauty: default without refit (the model selected on valid)")]


def scientific() -> list[dict[str, Any]]:
    base = ["--dataset", "amazon-scientific", "--protocol", "source"]
    return [run_train(base, "scientific: default (refit), source split"),
            run_train([*base, "--no-refit"], "scientific: default without refit")]


ML_TASKS = ("next_item", "rating", "like", "engagement")


ML_BASE = ["--dataset", "ml-100k", "--protocol", "temporal", "--config",
           str(Path(__file__).parent / "configs" / "ml100k.toml")]


def _ml_joint(seed: int) -> dict[str, Any]:
    return run_train([*ML_BASE, "--tasks", ",".join(ML_TASKS), "--seed", str(seed)],
                     f"ml100k: joint seed {seed}")


def ml100k(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    out = []
    for seed in seeds:
        out.append(_ml_joint(seed))
        for task in ML_TASKS:
            out.append(run_train([*ML_BASE, "--tasks", task, "--seed", str(seed)],
                                 f"ml100k: single {task} seed {seed}"))
    return out


def ml100k_joint(seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    """Re-run only the joint model; the single-task runs are kept from model_ml100k.json."""
    previous = json.loads((RESULTS / "model_ml100k.json").read_text())["runs"]
    return [_ml_joint(seed) for seed in seeds] + [r for r in previous
                                                  if r["label"].startswith("ml100k: single")]


JD_TASKS = ("purchase", "cart", "collect")


JD_BASE = ["--dataset", "jdata", "--protocol", "pair", "--config",
           str(Path(__file__).parent / "configs" / "jdata.toml")]


def jdata() -> list[dict[str, Any]]:
    out = [run_train([*JD_BASE, "--tasks", ",".join(JD_TASKS)], "jdata: joint")]
    out += [run_train([*JD_BASE, "--tasks", t], f"jdata: single {t}") for t in JD_TASKS]
    return out


def jdata_joint() -> list[dict[str, Any]]:
    """Re-run only the joint model; the single-task runs are kept from model_jdata.json."""
    previous = json.loads((RESULTS / "model_jdata.json").read_text())["runs"]
    return [run_train([*JD_BASE, "--tasks", ",".join(JD_TASKS)], "jdata: joint")] + [
        r for r in previous if r["label"].startswith("jdata: single")]


EXPERIMENTS = {"beauty": beauty, "scientific": scientific, "ml100k": ml100k,
               "ml100k-joint": ml100k_joint, "jdata": jdata, "jdata-joint": jdata_joint}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    args = parser.parse_args()
    runs = EXPERIMENTS[args.experiment]()
    RESULTS.mkdir(exist_ok=True)
    record = {"experiment": args.experiment, "machine": describe(),
              "command": f"python -m benchmarks.model_targets {args.experiment}", "runs": runs}
    path = RESULTS / f"model_{args.experiment.split('-')[0]}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
