"""Wall time and peak memory of importing each shared dataset end to end (read, check,
write the DuckDB store), as ``mtrec data import`` does it.

    python -m benchmarks.import_speed [NAME ...]

Writes ``benchmarks/results/import_speed.json`` and ``.md``.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe
from mtrec.data.imports import import_dataset
from mtrec.data.sources import DATASETS
from mtrec.data.sources.base import data_root

RESULTS = Path(__file__).parent / "results"


def run(names: list[str], repeats: int = 3) -> dict[str, object]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                _, result = import_dataset(name, store_dir=tmp)
                times.append(time.perf_counter() - start)
            rows.append({"dataset": name, "users": result.users.num_rows,
                         "items": result.items.num_rows, "events": result.events.num_rows,
                         "seconds_min": round(min(times), 2),
                         "seconds_max": round(max(times), 2)})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"benchmark": "import_speed", "data_root": str(data_root()), "repeats": repeats,
            "peak_rss_mib": round(peak_mib), "machine": describe(), "results": rows,
            "command": "python -m benchmarks.import_speed"}


def to_markdown(report: dict[str, object]) -> str:
    machine = report["machine"]
    assert isinstance(machine, dict)
    lines = [f"# Import speed ({machine['cpu']}, {machine['cores']} cores)", "",
             f"Command: `{report['command']}`; best and worst of {report['repeats']} runs; "
             f"peak RSS of the whole run {report['peak_rss_mib']} MiB.", "",
             "| dataset | users | items | events | seconds (best) | seconds (worst) |",
             "|---|---:|---:|---:|---:|---:|"]
    results = report["results"]
    assert isinstance(results, list)
    for r in results:
        lines.append(f"| {r['dataset']} | {r['users']:,} | {r['items']:,} | {r['events']:,} "
                     f"| {r['seconds_min']} | {r['seconds_max']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    names = sys.argv[1:] or list(DATASETS)
    report = run(names)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "import_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "import_speed.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
