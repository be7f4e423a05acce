"""``python -m benchmarks policy``: its table from a recorded result."""

from __future__ import annotations

from benchmarks.policy import FIGURES, _finite_mean, render
from mtrec.policy.experiment import LEARNED


def _ci(mean):
    return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1, "n": 2}


def test_render_shows_every_policy_the_gain_and_the_checks():
    row = {f: _ci(0.5) for f in FIGURES}
    ope = {"logged_actions": 10, "coverage": 0.1, "clip": 10.0, "slate": 10,
           LEARNED: {"snips": float("nan"), "dr": 0.2, "effective_n": 3.0},
           "greedy (purchase)": {"snips": 0.4, "dr": 0.3, "effective_n": 5.0}}
    run = {"users": {"simulated": 1000}, "off_policy": ope, "simulator": {
        "calibration": {"take": {"ece": 0.1}}, "returns": {
            "sim_return_7d": 0.1, "real_return_7d": 0.2, "sim_taken_per_session": 2.0,
            "real_taken_per_active_day": 3.0}}}
    res = {"dataset": "x", "cut": 0, "protocol": {"horizon_days": 30, "return_days": [7]},
           "users_before_cut": 100, "seeds": [0, 1], "runs": [run, run],
           "summary": {"policies": {LEARNED: row, "greedy (purchase)": row},
                       "reward_gain_vs_greedy": _ci(0.05), "ndcg_change_vs_greedy": _ci(0.0)}}
    text = render(res)
    assert f"| **{LEARNED}** |" in text and "| greedy (purchase) |" in text
    assert "+5.0% [-5.0%, +15.0%]" in text
    assert "| n/a | 0.2000 | 3 |" in text  # no SNIPS where nothing logged was exposed
    assert "10 to 10 logged items a seed" in text
    assert "7 d: simulated 0.100 vs real 0.200" in text
    assert _finite_mean([float("nan")]) == "n/a"
