"""A trained bundle's report: an HTML page with charts and a Markdown summary.

``write_report(bundle_dir)`` writes ``bundle_dir/report/report.html`` (self-contained),
``report.md`` and ``figures/*.svg``: the run, training curves per task, test metrics,
cold vs warm items, metrics per scenario and, when the benchmarks wrote
``compare_<key>.json`` files for the bundle's dataset, baselines, peers and published numbers.
"""

from mtrec.report.build import ReportFiles, build_report, write_report
from mtrec.report.data import ReportError

__all__ = ["ReportError", "ReportFiles", "build_report", "write_report"]
