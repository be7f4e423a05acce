"""``mtrec policy train`` and ``mtrec policy eval``: a ranking policy for long-term value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mtrec.cli_common import AsJson, DataRoot, StoreDir, _emit, _kv_table, _user_errors

app = typer.Typer(help="A ranking policy trained for long-term value in a user simulator "
                       "learned from the logs.", no_args_is_help=True)


@app.command("train")
def train(
    dataset: Annotated[str, typer.Option(help="A dataset with timestamps (e.g. retailrocket).")],
    out: Annotated[Path, typer.Option(
        help="Bundle directory: the ranking model at the cut is trained here unless it "
             "already holds one; the policy is written into it (policy/).")],
    seed: Annotated[int, typer.Option(help="Seed of the user split and the training.")] = 0,
    iterations: Annotated[int, typer.Option(help="Most REINFORCE iterations.")] = 60,
    horizon_days: Annotated[int | None, typer.Option(
        help="Episode days; the cut is the end of the data minus them (default: the "
             "dataset's protocol, else 30).")] = None,
    return_days: Annotated[str | None, typer.Option(
        help="Comma-separated return horizons the simulator is checked on (e.g. 7,30).")]
    = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML or JSON run config for the ranking model (when OUT has none yet).")]
    = None,
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Train the ranking model at the cut (unless OUT holds one), fit the training
    simulator on half of the users, train the policy in it, save it into OUT."""
    from dataclasses import replace

    from mtrec.policy.commands import train as run
    from mtrec.policy.experiment import PROTOCOLS, PolicyProtocol

    with _user_errors():
        protocol = PROTOCOLS.get(dataset, PolicyProtocol())
        if horizon_days:
            protocol = replace(protocol, horizon_days=horizon_days, return_days=tuple(
                d for d in protocol.return_days if d <= horizon_days) or (horizon_days,))
        if return_days:
            protocol = replace(protocol, return_days=_days(return_days))
        result = run(dataset, out, seed, iterations, root, store_dir, protocol,
                     {"config": config} if config else None)
    _emit(result, as_json, lambda: Console().print(_kv_table(
        f"Policy trained into {out}", {k: v for k, v in result.items()
                                       if k != "simulator_validation"})))


@app.command("eval")
def evaluate(
    bundle: Annotated[Path, typer.Option(help="A bundle with a policy (mtrec policy train).")],
    seeds: Annotated[int, typer.Option(help="Seeds (fresh user splits and policies).")] = 5,
    sim_users: Annotated[int | None, typer.Option(
        help="Users simulated per evaluation (default: the protocol's, 1,000).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Result JSON (default BUNDLE/policy/eval.json; per-seed caches beside it).")]
    = None,
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Judge the policy in a simulator fitted on other users than its own and on the logs
    (SNIPS / DR), against greedy, the blend, the retrieval order, popularity and random."""
    from mtrec.policy.commands import evaluate as run

    if seeds < 2:
        raise typer.BadParameter("at least 2 seeds (the interval needs a spread)",
                                 param_hint="--seeds")
    with _user_errors():
        result = run(bundle, tuple(range(seeds)), out, root, store_dir, sim_users)
    _emit(result["summary"], as_json, lambda: _render(result))


def _days(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        raise ValueError(f"--return-days {text!r}: give whole days, e.g. 7,30") from None


def _render(result: dict[str, Any]) -> None:
    summary = result["summary"]
    table = Table(title=f"Policies on {result['dataset']} (mean [95 % interval] over "
                        f"{len(result['seeds'])} seeds; held-out simulator, logs)",
                  title_justify="left")
    figures = ("reward", "return_rate", "sessions_per_user", "purchases_per_user", "ndcg@10",
               "purchase_auc")
    table.add_column("policy", style="bold")
    for f in figures:
        table.add_column(f, justify="right")
    for name, row in summary["policies"].items():
        table.add_row(name, *(_ci(row[f]) for f in figures))
    console = Console()
    console.print(table)
    gain = summary["reward_gain_vs_greedy"]
    console.print(f"long-term reward vs greedy: {gain['mean']:+.1%} "
                  f"[{gain['low']:+.1%}, {gain['high']:+.1%}]")


def _ci(v: dict[str, float]) -> str:
    return f"{v['mean']:.4f} [{v['low']:.4f}, {v['high']:.4f}]"
