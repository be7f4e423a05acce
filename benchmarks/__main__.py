"""One command per comparison; each writes benchmarks/results/compare_<name>.json and .md.

    python -m benchmarks beauty       # next-item vs RecBole + baselines + published, Beauty
    python -m benchmarks scientific   # the same on Amazon Scientific (its own split)
    python -m benchmarks office       # the same on Amazon Office (its own split)
    python -m benchmarks ml100k       # multi-task vs torch-rechub, rating vs Surprise
    python -m benchmarks jdata        # multi-task vs torch-rechub (buy / cart / collect)
    python -m benchmarks poisoning    # fake users vs the defences (benchmarks/poisoning.py)
    python -m benchmarks longterm     # engagement at a time cut vs LightGBM, BG/NBD, Pareto/NBD
    python -m benchmarks policy       # an RL ranking policy vs greedy in a held-out simulator
    python -m benchmarks transfer     # pre-train on other categories, few-shot on a new one
    python -m benchmarks scenarios    # one model over two domains vs one model per domain
    python -m benchmarks remedies     # joint with PCGrad / per-task early stopping vs single

Peers are installed on first use into their own virtualenvs under .mtrec/peers.  The
README's results table is regenerated from the recorded results afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.compare import (
    CONFIGS,
    KNN_GRID,
    Row,
    baseline_rows,
    guarded,
    log,
    mtrec_row,
    prepared_for,
    published_rows,
)
from benchmarks.machine import describe
from benchmarks.render import plot_curves, render_markdown, update_readme
from benchmarks.runs import (
    cached_run,
    config_fingerprint,
    runner_fingerprint,
    short_hash,
    slug,
    split_fingerprint,
)
from mtrec.config import to_dict
from mtrec.data.interactions import Prepared
from mtrec.run_config import load_run_config
from mtrec.train.run import budgeted

RESULTS = Path(__file__).parent / "results"
BENCH = Path(".mtrec") / "bench"  # mtrec's bundle directories while a run may resume
SEQ_PEERS = ("SASRec", "BERT4Rec", "GRU4Rec", "CORE", "LightSANs", "FEARec")
GRAPH_PEERS = ("BPR", "LightGCN")
SEQ_EPOCHS, GRAPH_EPOCHS = 300, 1000  # caps well past where early stopping ends
STOPPING_STEP = 10  # RecBole's default patience
WALL_CAP_S = 7200.0  # per system: about 2 hours on these 2 cores
MTREC_VARIANTS: tuple[tuple[str, list[str], str], ...] = (
    ("default (text + ID)", [], "mtrec"),
    ("ID-only sequential", ["--no-text"], "baseline"),
    ("text-only (no ID embeddings)", ["--config", str(CONFIGS / "text_only.toml")], "baseline"))
ML_TASKS = ("next_item", "rating", "like", "engagement")
JD_TASKS = ("purchase", "cart", "collect")


def _sequential(name: str, dataset: str, protocol: str, cached_only: bool = False,
                peers: bool = True) -> list[Row]:
    """mtrec (text + ID, ID only, text only), baselines, RecBole's peers and anchors on one
    split, every system trained to its own convergence: early stop on validation with its
    own patience (mtrec: the budget from the data; RecBole: ``stopping_step`` 10, its
    default) under a generous epoch cap and ``WALL_CAP_S`` of wall time each.  Each system
    is cached as it finishes (benchmarks/runs.py): a rerun reuses, resumes or completes;
    ``cached_only`` runs nothing and marks the unfinished systems pending; without ``peers``
    only mtrec and the baselines run (the peers come from the cache or are pending)."""
    from benchmarks.peers.recbole import run_recbole

    prepared = prepared_for(dataset, protocol)
    machine = describe(("torch",))
    base = {"dataset": dataset, "protocol": protocol, "split": split_fingerprint(prepared),
            "cpu": machine["cpu"], "cores": machine["cores"], "versions": machine["versions"]}
    rows: list[Row] = []
    for model, extra, kind in MTREC_VARIANTS:
        rows += _mtrec_variant(name, prepared, base, model, extra, kind, cached_only)
    rows += cached_run(name, "baselines", {**base, "grid": KNN_GRID},
                       partial(guarded, "baselines", partial(baseline_rows, prepared)),
                       cached_only=cached_only)
    code = runner_fingerprint()
    for model in SEQ_PEERS + GRAPH_PEERS:
        graph = model in GRAPH_PEERS
        cap = GRAPH_EPOCHS if graph else SEQ_EPOCHS
        overrides: dict[str, Any] = {"eval_step": 5} if graph else {}
        note = (f"early stop by RecBole's stopping_step {STOPPING_STEP} (validations "
                f"without a gain)"
                f"{' (every 5 epochs)' if graph else ''}, at most {cap} epochs and "
                f"{WALL_CAP_S / 3600:g} h")
        fingerprint = {**base, "model": model, "epochs": cap, "stopping_step": STOPPING_STEP,
                       "max_seconds": WALL_CAP_S, "config": overrides, "runner": code}
        # a lasting folder named by the fingerprint: a killed fit resumes from its state
        folder = BENCH / name / f"rb-{slug(model)}-{short_hash(fingerprint)}"
        fit = partial(run_recbole, prepared, (model,), epochs=cap, stopping_step=STOPPING_STEP,
                      workdir=folder, config=overrides, max_seconds=WALL_CAP_S, resume=True)
        rows += [{**r, "note": r.get("note") or note} for r in cached_run(
            name, f"RecBole {model}", fingerprint,
            partial(_removing, folder, partial(guarded, "RecBole", fit)),
            cached_only=cached_only or not peers)]
    return rows + published_rows(dataset)


def _removing(folder: Path, fit: Callable[[], list[Row]]) -> list[Row]:
    """``fit()``, then delete its resumable ``folder`` unless a row says it failed."""
    rows = fit()
    if not any("error" in r for r in rows):
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _mtrec_variant(name: str, prepared: Prepared, base: dict[str, Any], model: str,
                   extra: list[str], kind: str, cached_only: bool = False) -> list[Row]:
    """One mtrec variant, cached; its fingerprint holds the run config with the budget
    resolved on this split (so a change of the budget rules reruns it), and its bundle
    directory, named by that fingerprint, stays while the run may resume."""
    args = ["--dataset", prepared.dataset, "--protocol", prepared.protocol,
            "--max-minutes", str(WALL_CAP_S / 60), *extra]
    config = load_run_config(extra[1] if extra[:1] == ["--config"] else None,
                             **{"data.dataset": prepared.dataset,
                                "data.protocol": prepared.protocol,
                                "train.max_minutes": WALL_CAP_S / 60,
                                "model.item.use_text": False if "--no-text" in extra else None})
    fingerprint = {**base, "args": args,
                   "config": config_fingerprint(to_dict(budgeted(config, prepared)[0])),
                   "row": 2}  # 2: the refit's time is recorded and counted
    out = BENCH / name / f"{slug(model)}-{short_hash(fingerprint)}"

    def run() -> list[Row]:
        row = mtrec_row(args, model, kind=kind, out=out)
        if "error" not in row:
            shutil.rmtree(out, ignore_errors=True)
        return [row]

    return cached_run(name, f"mtrec {model}", fingerprint, run, cached_only=cached_only)


def _joint_and_single(base: list[str], tasks: tuple[str, ...], seeds: tuple[int, ...]
                      ) -> list[Row]:
    rows = []
    for seed in seeds:
        args = [*base, "--seed", str(seed)]
        rows.append(mtrec_row([*args, "--tasks", ",".join(tasks)], f"joint (seed {seed})"))
        rows += [mtrec_row([*args, "--tasks", t], f"single-task {t} (seed {seed})",
                           kind="baseline") for t in tasks]
    if len(seeds) > 1:
        rows = _seed_means(rows, seeds) + rows
    return rows


def _seed_means(rows: list[Row], seeds: tuple[int, ...]) -> list[Row]:
    """One row per model: the mean (and sd) over seeds of each metric."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if "metrics" in row:
            groups.setdefault(row["model"].rsplit(" (seed", 1)[0], []).append(row)
    out = []
    for model, group in groups.items():
        keys = set.intersection(*(set(r["metrics"]) for r in group))
        out.append({**{k: v for k, v in group[0].items() if k not in ("seed", "valid")},
                    "model": f"{model} (mean of {len(group)} seeds)",
                    "metrics": {k: statistics.mean(r["metrics"][k] for r in group)
                                for k in sorted(keys)},
                    "metrics_sd": {k: statistics.stdev(r["metrics"][k] for r in group)
                                   for k in sorted(keys) if len(group) > 1},
                    "train_seconds": statistics.mean(r["train_seconds"] for r in group),
                    "seeds": list(seeds), "aggregate": True})
    return out


def _rechub(name: str, work: Path, feature_set: str) -> list[Row]:
    from benchmarks.export_tabular import benchmark_split
    from benchmarks.peers.rechub import run_rechub

    _, prepared, tasks = benchmark_split(name)
    rows = run_rechub(prepared, tasks, workdir=work / "rechub", feature_set=feature_set)
    groups = {tuple(r.get("tasks", ())) for r in rows}
    for row in rows:  # one row per (model, task group): say which group
        if len(groups) > 1 and row.get("tasks"):
            row["model"] = f"{row['model']} [{'+'.join(row['tasks'])}]"
    return rows


def _surprise(work: Path) -> list[Row]:
    from benchmarks.export_tabular import benchmark_split
    from benchmarks.peers.surprise import run_surprise

    _, prepared, _ = benchmark_split("ml100k")
    rows = run_surprise(prepared, workdir=work / "surprise")
    return [{**r, "system": "Surprise"} for r in rows]


def ml100k(work: Path) -> list[Row]:
    config = CONFIGS / "ml100k.toml"
    base = ["--dataset", "ml-100k", "--protocol", "temporal", "--config", str(config)]
    rows = _joint_and_single(base, ML_TASKS, (0, 1, 2))
    prepared = prepared_for("ml-100k", "temporal", config)
    rows += guarded("baselines", lambda: baseline_rows(prepared))
    rows += guarded("torch-rechub", lambda: _rechub("ml100k", work, "side"))
    rows += guarded("Surprise", lambda: _surprise(work))
    return rows + published_rows("ml-100k")


def jdata(work: Path) -> list[Row]:
    config = CONFIGS / "jdata.toml"
    base = ["--dataset", "jdata", "--protocol", "pair", "--config", str(config)]
    rows = _joint_and_single(base, JD_TASKS, (0,))
    rows += guarded("torch-rechub", lambda: _rechub("jdata", work, "id"))
    return rows + published_rows("jdata")


# (None: a next-item comparison of _sequential, cached per system)
COMPARISONS: dict[str, tuple[Callable[[Path], list[Row]] | None, str, str]] = {
    "beauty": (None, "amazon-beauty", "loo"),
    "scientific": (None, "amazon-scientific", "source"),
    "office": (None, "amazon-office", "source"),
    "ml100k": (ml100k, "ml-100k", "temporal"),
    "jdata": (jdata, "jdata", "pair"),
}


def speed_summary(rows: list[Row]) -> dict[str, Any] | None:
    """mtrec's training wall time against RecBole SASRec's at the same epoch budget.

    mtrec's time includes its validation after every epoch; the headline ratio divides it by
    RecBole's training time *without* validation (its per-epoch train times), so it is the
    stricter of the two; the ratio to RecBole's whole fit (with validation) is given too."""
    ours = next((r for r in rows if r.get("model", "").startswith("default")
                 and "metrics" in r), None)
    peer = next((r for r in rows if r.get("system") == "RecBole"
                 and r.get("model") == "SASRec" and "metrics" in r), None)
    if ours is None or peer is None:
        return None
    fit_wall = peer.get("timings", {}).get("fit_wall_seconds") or peer["train_seconds"]
    keys = ("train_seconds", "epochs", "seconds_per_epoch", "peak_rss_gib")
    if ours.get("curve") and peer.get("curve"):  # each at its own convergence
        # mtrec's scored model exists once its selection has stopped and its refit is done
        # (train_seconds counts both); SASRec's at its best epoch
        best = {"mtrec": float(ours["train_seconds"]), "recbole_sasrec": seconds_to_best(peer)}
        return {"at_convergence": True,
                "mtrec": {**{k: ours.get(k) for k in keys}, "seconds_to_best": best["mtrec"],
                          "selection_seconds_to_best": seconds_to_best(ours),
                          "refit_seconds": ours.get("refit_seconds", 0.0)},
                "recbole_sasrec": {**{k: peer.get(k) for k in keys},
                                   "seconds_to_best": best["recbole_sasrec"],
                                   "fit_wall_seconds": fit_wall},
                "time_to_best_ratio": round(best["mtrec"] / best["recbole_sasrec"], 3),
                "ndcg@10": {"mtrec": ours["metrics"]["ndcg@10"],
                            "recbole_sasrec": peer["metrics"]["ndcg@10"]}}
    return {"epoch_budget": ours.get("epoch_budget"),
            "mtrec": {k: ours.get(k) for k in keys},
            "recbole_sasrec": {**{k: peer.get(k) for k in keys}, "fit_wall_seconds": fit_wall},
            "train_time_ratio": round(ours["train_seconds"] / peer["train_seconds"], 3),
            "fit_wall_ratio": round(ours["train_seconds"] / fit_wall, 3),
            "per_epoch_ratio": round(ours["seconds_per_epoch"] / peer["seconds_per_epoch"], 3),
            "ndcg@10": {"mtrec": ours["metrics"]["ndcg@10"],
                        "recbole_sasrec": peer["metrics"]["ndcg@10"]}}


def _system_seconds(row: Row) -> float:
    """A system's own wall time: a RecBole fit's across its resumes plus loading and
    scoring, else the row's wall (or training) seconds."""
    timings = row.get("timings") or {}
    if timings.get("fit_wall_seconds") is not None:
        return float(timings["fit_wall_seconds"]) + float(timings.get("load_seconds") or 0.0) \
            + float(timings.get("score_seconds") or 0.0)
    return float(row.get("wall_seconds") or row.get("train_seconds") or 0.0)


def seconds_to_best(row: Row) -> float:
    """Training wall time until the row's best epoch, from its validation curve."""
    curve = row["curve"]
    return float(next((s for e, s, _ in curve if e == row.get("best_epoch")), curve[-1][1]))


def run(name: str, cached_only: bool = False, peers: bool = True) -> Path:
    """Run comparison ``name`` (or, ``cached_only``, assemble it from its finished systems;
    without ``peers``, run mtrec and the baselines only) and write its record, table, curves
    plot and the README block."""
    step, dataset, protocol = COMPARISONS[name]
    if step is not None and (cached_only or not peers):
        cached = ", ".join(k for k, (f, _, _) in COMPARISONS.items() if f is None)
        raise SystemExit(f"--cached-only / --mtrec-only: {name} has no per-system cache "
                         f"(only {cached})")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mtrec-bench-{name}-") as work:
        rows = (_sequential(name, dataset, protocol, cached_only, peers) if step is None
                else step(Path(work)))
    record = {"comparison": name, "dataset": dataset, "protocol": protocol,
              "command": f"python -m benchmarks {name}",
              "wall_seconds": round(time.perf_counter() - started, 1),
              # each finished system's own wall time, cached ones included: the cost of the
              # whole comparison from scratch (wall_seconds is this invocation's)
              "systems_seconds": round(sum(_system_seconds(r) for r in rows
                                           if "metrics" in r and not r.get("aggregate")), 1),
              "partial": any("pending" in r for r in rows),
              "machine": describe(), "rows": rows, "speed": speed_summary(rows)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compare_{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    if plot_curves(record, RESULTS / f"curves_{name}.png"):
        record["curves_plot"] = f"benchmarks/results/curves_{name}.png"
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(render_markdown(record))
    update_readme()
    log(f"wrote {path} and {path.with_suffix('.md')} ({record['wall_seconds']:.0f} s)")
    return path


def main() -> None:
    import sys

    if sys.argv[1:2] == ["poisoning"]:  # its own options (--runs)
        from benchmarks.poisoning import main as poisoning

        poisoning(sys.argv[2:])
        return
    if sys.argv[1:2] == ["policy"]:  # its own options (--datasets, --seeds)
        from benchmarks.policy import main as policy

        policy(sys.argv[2:])
        return
    if sys.argv[1:2] == ["transfer"]:  # its own options (--held-out, --shares, --seeds)
        from benchmarks.transfer import main as transfer

        transfer(sys.argv[2:])
        return
    if sys.argv[1:2] == ["scenarios"]:  # its own options (--datasets, --seeds, --layers)
        from benchmarks.scenarios import main as scenarios

        scenarios(sys.argv[2:])
        return
    if sys.argv[1:2] == ["remedies"]:  # its own options (--datasets, --seeds)
        from benchmarks.remedies import main as remedies

        remedies(sys.argv[2:])
        return
    if sys.argv[1:2] == ["longterm"]:  # its own options (--datasets, --seeds)
        from benchmarks.longterm import main as longterm

        longterm(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", choices=sorted(COMPARISONS))
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: the table of the systems finished so far, the "
                             "others listed as not finished (beauty, scientific, office)")
    parser.add_argument("--mtrec-only", action="store_true",
                        help="run mtrec's variants and the baselines; the peers come from the "
                             "cache or are listed as not finished")
    args = parser.parse_args()
    run(args.comparison, args.cached_only, peers=not args.mtrec_only)


if __name__ == "__main__":
    main()
