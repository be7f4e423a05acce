"""Which remedy for negative transfer helps where: the joint model with and without PCGrad
and per-task early stopping, against one single-task model per task.

    python -m benchmarks remedies [--datasets ml100k,jdata] [--seeds 0,1,2]

Protocol: the splits and configs of the ML-100k and JData comparisons
(``benchmarks/configs/*.toml``: ML-100k temporal with uncertainty weighting, JData pair).
Systems: ``single-task T`` (the model trained on task T alone), ``joint`` (every task, the
dataset's weighting), ``joint + pcgrad`` (``train.conflict = "pcgrad"``), ``joint + task
stop`` (``train.task_patience = 2``: a task's head frozen two epochs after its own best) and
``joint + both``.  Every model selects its epoch on validation and refits on train + valid
as the comparisons do.  Each task is scored by its main test metric.  Each (dataset, system,
seed) is cached under ``benchmarks/results/runs/remedies``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.compare import CONFIGS
from benchmarks.runs import (
    Row,
    cached_run,
    config_fingerprint,
    result_record,
    short_hash,
    split_fingerprint,
)
from benchmarks.scenarios import delta_plots, interval
from mtrec.config import to_dict
from mtrec.eval.protocols import lower_is_better
from mtrec.run_config import RunConfig, load_run_config
from mtrec.tasks import main_metric
from mtrec.train.run import prepare_run, train_run

DATASETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ml100k": ("ml-100k", "temporal", ("next_item", "rating", "like", "engagement")),
    "jdata": ("jdata", "pair", ("purchase", "cart", "collect")),
}
REMEDIES: dict[str, dict[str, Any]] = {
    "joint": {}, "joint + pcgrad": {"train.conflict": "pcgrad"},
    "joint + task stop": {"train.task_patience": 2},
    "joint + both": {"train.conflict": "pcgrad", "train.task_patience": 2}}
RESULTS = Path(__file__).parent / "results"
SKILL = "skill over single-task: AUC / NDCG difference, minus the RMSE difference (95 % CI)"
BENCH = Path(".mtrec/bench/remedies")
PROTOCOL = 1


def run_config(name: str, seed: int, tasks: tuple[str, ...], extra: dict[str, Any]
               ) -> RunConfig:
    dataset, protocol, _ = DATASETS[name]
    return load_run_config(CONFIGS / f"{name}.toml", **{
        "data.dataset": dataset, "data.protocol": protocol, "model.tasks": list(tasks),
        "train.seed": seed, **extra})


def run_dataset(name: str, seeds: list[int], cached_only: bool = False) -> list[Row]:
    tasks = DATASETS[name][2]
    split = split_fingerprint(prepare_run(run_config(name, 0, tasks, {})))
    jobs = [(system, seed, tasks, extra) for seed in seeds
            for system, extra in REMEDIES.items()]
    jobs += [(f"single-task {t}", seed, (t,), {}) for seed in seeds for t in tasks]
    rows: list[Row] = []
    for system, seed, chosen, extra in jobs:
        config = run_config(name, seed, chosen, extra)
        key = {"dataset": name, "system": system, "seed": seed, "split": split,
               "protocol": PROTOCOL, "config": config_fingerprint(to_dict(config)),
               # 2: the refit freezes each task where the selection did (1: it did not)
               **({"task_stop": 2} if "train.task_patience" in extra else {})}
        label = f"{name}-{system}-s{seed}"

        def run(config: RunConfig = config, label: str = label, system: str = system,
                seed: int = seed, key: dict[str, Any] = key) -> list[Row]:
            started = time.perf_counter()
            out = train_run(config, BENCH / f"{label}-{short_hash(key)}")
            test = out["test"]
            return [{"dataset": name, "system": system, "seed": seed,
                     "best_epoch": out["best_epoch"], "seconds":
                     round(time.perf_counter() - started, 1),
                     **{main_metric(t): float(test[main_metric(t)])
                        for t in config.model.tasks if main_metric(t) in test}}]

        rows += [r for r in cached_run("remedies", label, key, run, cached_only=cached_only)
                 if r.get("kind") != "pending"]
    return rows


def summarize(rows: list[Row]) -> list[Row]:
    """Per (dataset, task): each system's mean ± sd over seeds of the task's main metric,
    the best system first."""
    out = []
    for dataset in sorted({r["dataset"] for r in rows}):
        metrics = sorted({k for r in rows if r["dataset"] == dataset for k in r
                          if "/" in k})
        for metric in metrics:
            by: dict[str, list[float]] = {}
            for r in rows:
                if r["dataset"] == dataset and metric in r:
                    system = "single-task" if r["system"].startswith("single-task") else \
                        r["system"]
                    by.setdefault(system, []).append(float(r[metric]))
            sign = -1.0 if lower_is_better(metric) else 1.0
            for system, values in sorted(by.items(),
                                         key=lambda kv: -sign * statistics.fmean(kv[1])):
                out.append({"dataset": dataset, "metric": metric, "system": system,
                            "seeds": len(values), "mean": statistics.fmean(values),
                            "sd": statistics.stdev(values) if len(values) > 1 else 0.0})
    return out


def deltas(rows: list[Row]) -> list[Row]:
    """Each joint system minus the single-task model per task, paired by seed, as skill
    (the difference of AUC or NDCG, or minus the difference of an RMSE: above 0 is better):
    the mean and its 95 % interval half-width over seeds."""
    single = {(r["dataset"], r["seed"], k): float(v) for r in rows
              if r["system"].startswith("single-task") for k, v in r.items() if "/" in k}
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if r["system"].startswith("single-task"):
            continue
        for k, v in r.items():
            base = single.get((r["dataset"], r["seed"], k))
            if "/" in k and base is not None:
                sign = -1.0 if lower_is_better(k) else 1.0
                groups.setdefault((r["dataset"], k, r["system"]), []).append(
                    sign * (float(v) - base))
    return [{"dataset": dataset, "store": DATASETS[dataset][0], "metric": metric,
             "system": system, "seeds": len(diffs), **interval(diffs)}
            for (dataset, metric, system), diffs in sorted(groups.items())]


def best_peers(name: str, results: Path = RESULTS) -> list[Row]:
    """The best torch-rechub figure per task metric of dataset ``name``, from its
    comparison (``compare_NAME.json``: the same split, each peer early-stopped on
    validation, seed 0); none when that comparison has not run."""
    path = results / f"compare_{name}.json"
    if not path.is_file():
        return []
    wanted = {main_metric(t) for t in DATASETS[name][2]}
    best: dict[str, Row] = {}
    for row in json.loads(path.read_text())["rows"]:
        if not str(row.get("system", "")).startswith("torch-rechub"):
            continue
        for metric, value in row.get("metrics", {}).items():
            if metric not in wanted:
                continue
            sign = -1.0 if lower_is_better(metric) else 1.0
            if metric not in best or sign * value > sign * best[metric]["mean"]:
                best[metric] = {"dataset": name, "metric": metric,
                                "system": f"{row['system']} {row.get('model', '')}".strip(),
                                "seeds": 1, "mean": float(value), "sd": 0.0}
    return [best[m] for m in sorted(best)]


def targets(summary: list[Row], peers: list[Row]) -> list[str]:
    """Per task: the joint model vs the single-task model and vs the best torch-rechub."""
    lines = []
    for dataset, metric in sorted({(r["dataset"], r["metric"]) for r in summary}):
        cells = {r["system"]: r for r in summary
                 if r["dataset"] == dataset and r["metric"] == metric}
        joint, single = cells.get("joint"), cells.get("single-task")
        if joint is None or single is None:
            continue
        sign = -1.0 if lower_is_better(metric) else 1.0

        def verdict(other: Row, sign: float = sign, joint: Row = joint) -> str:
            return "met" if sign * joint["mean"] >= sign * other["mean"] else "not met"

        line = (f"{dataset} {metric}: joint {joint['mean']:.4f} vs single-task "
                f"{single['mean']:.4f} ({verdict(single)})")
        peer = _peer(peers, dataset, metric)
        if peer is not None:
            line += f"; vs best {peer['system']} {peer['mean']:.4f} ({verdict(peer)})"
        lines.append(line)
    return lines


def render(summary: list[Row], peers: list[Row] | None = None) -> str:
    """One row per (dataset, task metric), one column per system, then the best
    torch-rechub model's figure where its comparison has one."""
    systems = ["single-task", *REMEDIES]
    head = ("| dataset | task metric | " + " | ".join(systems) + " | best | best torch-rechub "
            "|\n|---|---|" + "---:|" * (len(systems) + 1) + "---:|")
    body = []
    for dataset, metric in sorted({(r["dataset"], r["metric"]) for r in summary}):
        cells = {r["system"]: r for r in summary
                 if r["dataset"] == dataset and r["metric"] == metric}
        best = next(r["system"] for r in summary
                    if r["dataset"] == dataset and r["metric"] == metric)
        body.append(f"| {dataset} | {metric} | " + " | ".join(
            f"{cells[s]['mean']:.4f} ± {cells[s]['sd']:.4f} ({cells[s]['seeds']})"
            if s in cells else "-" for s in systems) + f" | {best} | "
            + _peer_cell(_peer(peers or [], dataset, metric)) + " |")
    return "\n".join([head, *body]) + "\n"


def _peer(peers: list[Row], dataset: str, metric: str) -> Row | None:
    return next((p for p in peers if p["dataset"] == dataset and p["metric"] == metric), None)


def _peer_cell(peer: Row | None) -> str:
    if peer is None:
        return "-"
    return f"{peer['mean']:.4f} ({peer['system'].removeprefix('torch-rechub ')})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: the table of the runs finished so far")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    rows: list[Row] = []
    for name in args.datasets.split(","):
        rows += run_dataset(name, seeds, args.cached_only)
    summary = summarize(rows)
    peers = [p for name in args.datasets.split(",") for p in best_peers(name)]
    result = result_record("remedies", __doc__, argv, started, rows=rows, summary=summary,
                           deltas=deltas(rows), peers=peers, targets=targets(summary, peers))
    out = RESULTS / "remedies.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(summary, peers) + "\n" + "\n".join(
        f"- {t}" for t in result["targets"]) + "\n")
    result["plots"] = [str(p) for p in delta_plots(result["deltas"], RESULTS, "metric",
                                                   "remedies", "joint minus single-task",
                                                   xlabel=SKILL)]
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(summary, peers))
    print("\n".join(result["targets"]))
