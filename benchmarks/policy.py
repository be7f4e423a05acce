"""A ranking policy for long-term value against greedy ranking, in a user simulator fitted on
other users than the policy's and on the logs (issue: long-term engagement, parts 3-5).

    python -m benchmarks policy                        # RetailRocket, seeds 0-4
    python -m benchmarks policy --datasets retailrocket --seeds 5

Writes benchmarks/results/policy_<dataset>.json and .md; each seed is cached as it finishes
(benchmarks/results/runs/policy-<dataset>/eval.seeds/), so a rerun resumes.

Protocol (mtrec/policy/experiment.py): the cut is the end of the data minus the horizon; the
ranking model (next item + purchase) trains on the events before it (the bundle is kept in
.mtrec/bench/policy-<dataset>/bundle).  Per seed, the users active before the cut are split
in halves: the training simulator is fitted on one half (the policy trains by REINFORCE on
80 % of it, its iteration picked on the other 20 %), the evaluation simulator on the other
half, on which every policy is judged (at least 1,000 simulated users, drawn with
replacement); immediate NDCG@10 and purchase AUC come from what those users did after the
cut in the logs; SNIPS and doubly robust estimates from the same logs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from mtrec.policy.commands import evaluate, train
from mtrec.policy.experiment import LEARNED, PROTOCOLS
from mtrec.policy.store import has_policy

RESULTS = Path(__file__).parent / "results"
HOME = Path(__file__).parent.parent / ".mtrec" / "bench"
# The ranking model is shared by every policy of a comparison (it retrieves and scores the
# candidates they all re-order), so its budget does not favour any of them; on Taobao
# (357,412 events, about 5-10 minutes an epoch here) it is capped to fit a sitting.
RANKER: dict[str, dict[str, Any]] = {
    "taobao-ub": {"train.epochs": 4, "train.refit": False}}
FIGURES = ("reward", "return_rate", "sessions_per_user", "purchases_per_user", "ndcg@10",
           "purchase_auc")


def compare(dataset: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    started = time.perf_counter()
    bundle = HOME / f"policy-{dataset}" / "bundle"
    if not has_policy(bundle):
        train(dataset, bundle, seed=0, ranker=dict(RANKER.get(dataset, {})))
    runs = RESULTS / "runs" / f"policy-{dataset}"
    runs.mkdir(parents=True, exist_ok=True)
    result = evaluate(bundle, seeds, runs / "eval.json")
    meta = json.loads((bundle / "metrics.json").read_text())
    for run in result["runs"][1:]:  # the curve of the first seed is enough for the report
        run["training"].pop("curve", None)
    return {**result, "machine": describe(("torch", "gymnasium")),
            "ranker_test": {k: meta["test"][k] for k in ("next_item/ndcg@10",
                                                          "next_item/recall@10")
                            if k in meta.get("test", {})},
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _ci(v: dict[str, float], pct: bool = False) -> str:
    if pct:
        return f"{v['mean']:+.1%} [{v['low']:+.1%}, {v['high']:+.1%}]"
    return f"{v['mean']:.4f} [{v['low']:.4f}, {v['high']:.4f}]"


def _finite_mean(values: list[float]) -> str:
    """Mean over the seeds with an estimate (a policy that exposes no logged item has none).

    >>> _finite_mean([1.0, float("nan"), 2.0])
    '1.5000 (2 seeds)'
    """
    ok = [v for v in values if math.isfinite(v)]
    if not ok:
        return "n/a"
    return f"{sum(ok) / len(ok):.4f}" + (f" ({len(ok)} seeds)" if len(ok) < len(values) else "")


def render(res: dict[str, Any]) -> str:
    s = res["summary"]
    cut = datetime.fromtimestamp(res["cut"], UTC).strftime("%Y-%m-%d %H:%M")
    first = res["runs"][0]
    lines = [f"**{res['dataset']}** (cut {cut} UTC, {res['protocol']['horizon_days']}-day "
             f"episodes, {res['users_before_cut']:,} users before the cut, "
             f"{first['users']['simulated']:,} simulated per seed; mean [95 % interval] over "
             f"{len(res['seeds'])} seeds)", "",
             "| policy | " + " | ".join(FIGURES) + " |", "|---|" + "---:|" * len(FIGURES)]
    for name, row in s["policies"].items():
        label = f"**{name}**" if name == LEARNED else name
        lines.append(f"| {label} | " + " | ".join(_ci(row[f]) for f in FIGURES) + " |")
    lines += ["", f"Long-term reward of the RL policy against greedy (paired per seed): "
              f"{_ci(s['reward_gain_vs_greedy'], True)}; immediate NDCG@10: "
              f"{_ci(s['ndcg_change_vs_greedy'], True)}.", ""]
    ope = [r["off_policy"] for r in res["runs"] if "error" not in r["off_policy"]]
    if ope:
        n = [o["logged_actions"] for o in ope]
        cov = [o["coverage"] for o in ope]
        lines += [f"Off-policy on the logs (mean over seeds; {min(n):,} to {max(n):,} logged "
                  f"items a seed inside the candidates, coverage {min(cov):.1%} to "
                  f"{max(cov):.1%}; weights clipped at {ope[0]['clip']:g}):", "",
                  "| policy | SNIPS | DR | effective n |", "|---|---:|---:|---:|"]
        for name in s["policies"]:
            vals = [o[name] for o in ope]
            lines.append(f"| {name} | " + " | ".join(_finite_mean([v[k] for v in vals])
                                                    for k in ("snips", "dr"))
                         + f" | {sum(v['effective_n'] for v in vals) / len(vals):.0f} |")
        lines.append("")
    checks = first["simulator"]
    cal = checks["calibration"]
    ret = checks["returns"]
    days = res["protocol"]["return_days"]
    lines += ["Evaluation simulator, seed 0, against the held-out logs: calibration error "
              + ", ".join(f"{h} {c['ece']:.3f}" for h, c in cal.items()) + "; return within "
              + ", ".join(f"{d} d: simulated {ret[f'sim_return_{d}d']:.3f} vs real "
                          f"{ret[f'real_return_{d}d']:.3f}" for d in days)
              + f"; items taken per session {ret['sim_taken_per_session']:.2f} simulated vs "
              f"{ret['real_taken_per_active_day']:.2f} per active day in the logs.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks policy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="retailrocket",
                        help=f"comma-separated, of {', '.join(PROTOCOLS)}")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (at least 2)")
    args = parser.parse_args(argv)
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in PROTOCOLS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the interval needs a spread)")
    for dataset in datasets:
        result = compare(dataset, tuple(range(args.seeds)))
        out = RESULTS / f"policy_{dataset}.json"
        out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        out.with_suffix(".md").write_text(render(result))
        print(render(result))
