"""``mtrec train``, ``mtrec eval`` and ``mtrec recommend``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mtrec.cli_common import AsJson, DataRoot, StoreDir, _emit, _kv_table, _user_errors

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="TOML or JSON run config; flags given here override it.")]


def train(
    dataset: Annotated[str | None, typer.Option(
        help="Dataset name (registered, or imported into --store-dir) or a .duckdb store "
             "file (default amazon-beauty); several joined by '+' are one multi-source "
             "dataset, each part a scenario.")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="Comma-separated tasks, e.g. next_item,rating,like,engagement.")] = None,
    config: ConfigFile = None,
    protocol: Annotated[str | None, typer.Option(
        help="Split protocol (default loo); for a multi-source dataset one, or one per part "
             "joined by '/' (loo/source).")] = None,
    item_ids: Annotated[str | None, typer.Option(
        help="Multi-source dataset: 'shared' (an item id in two parts is one item; texts "
             "must agree) or 'per-source' (ids prefixed with their part).")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Most epochs (early stop may end first); 0: from the data (the default).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop the selection after this many minutes of training (the best epoch so far "
             "is kept; a refit then trains that many epochs).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    no_text: Annotated[bool, typer.Option("--no-text", help="ID embeddings only.")] = False,
    refit: Annotated[bool | None, typer.Option(
        "--refit/--no-refit",
        help="After choosing the epoch count on valid, retrain on train + valid for it "
             "(the default; --no-refit keeps the selected model).")] = None,
    init: Annotated[Path | None, typer.Option(
        help="Start from this pre-trained model (a bundle of `mtrec pretrain` or `mtrec "
             "train`): the weights that fit are loaded, the old catalog's are not.")] = None,
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")] = Path("bundle"),
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint.")] = False,
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Train one multi-task model, choose the epoch on validation, write a bundle."""
    from mtrec.run_config import load_run_config
    from mtrec.train.run import train_run

    with _user_errors():
        run = load_run_config(
            config, **{"data.dataset": dataset, "data.protocol": protocol,
                       "data.item_ids": item_ids,
                       "model.tasks": tasks.split(",") if tasks else None,
                       "train.epochs": epochs, "train.seed": seed,
                       "train.max_minutes": max_minutes, "train.refit": refit,
                       "train.init": str(init) if init is not None else None,
                       "model.item.use_text": False if no_text else None})
        result = train_run(run, out, root=root, store_dir=store_dir, resume=resume)
    if result:
        _emit(result, as_json, lambda: render_metrics(result, f"Trained {out}"))


def pretrain(
    datasets: Annotated[str, typer.Option(
        help="Comma-separated datasets with item text, e.g. amazon-beauty,amazon-scientific.")],
    out: Annotated[Path, typer.Option(help="Directory of the pre-trained model (a bundle).")],
    config: ConfigFile = None,
    epochs: Annotated[int | None, typer.Option(
        help="Most epochs (early stop may end first); 0: from the data (the default).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop after this many minutes of training (the best epoch is kept).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    item_contrast: Annotated[float, typer.Option(
        help="Weight of the item <-> item contrast between augmented text views (0: off).")]
    = 0.1,
    masked_item: Annotated[float, typer.Option(
        help="Weight of masked-item recovery over the sequences (0: off).")] = 0.0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint.")] = False,
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Self-supervised pre-training over several datasets' text and sequences (no task
    labels); `mtrec train --init OUT` starts a model from the result."""
    from mtrec.pretrain.objectives import ObjectiveConfig
    from mtrec.pretrain.run import pretrain_run
    from mtrec.run_config import load_run_config

    with _user_errors():
        run = load_run_config(config, **{"train.epochs": epochs, "train.seed": seed,
                                         "train.max_minutes": max_minutes})
        objectives = ObjectiveConfig(item_contrast=item_contrast, masked_item=masked_item)
        result = pretrain_run(run, datasets.split(","), out, objectives, root=root,
                              store_dir=store_dir, resume=resume)
    _emit(result, as_json, lambda: render_metrics(result, f"Pre-trained {out}"))


def evaluate(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate a bundle on its dataset's validation or test part."""
    from mtrec.train.evaluate import evaluate_bundle

    with _user_errors():
        result = evaluate_bundle(bundle, split, root=root, store_dir=store_dir)
    if "note" in result:
        typer.echo(f"note: {result['note']}", err=True)
    _emit(result, as_json, lambda: render_metrics({split: result["metrics"], **result},
                                                  f"{bundle} on {split}"))


def recommend(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")],
    user: Annotated[str, typer.Option(help="User id.")],
    k: Annotated[int, typer.Option(help="How many items.")] = 10,
    scenario: Annotated[str | None, typer.Option(help="Scenario to recommend for.")] = None,
    objective: Annotated[str | None, typer.Option(
        help="Task weights, e.g. next_item=1,purchase=0.5.")] = None,
    as_json: AsJson = False,
) -> None:
    """Top-k items for a user, with every task's score."""
    from mtrec.recommender import Recommender

    with _user_errors():
        weights = _parse_objective(objective)
        rec = Recommender.load(bundle)
        items = rec.recommend(user, k, scenario=scenario, objective=weights)
    rows = [{"item_id": r.item_id, "score": r.score, "scores": r.scores, "text": r.text,
             "because": [{"item_id": i, "similarity": v} for i, v in r.because]}
            for r in items]
    _emit({"user": user, "items": rows}, as_json, lambda: _render_items(user, rows))


def _parse_objective(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--objective: expected task=weight, got {part!r}") from None
        if not sep:
            raise ValueError(f"--objective: expected task=weight, got {part!r}")
    return out


def render_metrics(result: dict[str, Any], title: str) -> None:
    """Tasks x metrics for the valid and test parts, then the run summary."""
    console = Console()
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    parts = [p for p in ("valid", "test") if isinstance(result.get(p), dict)]
    for p in parts:
        table.add_column(p, justify="right")
    names = list(dict.fromkeys(k for p in parts for k in result[p]))
    for name in names:
        table.add_row(name, *(_fmt(result[p].get(name)) for p in parts))
    console.print(table)
    keys = ("dataset", "protocol", "tasks", "best_epoch", "epochs_run", "train_seconds",
            "peak_rss_gib")
    run = {k: result[k] for k in keys if k in result}
    if "text_match" in result:  # chosen on validation; 0 = the channel is off
        run["text_match_scale"] = result["text_match"]["scale"]
    console.print(_kv_table("Run", run))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _render_items(user: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"Recommendations for user {user}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    tasks = list(rows[0]["scores"]) if rows else []
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("text")
    for n, r in enumerate(rows, 1):
        table.add_row(str(n), r["item_id"], f"{r['score']:.4g}",
                      *(f"{r['scores'][t]:.4g}" for t in tasks), r["text"][:60])
    Console().print(table)
