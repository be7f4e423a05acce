"""One command per comparison; each writes benchmarks/results/compare_<name>.json and .md.

    python -m benchmarks beauty       # next-item vs RecBole + baselines + published, Beauty
    python -m benchmarks scientific   # the same on Amazon Scientific (its own split)
    python -m benchmarks ml100k       # multi-task vs torch-rechub, rating vs Surprise
    python -m benchmarks jdata        # multi-task vs torch-rechub (buy / cart / collect)
    python -m benchmarks poisoning    # fake users vs the defences (benchmarks/poisoning.py)

Peers are installed on first use into their own virtualenvs under .mtrec/peers.  The
README's results table is regenerated from the recorded results afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.compare import (
    CONFIGS,
    Row,
    baseline_rows,
    guarded,
    log,
    mtrec_row,
    prepared_for,
    published_rows,
)
from benchmarks.machine import describe
from benchmarks.render import render_markdown, update_readme

RESULTS = Path(__file__).parent / "results"
SEQ_PEERS = ("SASRec", "BERT4Rec", "GRU4Rec")
BPR_EPOCHS = 100
ML_TASKS = ("next_item", "rating", "like", "engagement")
JD_TASKS = ("purchase", "cart", "collect")


def _sequential(dataset: str, protocol: str, epochs: int, work: Path) -> list[Row]:
    """mtrec (text + ID, ID only, text only), baselines, RecBole and anchors on one split.

    Every sequential model, mtrec's and RecBole's, gets the same epoch budget (each may stop
    early after 3 epochs without a validation gain); BPR, at about a second per epoch, gets
    ``BPR_EPOCHS``."""
    from benchmarks.peers.recbole import run_recbole

    base = ["--dataset", dataset, "--protocol", protocol, "--epochs", str(epochs)]
    rows = [mtrec_row(base, "default (text + ID)"),
            mtrec_row([*base, "--no-text"], "ID-only sequential", kind="baseline"),
            mtrec_row([*base, "--config", str(CONFIGS / "text_only.toml")],
                      "text-only (no ID embeddings)", kind="baseline")]
    prepared = prepared_for(dataset, protocol)
    rows += guarded("baselines", lambda: baseline_rows(prepared))
    budget = f"epoch budget {epochs}, early stop after 3 epochs without a valid gain"
    rows += [{**r, "epoch_budget": epochs, "note": r.get("note") or budget}
             for r in guarded("RecBole", lambda: run_recbole(
                 prepared, SEQ_PEERS, epochs=epochs, stopping_step=3, workdir=work / "rb"))]
    bpr_note = (f"epoch budget {BPR_EPOCHS}, validated every 5 epochs, early stop after 2 "
                "validations without a gain")
    rows += [{**r, "epoch_budget": BPR_EPOCHS, "note": r.get("note") or bpr_note}
             for r in guarded("RecBole", lambda: run_recbole(
                 prepared, ("BPR",), epochs=BPR_EPOCHS, stopping_step=2,
                 workdir=work / "rb-bpr", config={"eval_step": 5}))]
    return rows + published_rows(dataset)


def beauty(work: Path) -> list[Row]:
    return _sequential("amazon-beauty", "loo", 4, work)


def scientific(work: Path) -> list[Row]:
    return _sequential("amazon-scientific", "source", 10, work)


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


COMPARISONS: dict[str, tuple[Callable[[Path], list[Row]], str, str]] = {
    "beauty": (beauty, "amazon-beauty", "loo"),
    "scientific": (scientific, "amazon-scientific", "source"),
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
    return {"epoch_budget": ours.get("epoch_budget"),
            "mtrec": {k: ours.get(k) for k in keys},
            "recbole_sasrec": {**{k: peer.get(k) for k in keys}, "fit_wall_seconds": fit_wall},
            "train_time_ratio": round(ours["train_seconds"] / peer["train_seconds"], 3),
            "fit_wall_ratio": round(ours["train_seconds"] / fit_wall, 3),
            "per_epoch_ratio": round(ours["seconds_per_epoch"] / peer["seconds_per_epoch"], 3),
            "ndcg@10": {"mtrec": ours["metrics"]["ndcg@10"],
                        "recbole_sasrec": peer["metrics"]["ndcg@10"]}}


def run(name: str) -> Path:
    step, dataset, protocol = COMPARISONS[name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mtrec-bench-{name}-") as work:
        rows = step(Path(work))
    record = {"comparison": name, "dataset": dataset, "protocol": protocol,
              "command": f"python -m benchmarks {name}",
              "wall_seconds": round(time.perf_counter() - started, 1),
              "machine": describe(), "rows": rows, "speed": speed_summary(rows)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"compare_{name}.json"
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
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", choices=sorted(COMPARISONS))
    run(parser.parse_args().comparison)


if __name__ == "__main__":
    main()
