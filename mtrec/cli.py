"""``mtrec``: one sub-command per job.  Every command that prints a table takes ``--json``."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.table import Table

from mtrec import cli_export, cli_model, cli_policy, cli_report, cli_serve
from mtrec.cli_common import (
    AsJson,
    DataRoot,
    StoreDir,
    _emit,
    _err,
    _kv_table,
    _progress,
    _user_errors,
    quiet_third_party,
)
from mtrec.data.builder import ImportResult
from mtrec.data.clean import CleanConfig, EventArrays
from mtrec.data.imports import find_store, home, import_dataset, import_files, store_path
from mtrec.data.sources import DATASETS
from mtrec.data.sources.base import data_root
from mtrec.data.sources.formats import FORMATS, GENERIC
from mtrec.data.sources.generic import ColumnMapping
from mtrec.data.split import PARTS, SplitConfig, split_events
from mtrec.data.stats import dataset_stats
from mtrec.data.store import Store

app = typer.Typer(help="mtrec: multi-task recommendation from raw logs to a live service.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Import, inspect and split datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(cli_policy.app, name="policy")


@app.callback()
def _options(verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show third-party progress bars and logs (hidden by default).")]
        = False) -> None:
    quiet_third_party(verbose)



@data_app.command("list")
def data_list(root: DataRoot = None, store_dir: StoreDir = None, as_json: AsJson = False) -> None:
    """List the registered datasets (are their files found? imported?) and the datasets
    imported under their own names into the store directory."""
    base = data_root(root)
    rows: list[dict[str, Any]] = [
        {"name": s.name, "description": s.description, "folder": str(base / s.folder),
         "found": (base / s.folder).is_dir(),
         "imported": store_path(s.name, store_dir).is_file(), "url": s.url}
        for s in DATASETS.values()
    ]
    folder = home(store_dir)
    rows += [{"name": p.stem, "description": f"imported into {folder}", "folder": None,
              "found": True, "imported": True, "url": None}
             for p in sorted(folder.glob("*.duckdb")) if p.stem not in DATASETS]

    def render() -> None:
        table = Table(title=f"Datasets under {base}", title_justify="left")
        for col in ("name", "found", "imported", "description"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["name"], "yes" if r["found"] else "[red]no[/]",
                          "yes" if r["imported"] else "no", r["description"])
        Console().print(table)

    _emit({"data_root": str(base), "datasets": rows}, as_json, render)


@data_app.command("formats")
def data_formats(as_json: AsJson = False) -> None:
    """The source formats `mtrec data import NAME --format F --source PATH` reads."""
    rows: list[dict[str, Any]] = [
        {"format": f.name, "description": f.description, "files": list(f.files)}
        for f in FORMATS.values()]
    rows.append({"format": GENERIC[0], "description": GENERIC[1], "files": list(GENERIC[2])})

    def render() -> None:
        table = Table(title="Source formats (NAME: read from the folder)", title_justify="left")
        for col in ("format", "description", "files"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["format"], r["description"], "\n".join(r["files"]))
        Console().print(table)

    _emit({"formats": rows}, as_json, render)


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help="Dataset name (see `mtrec data list`), or a "
                                            "new name with --format, --events or --mapping.")],
    root: DataRoot = None,
    source: Annotated[str | None, typer.Option(
        help="Folder, .zip/.tar.gz archive or http(s) URL holding the dataset's files.")] = None,
    source_format: Annotated[str | None, typer.Option(
        "--format", help="The layout of --source's files (`mtrec data formats`), for a "
                         "dataset under its own name.")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="JSON/TOML column mapping for your own CSV/Parquet files.")] = None,
    events: Annotated[Path | None, typer.Option(
        help="Your events file; columns named user_id, item_id, ... need no --map.")] = None,
    items: Annotated[Path | None, typer.Option(help="Your items file.")] = None,
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="FIELD=COLUMN, e.g. --map user_id=uid --map item_id=sku.")] = None,
    store_dir: StoreDir = None,
    strict: Annotated[bool, typer.Option(help="Fail on the first malformed row.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    as_json: AsJson = False,
) -> None:
    """Import a dataset into its store, replacing an earlier import of it."""
    started = time.perf_counter()
    with _user_errors():
        if source_format == GENERIC[0]:
            events, items = _generic_files(source, events, items)
            source, source_format = None, None
        own_files = bool(mapping or events)
        _check_import_options(name, own_files, bool(items or map_), source_format,
                              bool(source or root))
        with _progress(f"importing {name}", _import_size(name, root, source, own_files),
                       quiet or as_json) as progress:
            if own_files:
                spec = _mapping(mapping, events, items, map_ or [])
                path, result = import_files(name, spec, store_dir=store_dir, strict=strict,
                                            progress=progress)
            else:
                path, result = import_dataset(name, root=root, source=source,
                                              store_dir=store_dir, strict=strict,
                                              progress=progress, source_format=source_format)
    summary = _import_summary(path, result, started)
    _emit(summary, as_json, lambda: _render_import(summary, result))


def _check_import_options(name: str, own_files: bool, described: bool,
                          source_format: str | None, located: bool) -> None:
    if not own_files and described:
        raise ValueError("--items and --map describe your own files: give --events too")
    if own_files and (located or source_format):
        raise ValueError("--source/--data-root/--format name a dataset's folder in a known "
                         "format; your own files come with --events or --mapping")
    if own_files or source_format:
        _check_own_name(name, built_in_ok=not own_files)


def _generic_files(source: str | None, events: Path | None, items: Path | None
                   ) -> tuple[Path, Path | None]:
    """``--format generic --source DIR``: DIR/events.* and, when there, DIR/items.*."""
    if events is not None or source is None:
        raise ValueError("--format generic takes --source DIR (holding events.csv and "
                         "optionally items.csv); or give --events without --format")
    folder = Path(source)
    found = {stem: next((folder / f"{stem}{ext}" for ext in (".csv", ".tsv", ".parquet")
                         if (folder / f"{stem}{ext}").is_file()), None)
             for stem in ("events", "items")}
    if found["events"] is None:
        raise ValueError(f"--format generic: {folder} holds no events.csv, events.tsv "
                         "or events.parquet")
    return found["events"], items or found["items"]


def _import_size(name: str, root: Path | None, source: str | None, own_files: bool
                 ) -> int | None:
    """Bytes a registered dataset's folder holds (the progress bar's total), else None."""
    if own_files or source is not None or name not in DATASETS:
        return None
    folder = data_root(root) / DATASETS[name].folder
    return (sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            if folder.is_dir() else None)


def _import_summary(path: Path, result: ImportResult, started: float) -> dict[str, Any]:
    return {**result.summary(), "store": str(path),
            "seconds": round(time.perf_counter() - started, 2),
            "first_dropped_rows": [f"{b.file}:{b.line}: {b.reason}"
                                   for b in result.log.bad_rows[:10]]}


def _render_import(summary: dict[str, Any], result: ImportResult) -> None:
    shown = {k: summary[k] for k in ("users", "items", "events", "events_by_behavior",
                                     "rows_dropped", "rows_dropped_by_reason", "notes",
                                     "store", "seconds")}
    Console().print(_kv_table(f"Imported {summary['dataset']}", shown))
    for line in summary["first_dropped_rows"]:
        _err().print(f"[yellow]dropped[/] {line}", highlight=False)
    if len(result.log.bad_rows) > 10:
        _err().print(f"... and {len(result.log.bad_rows) - 10} more (table 'quarantine')")


def _check_own_name(name: str, built_in_ok: bool = False) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-' only")
    if name in DATASETS and not built_in_ok:
        raise ValueError(f"{name!r} is a built-in dataset; import your files under another name")


def _mapping(path: Path | None, events: Path | None, items: Path | None, pairs: list[str]
             ) -> ColumnMapping:
    if path is not None:
        if pairs:
            raise ValueError("--map and --mapping FILE both describe columns: put the --map "
                             "entries in the file (its keys are in the README) or drop it")
        return ColumnMapping.from_file(path, events=events, items=items)
    values: dict[str, Any] = {"events": str(events)}
    if items:
        values["items"] = str(items)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--map {pair!r}: expected FIELD=COLUMN")
        if key.startswith("item."):
            values.setdefault("item_columns", {})[key[5:]] = value
        elif key == "behavior_value":
            raw, _, canon = value.partition(":")
            values.setdefault("behavior_values", {})[raw] = canon
        elif key == "keep_extra_columns":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"--map {pair!r}: expected true or false")
            values[key] = value.lower() in ("true", "1", "yes")
        else:
            values[key] = value
    return ColumnMapping.from_dict(values, "--map")


def _open_or_import(name: str, root: Path | None, store_dir: Path | None,
                    read_only: bool = False) -> Store:
    if name in DATASETS and not store_path(name, store_dir).is_file():
        _err().print(f"{name} is not imported yet: importing it into "
                     f"{store_path(name, store_dir)}")
    return Store.open(find_store(name, store_dir, root), read_only=read_only)


@data_app.command("stats")
def data_stats(name: str, root: DataRoot = None, store_dir: StoreDir = None,
               as_json: AsJson = False) -> None:
    """Users, items, interactions, behaviours, splits and dropped rows of a dataset."""
    with _user_errors(), _open_or_import(name, root, store_dir, read_only=True) as store:
        stats = dataset_stats(store)
    _emit(stats, as_json, lambda: Console().print(_kv_table(f"Dataset {name}", stats)))


@data_app.command("split")
def data_split(
    name: str,
    protocol: Annotated[str, typer.Option(
        help="loo, temporal, ratio, cold-item, cold-user, pair or source.")] = "loo",
    valid_frac: Annotated[float, typer.Option(help="Validation share (not loo).")] = 0.1,
    test_frac: Annotated[float, typer.Option(help="Test share (not loo).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for the cold-* protocols.")] = 0,
    kcore: Annotated[int, typer.Option(help="Keep users/items with >= K events.")] = 0,
    dedupe: Annotated[bool, typer.Option(help="Drop exact duplicate events.")] = True,
    behaviors: Annotated[str | None, typer.Option(
        help="Split only these behaviours, comma-separated (e.g. purchase).")] = None,
    root: DataRoot = None,
    store_dir: StoreDir = None,
    as_json: AsJson = False,
) -> None:
    """Split a dataset by a named protocol, check it for leakage and store the assignment."""
    with _user_errors():
        config = SplitConfig(protocol, valid_frac, test_frac, seed)
        kept = tuple(b.strip() for b in behaviors.split(",")) if behaviors else None
        report = _split(name, config, CleanConfig(dedupe, kcore, kept), root, store_dir)
    _emit(report, as_json, lambda: _render_split(report))


def _split(name: str, config: SplitConfig, clean_config: CleanConfig, root: Path | None,
           store_dir: Path | None) -> dict[str, Any]:
    with _open_or_import(name, root, store_dir) as store:
        events = EventArrays.from_store(store)
        parts, report = split_events(events, config, clean_config)
        table = pa.table({"seq": events.seq, "part": [PARTS[p] for p in parts]})
        store.save_split(config.protocol, table, report)
    return {"dataset": name, **report}


def _render_split(report: dict[str, Any]) -> None:
    table = Table(title=f"{report['dataset']}: split {report['protocol']} "
                        f"(dropped by cleaning: {report['clean']['dropped']})",
                  title_justify="left")
    for col in ("part", "events", "users", "items"):
        table.add_column(col, justify="right")
    for part, counts in report["parts"].items():
        table.add_row(part, *(f"{counts[k]:,}" for k in ("events", "users", "items")))
    Console().print(table)


@app.command()
def demo(root: DataRoot = None, store_dir: StoreDir = None, as_json: AsJson = False,
         out: Annotated[Path | None, typer.Option(
             help="Bundle directory (default: STORE_DIR/bundles/amazon-beauty).")] = None,
         train: Annotated[bool, typer.Option(help="Train and evaluate the model.")] = True,
         ) -> None:
    """The main job: import Amazon Beauty, split it, train the default model, evaluate it,
    and write its report (BUNDLE/report/report.html)."""
    from mtrec.report import write_report
    from mtrec.run_config import load_run_config
    from mtrec.train.run import train_run

    name = "amazon-beauty"
    with _user_errors():
        started = time.perf_counter()
        path, result = import_dataset(name, root=root, store_dir=store_dir)
        imported = _import_summary(path, result, started)
        with Store.open(path) as store:
            stats = dataset_stats(store)
        split = _split(name, SplitConfig("loo"), CleanConfig(), root, store_dir)
        if not as_json:
            console = Console()
            console.print(_kv_table(f"Imported {name} in {imported['seconds']} s", {
                k: imported[k] for k in ("users", "items", "events", "rows_dropped", "store")}))
            console.print(_kv_table(f"Dataset {name}", stats))
            _render_split(split)
        trained, report = {}, None
        if train:
            bundle_dir = out or home(store_dir) / "bundles" / name
            trained = train_run(load_run_config(None, **{"data.dataset": name}), bundle_dir,
                                root=root, store_dir=store_dir)
            trained["bundle"] = str(bundle_dir)
            report = write_report(bundle_dir, bundle_dir / "report")
    if as_json:
        typer.echo(json.dumps({"import": imported, "stats": stats, "split": split,
                               "train": trained,
                               "report": cli_report.files_summary(report) if report else None},
                              indent=2, default=str))
    elif trained:
        cli_model.render_metrics(trained, f"Default model on {name}: bundle {trained['bundle']}")
        if report is not None:
            cli_report.print_written(report)


app.command("train")(cli_model.train)
app.command("pretrain")(cli_model.pretrain)
app.command("eval")(cli_model.evaluate)
app.command("recommend")(cli_model.recommend)
app.command("serve")(cli_serve.serve)
app.command("key")(cli_serve.key)
app.command("report")(cli_report.report)
app.command("export")(cli_export.export)
app.command("distill")(cli_export.distill)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
