"""Build a bundle's report and write it: ``report.html`` (self-contained), ``report.md`` and
the charts as ``figures/*.svg``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mtrec.report import sections
from mtrec.report.compare import comparisons
from mtrec.report.data import BundleData, default_results_dir, read_bundle, read_comparisons
from mtrec.report.doc import Report
from mtrec.report.html import render_html
from mtrec.report.joint import remedies_section, scenarios_section
from mtrec.report.markdown import render_markdown
from mtrec.report.policy import policy_section
from mtrec.report.scenarios import ScenarioMetrics, evaluate_scenarios
from mtrec.report.transfer import transfer_section


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]
    seconds: float


def build_report(bundle_dir: Path, results_dir: Path | None = None, compare: bool = True,
                 per_scenario: bool = True) -> Report:
    """The report of the bundle at ``bundle_dir`` as data (see :mod:`mtrec.report.doc`).

    ``results_dir``: where the ``compare_*.json`` files are (default: ``benchmarks/results``
    of the source checkout, when there is one); ``compare=False``: no comparison.  ``per_scenario``:
    re-evaluate the test part per scenario when the dataset has several.
    """
    b = read_bundle(bundle_dir)
    folder = (results_dir or default_results_dir()) if compare else None
    found, problems = read_comparisons(folder, b.dataset)
    scen, skipped = _scenarios(b, per_scenario)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = Report(f"mtrec report: {b.dataset}",
                    f"{b.protocol} protocol, tasks {', '.join(b.tasks) or '-'}; bundle "
                    f"{b.path}; written {when}")
    report.sections = [sections.header(b), sections.training(b), sections.test_metrics(b),
                       sections.cold_items(b), sections.scenarios(b, scen, skipped),
                       comparisons(b, found, problems, None if folder is None else str(folder))]
    for extra in (transfer_section(folder, b.dataset), scenarios_section(folder, b.dataset),
                  remedies_section(folder, b.dataset), policy_section(b.path)):
        if extra is not None:
            report.sections.append(extra)
    return report


def _scenarios(b: BundleData, wanted: bool) -> tuple[ScenarioMetrics | None, str]:
    if b.n_scenarios <= 1:
        return None, (f"{b.dataset} has a single scenario, so there is no per-scenario "
                      "breakdown: the test metrics above are its metrics.")
    if not wanted:
        return None, (f"{b.dataset} has {b.n_scenarios} scenarios; per-scenario metrics "
                      "were not computed (they need re-evaluating the bundle).")
    return evaluate_scenarios(b.path, b.metrics("test")), ""


def write_report(bundle_dir: Path, out_dir: Path | None = None,
                 results_dir: Path | None = None, compare: bool = True,
                 per_scenario: bool = True) -> ReportFiles:
    """Write the report of ``bundle_dir`` into ``out_dir`` (default ``bundle_dir/report``)."""
    started = time.perf_counter()
    report = build_report(bundle_dir, results_dir, compare, per_scenario)
    out = Path(out_dir) if out_dir is not None else Path(bundle_dir) / "report"
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.svg"):  # charts of an earlier report that are gone now
        old.unlink()
    written = []
    for fig in report.figures():
        written.append(figures / f"{fig.name}.svg")
        written[-1].write_bytes(fig.svg)
    html, md = out / "report.html", out / "report.md"
    _write(html, render_html(report))
    _write(md, render_markdown(report, "figures"))
    return ReportFiles(html, md, written, time.perf_counter() - started)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
