"""Poisoning benchmark: fake users push one target item; what the defences change.

    python -m benchmarks poisoning      # clean, random, random-filter, random-adversarial
    python -m benchmarks poisoning --runs popular,popular-filter

Protocol: Amazon Beauty, ``loo`` split, default model and early stopping on validation.
``share`` (1 %) x the real users are injected as fake users into the *training* part only
(:mod:`mtrec.data.poison`): each interacts with filler items (``random``: uniform over the
catalog; ``popular``: the 100 most popular items), then with the target, a cold-ish item
(3..5 training interactions) drawn with a fixed seed.  Every model is evaluated on the real
users' clean test split:

- target HR@10 (and @50): the share of real test users, among those who never interacted
  with the target before the test item, whose full-catalog top 10 (earlier items masked)
  holds the target;
- clean NDCG@10 / Recall@10 of the test items (the usual full ranking).

Promotion = HR@10(target | poisoned) - HR@10(target | clean).  Runs: ``clean``, each filler
undefended (``random``, ``popular``) and defended: ``FILLER-filter`` (the cohort fake-user
filter, ``benchmarks/configs/poison_filter.toml``) and ``FILLER-adversarial`` (adversarial
training and sequence augmentation, ``benchmarks/configs/poison_adversarial.toml``).  Each
run's bundle is kept under ``.mtrec/poisoning/RUN`` and its result in
``benchmarks/results/poisoning.json``; a run whose bundle exists with the same config and
users is measured again, not retrained.  Every model trains on about 25 min of 2 cores
(the adversarial ones about twice that).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.machine import describe
from mtrec.config import from_dict, to_dict
from mtrec.data.imports import home
from mtrec.data.interactions import Prepared
from mtrec.data.poison import Attack, inject_fake_users, is_fake, pick_target, train_counts
from mtrec.data.split import TEST
from mtrec.models.batches import SequenceBatcher
from mtrec.models.model import MultiTaskRecommender, UserStates
from mtrec.run_config import RunConfig, load_run_config
from mtrec.train.run import budgeted, prepare_run, train_run

RESULTS = Path(__file__).parent / "results" / "poisoning.json"
CONFIGS = Path(__file__).parent / "configs"
DEFENCES = {"filter": CONFIGS / "poison_filter.toml",
            "adversarial": CONFIGS / "poison_adversarial.toml"}
DATASET, SHARE, SEED = "amazon-beauty", 0.01, 0
FILLERS = ("random", "popular")
RUNS = ("clean", *(f"{f}{d}" for f in FILLERS for d in ("", "-filter", "-adversarial")))
DEFAULT_RUNS = ("clean", "random", "random-filter", "random-adversarial")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def target_hit_rate(model: MultiTaskRecommender, batcher: SequenceBatcher, target: int,
                    ks: tuple[int, ...] = (10, 50), part: int = TEST,
                    batch_size: int = 512, autocast: bool = True) -> dict[str, float]:
    """Share of ``part`` users (those whose visible history lacks ``target``) whose
    full-catalog top k, history masked, holds ``target``; ties count against it."""
    model.eval()
    tables = model.item_tables()
    users = batcher.eval_users(part)
    ranks = []
    for start in range(0, len(users), batch_size):
        batch, history = batcher.eval_batch(users[start:start + batch_size], part)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            states = model.encode(batch, tables)
        sel = batch.next_item
        chosen = UserStates(states.h[sel].float(), states.query[sel].float(),
                            states.scenario[sel])
        scores = model.catalog_logits(chosen, tables)
        for row, items in enumerate(history):
            if target in items:
                continue
            row_scores = scores[row].clone()
            row_scores[torch.from_numpy(items - 1)] = -torch.inf
            ranks.append(int((row_scores >= row_scores[target - 1]).sum()) - 1)
    rank = np.asarray(ranks)
    out = {f"target_hr@{k}": float((rank < k).mean()) for k in ks}
    return {**out, "target_mean_rank": float(rank.mean()), "target_users": float(len(rank))}


def run_config(name: str) -> RunConfig:
    defence = name.partition("-")[2]
    # no refit: the recorded runs (poisoning.json) scored the model selected on valid, and a
    # refit would double every run's time without changing what the defences are judged on
    return load_run_config(DEFENCES[defence] if defence else None,
                           **{"data.dataset": DATASET, "train.refit": False})


def attack_for(name: str, prepared: Prepared) -> Attack | None:
    if name == "clean":
        return None
    return Attack(target=pick_target(prepared, SEED), share=SHARE,
                  filler=name.partition("-")[0], seed=SEED)


def _trained(out_dir: Path, config: RunConfig, prepared: Prepared) -> dict[str, Any] | None:
    """The metrics of a finished bundle in ``out_dir`` trained with ``config`` (its budget
    resolved on ``prepared``, as the bundle saves it) on as many users (a run killed before
    its bundle was written is trained again)."""

    try:
        meta = json.loads((out_dir / "config.json").read_text())
        metrics = json.loads((out_dir / "metrics.json").read_text())
        users = json.loads((out_dir / "catalog.json").read_text())["user_ids"]
    except (OSError, ValueError, KeyError):
        return None
    same = (from_dict(RunConfig, meta["run"]) == budgeted(config, prepared)[0]
            and len(users) == len(prepared.catalog.user_ids))
    return metrics if same else None


def one_run(name: str, clean: Prepared) -> dict[str, Any]:
    """Train (or reuse) run ``name`` and measure it."""
    from mtrec.recommender import Recommender
    from mtrec.train.robust import suspicious_users

    config, attack = run_config(name), attack_for(name, clean)
    prepared = clean if attack is None else inject_fake_users(clean, attack)
    out_dir = home(None) / "poisoning" / name
    started = time.perf_counter()
    metrics = _trained(out_dir, config, prepared)
    reused = metrics is not None
    if metrics is None:
        log(f"{name}: training into {out_dir}")
        metrics = train_run(config, out_dir, prepared=prepared)
    rec = Recommender.load(out_dir)
    target = pick_target(clean, SEED)
    found = target_hit_rate(rec.model, rec.batcher, target, autocast=config.train.bf16)
    test = metrics["test"]
    record: dict[str, Any] = {
        "run": name, "filler": attack.filler if attack else None,
        "fake_users": int(is_fake(prepared).sum()), "defences": to_dict(config.train.robust),
        **found, "ndcg@10": test["next_item/ndcg@10"], "recall@10": test["next_item/recall@10"],
        "valid_ndcg@10": metrics["valid"]["next_item/ndcg@10"],
        "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
        "train_seconds": metrics["train_seconds"], "reused_bundle": reused,
        "measure_seconds": round(time.perf_counter() - started, 1)}
    if config.train.robust.user_filter != "none":
        flagged = suspicious_users(prepared.interactions, config.train.robust)
        fake = is_fake(prepared)
        record["filter"] = {"flagged_fake": int((flagged & fake).sum()),
                            "flagged_real": int((flagged & ~fake).sum())}
    log(f"{name}: target HR@10 {found['target_hr@10']:.4f}, NDCG@10 {record['ndcg@10']:.4f}")
    return record


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Promotion per filler, undefended and per defence, and the clean-NDCG change."""
    out: dict[str, Any] = {}
    clean = runs.get("clean")
    for filler in FILLERS:
        plain = runs.get(filler)
        if clean is None or plain is None:
            continue
        promotion = plain["target_hr@10"] - clean["target_hr@10"]
        row: dict[str, Any] = {"promotion_hr@10": promotion}
        for defence in DEFENCES:
            defended = runs.get(f"{filler}-{defence}")
            if defended is None:
                continue
            kept = defended["target_hr@10"] - clean["target_hr@10"]
            row[defence] = {"promotion_hr@10": kept,
                            "promotion_kept": kept / promotion if promotion else None,
                            "ndcg@10_vs_undefended": defended["ndcg@10"] / plain["ndcg@10"] - 1,
                            "ndcg@10_vs_clean": defended["ndcg@10"] / clean["ndcg@10"] - 1}
        out[filler] = row
    return out


def filter_flags(clean: Prepared) -> dict[str, dict[str, int]]:
    """What the cohort filter flags on each poisoned training set (no training needed)."""
    from mtrec.train.robust import suspicious_users

    robust = run_config("random-filter").train.robust
    out = {}
    for filler in FILLERS:
        poisoned = inject_fake_users(clean, attack_for(filler, clean))  # type: ignore[arg-type]
        flagged, fake = suspicious_users(poisoned.interactions, robust), is_fake(poisoned)
        out[filler] = {"fake_users": int(fake.sum()), "flagged_fake": int((flagged & fake).sum()),
                       "flagged_real": int((flagged & ~fake).sum())}
    flagged = suspicious_users(clean.interactions, robust)
    out["clean"] = {"fake_users": 0, "flagged_fake": 0, "flagged_real": int(flagged.sum())}
    return out


def markdown_table(record: dict[str, Any]) -> str:
    """The recorded runs as the README's Markdown table."""
    runs, rows = record["runs"], []
    clean = runs.get("clean", {}).get("target_hr@10")
    head = ("| run | fake users left in training | target HR@10 | target HR@50 | promotion "
            "HR@10 | clean NDCG@10 | Recall@10 | epochs (best) | train s |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in RUNS:
        run = runs.get(name)
        if run is None:
            continue
        left = run["fake_users"] - run.get("filter", {}).get("flagged_fake", 0)
        lift = "-" if clean is None or name == "clean" else f"{run['target_hr@10'] - clean:+.4f}"
        rows.append(f"| {name} | {left} | {run['target_hr@10']:.4f} | {run['target_hr@50']:.4f} "
                    f"| {lift} | {run['ndcg@10']:.4f} | {run['recall@10']:.4f} "
                    f"| {run['epochs_run']} ({run['best_epoch']}) | {run['train_seconds']:.0f} |")
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks poisoning",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS),
                        help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--table", action="store_true",
                        help="print the recorded runs as a Markdown table and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(RESULTS.read_text())))
        return
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; known: {', '.join(RUNS)}")
    clean = prepare_run(load_run_config(None, **{"data.dataset": DATASET}))
    target = pick_target(clean, SEED)
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    flags = filter_flags(clean)
    log(f"cohort filter flags: {flags}")
    for name in names:
        started = time.perf_counter()
        result = one_run(name, clean)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        result["machine"] = describe()
        record["runs"][name] = result
        record.update(
            benchmark="poisoning", dataset=DATASET, protocol=clean.protocol, seed=SEED,
            share=SHARE, command="python -m benchmarks poisoning",
            target={"code": target, "item_id": str(clean.catalog.item_ids[target]),
                    "train_interactions": int(train_counts(clean.interactions,
                                                           clean.catalog.n_items)[target]),
                    "text": clean.catalog.texts[target][:120]},
            real_users=len(clean.catalog.user_ids), summary=summary(record["runs"]),
            filter_flags=flags)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(record, indent=2, default=str) + "\n")
        log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
