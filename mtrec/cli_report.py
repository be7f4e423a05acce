"""``mtrec report``: an HTML page with charts and a Markdown summary for a trained bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from mtrec.cli_common import AsJson, _emit, _user_errors

if TYPE_CHECKING:
    from mtrec.report import ReportFiles


def report(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `mtrec train`).")],
    out: Annotated[Path | None, typer.Option(
        help="Folder to write report.html, report.md and figures/ into "
             "(default: BUNDLE/report).")] = None,
    results: Annotated[Path | None, typer.Option(
        help="Folder of compare_*.json files (default: benchmarks/results of this "
             "checkout, when it exists).")] = None,
    compare: Annotated[bool, typer.Option(
        help="Compare with baselines, peers and published numbers.")] = True,
    scenarios: Annotated[bool, typer.Option(
        help="Re-evaluate the test part per scenario (datasets with several).")] = True,
    as_json: AsJson = False,
) -> None:
    """Write a bundle's report: run, training curves, test metrics, cold vs warm items,
    metrics per scenario and a comparison with other systems."""
    from mtrec.report import write_report

    with _user_errors():
        files = write_report(bundle, out, results, compare=compare, per_scenario=scenarios)
    summary = files_summary(files)
    _emit(summary, as_json, lambda: print_written(files))


def files_summary(files: ReportFiles) -> dict[str, Any]:
    return {"html": str(files.html), "markdown": str(files.markdown),
            "figures": [str(f) for f in files.figures], "seconds": round(files.seconds, 2)}


def print_written(files: ReportFiles) -> None:
    console = Console(soft_wrap=True)
    console.print(f"[bold]Report[/] {files.html}", highlight=False)
    console.print(f"Summary {files.markdown} ({len(files.figures)} charts in "
                  f"{files.html.parent / 'figures'}; {files.seconds:.1f} s)", highlight=False)
