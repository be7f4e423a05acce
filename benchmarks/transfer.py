"""Transfer to a category the model has not seen: pre-train on the other Amazon categories,
then train on 0 % (zero-shot), 1 %, 5 %, 10 %, 25 % and 100 % of the held-out category's
training users.

    python -m benchmarks transfer [--held-out amazon-office,...] [--seeds 0,1,2]

Protocol: each category is split by its own leave-one-out protocol; pre-training
(``mtrec pretrain``, seed 0, one per held-out category) sees the other categories only.
On the held-out category a share of its training users is drawn per seed; every system
trains on those users' training interactions only and selects its epoch on those users'
validation interactions only (a few-shot user has no one else's labels); every system is
tested on all the category's test users, full ranking with each user's earlier items
masked.  Systems: the text-based model started from the pre-trained one (``pretrained``;
at 0 % it is not trained at all, and when trained its start is a candidate epoch 0 that the
validation can keep) and the same model from scratch (``scratch``), both at the default
learning rate with the step-based epoch budget and patience of ``mtrec.train.budget`` for
the users they train on; popularity, and ItemKNN with its grid chosen on the same
validation, fitted on the same users.  Each (category, system, share, seed) is cached under
``benchmarks/results/runs/transfer``; a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
from mtrec.data.imports import home
from mtrec.data.interactions import Interactions, Prepared
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.eval.protocols import evaluate, evaluate_scorer
from mtrec.models.baselines import ItemKNN, Popularity
from mtrec.models.batches import SequenceBatcher
from mtrec.pretrain.init import initialise, keeps_start_match
from mtrec.run_config import RunConfig, load_run_config
from mtrec.train.budget import plan_budget
from mtrec.train.match import fit_text_match
from mtrec.train.run import budgeted, build, prepare_run, task_labels, text_vectors
from mtrec.train.trainer import Trainer
from mtrec.train.weighting import build_weighting

CATEGORIES = ("amazon-beauty", "amazon-scientific", "amazon-office")
SHARES = (0.0, 0.01, 0.05, 0.1, 0.25, 1.0)
RESULTS = Path(__file__).parent / "results"
BENCH = Path(".mtrec/bench/transfer")
# Versions of what a run measures, in every cache key with the configs: bump PROTOCOL when a
# change alters what a transfer run measures, PRETRAIN when it alters what pre-training
# learns (an edit that changes neither reruns nothing).
# 1: the pre-trained start is validated as epoch 0; 2: its text-match scale is not carried
# into training (chosen after training); 3: it is carried and kept (not chosen again)
PROTOCOL = 3
PRETRAIN = 1  # 1: next-item contrast across catalogs + item <-> item contrast (0.1)
METRIC = "next_item/ndcg@10"


def base_config(dataset: str, seed: int) -> RunConfig:
    """The text-based model (no ID embeddings: the same model pre-trained and from scratch)."""
    return load_run_config(None, **{"data.dataset": dataset, "model.item.use_id": False,
                                    "train.seed": seed, "train.refit": False})


def pretrain(held_out: str, pool: tuple[str, ...]) -> Path:
    """The pre-trained model for ``held_out`` (the other categories of ``pool``), trained
    once and reused; a killed pre-training resumes."""
    others = [c for c in pool if c != held_out]
    config = config_fingerprint(to_dict(base_config("+".join(others), 0)))
    out = BENCH / f"pre-{held_out}-{short_hash([others, config, PRETRAIN])}"
    if not (out / "config.json").is_file():
        resume = ["--resume"] if (out / "checkpoint").exists() else []
        cmd = [sys.executable, "-m", "mtrec.cli", "pretrain", "--datasets", ",".join(others),
               "--out", str(out), "--json", *resume]
        print(f"pre-training for {held_out}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def chosen_users(prepared: Prepared, share: float, seed: int) -> np.ndarray:
    """A boolean mask over user codes: ``share`` of the users with training interactions
    (at least one user when the share is above 0)."""
    data = prepared.interactions
    users = np.unique(data.user[data.part == TRAIN])
    mask = np.zeros(len(data.offsets) - 1, dtype=bool)
    if share > 0:
        k = max(1, round(share * len(users)))
        mask[np.random.default_rng([seed, 7]).choice(users, k, replace=False)] = True
    return mask


class ChosenBatcher(SequenceBatcher):
    """Trains on the chosen users and validates on them alone; tests on everyone."""

    def __init__(self, data: Interactions, max_len: int, labels: Any,
                 chosen: np.ndarray) -> None:
        super().__init__(data, max_len, labels, exclude=~chosen)
        self.chosen = chosen

    def eval_users(self, part: int) -> np.ndarray:
        users = super().eval_users(part)
        return users[self.chosen[users]] if part == VALID else users


def model_row(prepared: Prepared, vectors: torch.Tensor, config: RunConfig, share: float,
              seed: int, init: Path | None, folder: Path) -> Row:
    """Train (unless ``share`` is 0) and test one text-based model."""
    started = time.perf_counter()
    chosen = chosen_users(prepared, share, seed)
    config, _ = budgeted(config, prepared)  # the history window from the whole category
    data = prepared.interactions
    lengths = np.bincount(data.user[(data.part == TRAIN) & chosen[data.user]])
    budget = plan_budget(lengths[lengths > 0], config.train.batch_size, 0, 0,
                         config.model.user.max_len)
    train = replace(config.train, epochs=budget.epochs, patience=budget.patience,
                    warmup_steps=min(config.train.warmup_steps,
                                     max(1, budget.epochs * budget.steps_per_epoch // 10)),
                    init=str(init) if init is not None else "")
    config = replace(config, train=train)
    torch.manual_seed(seed)
    model, _ = build(config, prepared, vectors)
    initialise(model, config)
    batcher = ChosenBatcher(data, config.model.user.max_len, task_labels(model, data), chosen)
    best_epoch = epochs = 0
    if share > 0:
        def validate(m: Any) -> dict[str, float]:
            return evaluate(m, batcher, VALID, 512, autocast=True)

        result = Trainer(model, build_weighting(config.weighting, model.task_names), batcher,
                         config.train, METRIC, validate, folder).fit(resume=True)
        best_epoch, epochs = result.best_epoch, result.epochs_run
        if not keeps_start_match(model, config):
            fit_text_match(model, batcher, VALID, 512, autocast=True)
    test = evaluate(model, batcher, TEST, 512, autocast=True)
    scale = float(model.text_match.lag_weight[0]) if model.text_match is not None else 0.0
    return {"train_users": int(chosen.sum()), "best_epoch": best_epoch, "epochs": epochs,
            "text_match_scale": scale,
            "seconds": round(time.perf_counter() - started, 1), **_metrics(test)}


def baseline_row(prepared: Prepared, system: str, share: float, seed: int) -> Row:
    """Popularity, or ItemKNN with its neighbours and recency decay chosen on the chosen
    users' validation interactions (the grid of the next-item comparisons), fitted on the
    chosen users' training interactions."""
    started = time.perf_counter()
    chosen = chosen_users(prepared, share, seed)
    data = prepared.interactions
    seen = replace(data, part=np.where((data.part == TRAIN) & ~chosen[data.user], -1,
                                       data.part).astype(data.part.dtype))
    n_items = prepared.catalog.n_items
    extra: Row = {}
    if system == "popularity":
        scorer: Popularity | ItemKNN = Popularity().fit(seen, n_items)
    else:
        _, k, d = best_knn(seen, ChosenBatcher(data, 50, {}, chosen), n_items)
        scorer, extra = ItemKNN(neighbors=k, decay=d).fit(seen, n_items), {
            "neighbors": k, "decay": d}
    test = evaluate_scorer(scorer.score, SequenceBatcher(data, 50, {}), TEST, n_items)
    return {"train_users": int(chosen.sum()), "seconds": round(time.perf_counter() - started, 1),
            **extra, **_metrics(test)}


def _metrics(test: dict[str, float]) -> dict[str, float]:
    return {m: float(test[f"next_item/{m}"]) for m in ("ndcg@10", "recall@10")} | {
        "test_users": int(test["next_item/users"])}


def run_category(held_out: str, pool: tuple[str, ...], shares: list[float],
                 seeds: list[int], cached_only: bool = False) -> list[Row]:
    config = base_config(held_out, 0)
    prepared = prepare_run(config)
    split = split_fingerprint(prepared)
    pre: Path | None = None
    vectors: torch.Tensor | None = None
    rows: list[Row] = []
    for share in shares:
        for seed in seeds:
            for system in ("pretrained", "scratch", "popularity", "itemknn"):
                if system != "pretrained" and share == 0:
                    continue  # nothing to train or fit on: only the pre-trained model runs
                key = {"held_out": held_out, "pool": list(pool), "system": system,
                       "share": share, "seed": seed, "split": split, "protocol": PROTOCOL,
                       "pretrain": PRETRAIN,
                       "config": config_fingerprint(to_dict(base_config(held_out, seed)))}
                name = f"{held_out}-{system}-{share:g}-s{seed}"

                def run(system: str = system, share: float = share, seed: int = seed,
                        name: str = name, key: dict[str, Any] = key) -> list[Row]:
                    nonlocal pre, vectors
                    if system in ("popularity", "itemknn"):
                        got = baseline_row(prepared, system, share, seed)
                    else:
                        if vectors is None:
                            vectors = text_vectors(config, prepared, home() / "embeddings")
                        init = None
                        if system == "pretrained":
                            pre = pre or pretrain(held_out, pool)
                            init = pre
                        assert vectors is not None
                        got = model_row(prepared, vectors, base_config(held_out, seed), share,
                                        seed, init, BENCH / f"{name}-{short_hash(key)}")
                    return [{"held_out": held_out, "system": system, "share": share,
                             "seed": seed, **got}]

                rows += [r for r in cached_run("transfer", name, key, run,
                                               cached_only=cached_only)
                         if r.get("kind") != "pending"]
    return rows


def summarize(rows: list[Row]) -> list[Row]:
    """Mean and standard deviation over seeds per (category, system, share)."""
    groups: dict[tuple[str, str, float], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["held_out"], r["system"], r["share"]), []).append(r)
    out = []
    for (held_out, system, share), group in sorted(groups.items()):
        values = [g["ndcg@10"] for g in group]
        out.append({"held_out": held_out, "system": system, "share": share,
                    "seeds": len(group), "ndcg@10": statistics.fmean(values),
                    "ndcg@10_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "recall@10": statistics.fmean(g["recall@10"] for g in group),
                    "train_users": group[0]["train_users"],
                    "seconds": statistics.fmean(g["seconds"] for g in group)})
    return out


def render(summary: list[Row]) -> str:
    head = ("| held-out category | share of training users | system | seeds | NDCG@10 (± sd) "
            "| Recall@10 | users trained on | s |\n|---|---:|---|---:|---:|---:|---:|---:|")
    body = [f"| {r['held_out']} | {r['share']:.0%} | {r['system']} | {r['seeds']} | "
            f"{r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f} | {r['recall@10']:.4f} | "
            f"{r['train_users']:,} | {r['seconds']:.0f} |" for r in summary]
    return "\n".join([head, *body]) + "\n"


def render_wide(summary: list[Row]) -> str:
    """Test NDCG@10 (mean over seeds, the seed count in brackets when several) per held-out
    category and system, one column per share: the table the README shows."""
    shares = sorted({r["share"] for r in summary})
    head = ("| held out | system | " + " | ".join(f"{s:.0%}" for s in shares) + " |\n"
            "|---|---|" + "---:|" * len(shares))
    body = []
    for cat in sorted({r["held_out"] for r in summary}):
        for system in ("pretrained", "scratch", "itemknn", "popularity"):
            cells = {r["share"]: r for r in summary
                     if r["held_out"] == cat and r["system"] == system}
            if cells:
                body.append(f"| {cat} | {system} | " + " | ".join(
                    (f"{cells[s]['ndcg@10']:.4f}"
                     + (f" ({cells[s]['seeds']})" if cells[s]["seeds"] > 1 else ""))
                    if s in cells else "-" for s in shares) + " |")
    return "\n".join([head, *body]) + "\n"


def targets(summary: list[Row]) -> list[str]:
    """The issue's targets, each as measured (mean over the seeds run)."""
    by = {(r["held_out"], r["system"], r["share"]): r["ndcg@10"] for r in summary}
    lines = []
    for held_out in sorted({r["held_out"] for r in summary}):
        zero, pop = by.get((held_out, "pretrained", 0.0)), by.get((held_out, "popularity", 1.0))
        if zero is not None and pop:
            lines.append(f"{held_out}: zero-shot {zero:.4f} = {zero / pop:.2f}x popularity "
                         f"(100 %: {pop:.4f}; target >= 3x)")
        for share, bar in ((0.05, 1.3), (1.0, 1.0)):
            p, s = by.get((held_out, "pretrained", share)), by.get((held_out, "scratch", share))
            if p is not None and s:
                lines.append(f"{held_out}: {share:.0%} pre-trained {p:.4f} vs scratch {s:.4f} "
                             f"= {p / s:.2f}x (target >= {bar}x)")
    return lines


def plot(summary: list[Row], folder: Path) -> list[Path]:
    """One PNG per held-out category (the report draws the same chart as SVG)."""
    from mtrec.report.plots import share_curves
    from mtrec.report.transfer import SYSTEMS

    paths = []
    for cat in sorted({r["held_out"] for r in summary}):
        series = {s: [(r["share"], r["ndcg@10"], r["ndcg@10_sd"]) for r in summary
                      if r["held_out"] == cat and r["system"] == s] for s in SYSTEMS}
        path = folder / f"transfer_{cat}.png"
        path.write_bytes(share_curves({s: p for s, p in series.items() if p},
                                      f"held out: {cat}", fmt="png"))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", default=",".join(CATEGORIES))
    parser.add_argument("--pool", default=",".join(CATEGORIES),
                        help="the categories; each held-out one is pre-trained on the others")
    parser.add_argument("--shares", default=",".join(f"{s:g}" for s in SHARES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: the tables and plots of the runs finished so far")
    args = parser.parse_args(argv)
    pool = tuple(args.pool.split(","))
    shares = [float(s) for s in args.shares.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    rows: list[Row] = []
    for held_out in args.held_out.split(","):
        rows += run_category(held_out, pool, shares, seeds, args.cached_only)
    summary = summarize(rows)
    result = result_record("transfer", __doc__, argv, started,
                           rows=rows, summary=summary, targets=targets(summary))
    out = RESULTS / "transfer.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    tables = render_wide(summary) + "\n" + render(summary)
    out.with_suffix(".md").write_text(tables + "\n" + "\n".join(
        f"- {t}" for t in result["targets"]) + "\n")
    result["plots"] = [str(p) for p in plot(summary, RESULTS)]
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(summary))
    print("\n".join(result["targets"]))
    print(f"wrote {out}")
