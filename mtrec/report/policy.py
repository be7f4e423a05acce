"""The report's long-term policy section: the policy's training reward, the simulator's
calibration and return checks, and (after ``mtrec policy eval``) return rate and reward
per policy in the held-out simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mtrec.report import plots
from mtrec.report.doc import Figure, Section, Table, Text


def policy_section(bundle: Path) -> Section | None:
    """``None`` when the bundle has no policy."""
    folder = Path(bundle) / "policy"
    info_file = folder / "policy.json"
    if not info_file.is_file():
        return None
    info = json.loads(info_file.read_text())
    section = Section("policy", "Long-term ranking policy")
    curve = info.get("curve", [])
    if curve:
        section.blocks.append(Figure("policy_reward", plots.reward_curve(
            [r["iteration"] for r in curve], [_f(r["train_reward"]) for r in curve],
            [_f(r["valid_reward"]) for r in curve], info.get("best_iteration")),
            "Policy training: mean discounted reward per user in the training simulator "
            "(dashed: the kept iteration)"))
    checks = info.get("simulator_validation", {})
    cal = checks.get("calibration", {})
    if cal:
        section.blocks.append(Figure("policy_calibration", plots.calibration(
            {h: c["bins"] for h, c in cal.items()}),
            "Training simulator: response probabilities against the held-out logs ("
            + ", ".join(f"{h}: ECE {c['ece']:.3f}" for h, c in cal.items()) + ")"))
    ret = checks.get("returns", {})
    days = info.get("protocol", {}).get("return_days", [])
    if ret and days:
        section.blocks.append(Table(
            ["returns within", "simulated", "real (held-out logs)"],
            [[f"{d} days", f"{ret[f'sim_return_{d}d']:.3f}", f"{ret[f'real_return_{d}d']:.3f}"]
             for d in days], caption="Share of users back after the cut"))
    section.blocks.extend(_evaluation(folder / "eval.json"))
    return section


def _evaluation(path: Path) -> list[Any]:
    if not path.is_file():
        return [Text("No evaluation yet: `mtrec policy eval --bundle BUNDLE` judges the "
                     "policy in a simulator fitted on other users and on the logs.",
                     note=True)]
    res = json.loads(path.read_text())
    policies = res["summary"]["policies"]
    names = list(policies)
    short = [n.split(" (")[0] for n in names]
    figs: list[Any] = [Figure("policy_returns", plots.grouped_bars(
        short, {"return rate": [policies[n]["return_rate"]["mean"] for n in names]},
        "Return rate per policy (held-out simulator)"),
        f"Share of simulated users who come back after a session, mean of "
        f"{len(res['seeds'])} seeds")]
    rows = [[n, *(f"{policies[n][f]['mean']:.4f} [{policies[n][f]['low']:.4f}, "
                  f"{policies[n][f]['high']:.4f}]" for f in ("reward", "return_rate",
                                                             "ndcg@10"))] for n in names]
    gain = res["summary"]["reward_gain_vs_greedy"]
    figs += [Table(["policy", "reward", "return rate", "NDCG@10 (logs)"], rows,
                   caption="Held-out simulator and logs, mean [95 % interval] over seeds"),
             Text(f"Long-term reward of the RL policy against greedy: {gain['mean']:+.1%} "
                  f"[{gain['low']:+.1%}, {gain['high']:+.1%}].")]
    return figs


def _f(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan
