"""What a report reads: a bundle's run summary, metrics and training history, and the
comparison files the benchmarks write (``compare_<key>.json``).

Nothing here draws or renders; every reader raises :class:`ReportError` (a ``ValueError``)
with the path it could not use.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RANKING = ("ndcg", "recall", "mrr", "hr")  # mean-over-targets next-item metrics
NEXT = "next_item/"


class ReportError(ValueError):
    """A bundle or a file a report needs is missing or unreadable; the message names it."""


@dataclass(frozen=True)
class BundleData:
    """The parts of a bundle directory a report shows (no weights)."""

    path: Path
    meta: dict[str, Any]  # config.json
    summary: dict[str, Any]  # metrics.json
    history: list[dict[str, float]]  # history.csv, one row per epoch (empty when absent)

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset") or self.meta.get("dataset", "?"))

    @property
    def protocol(self) -> str:
        return str(self.summary.get("protocol") or self.meta.get("protocol", "?"))

    @property
    def tasks(self) -> list[str]:
        tasks = self.summary.get("tasks") or self.meta.get("run", {}).get("model", {}).get(
            "tasks", [])
        return [str(t) for t in tasks]

    @property
    def n_scenarios(self) -> int:
        """Scenarios of the catalog (code 0, "none", not counted)."""
        return max(0, int(self.meta.get("n_scenarios", 1)) - 1)

    def metrics(self, part: str) -> dict[str, float]:
        values = self.summary.get(part)
        return _floats(values) if isinstance(values, dict) else {}


def read_bundle(path: Path) -> BundleData:
    """Read ``config.json``, ``metrics.json`` and ``history.csv`` of the bundle at ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such bundle directory")
    meta = _read_json(path / "config.json",
                      "not a bundle (no config.json); train one with `mtrec train`")
    summary = _read_json(path / "metrics.json",
                         "missing; the bundle has no metrics (did its training finish?)")
    history = read_history(path / "history.csv") if (path / "history.csv").is_file() else []
    return BundleData(path, meta, summary, history)


def _read_json(file: Path, missing: str) -> dict[str, Any]:
    if not file.is_file():
        raise ReportError(f"{file}: {missing}")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{file}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{file}: expected a JSON object")
    return data


def read_history(file: Path) -> list[dict[str, float]]:
    """Rows of a ``history.csv`` as floats (empty cells become NaN), sorted by epoch."""
    try:
        with file.open(newline="") as f:
            rows = [{k: _to_float(v) for k, v in row.items() if k} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{file}: unreadable CSV ({exc})") from None
    rows = [r for r in rows if math.isfinite(r.get("epoch", math.nan))]
    return sorted(rows, key=lambda r: r["epoch"])


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _floats(values: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


# --- cold and warm items -------------------------------------------------------------------


@dataclass(frozen=True)
class ColdWarm:
    """One next-item metric over all targets, the cold-item targets and the rest."""

    metric: str  # e.g. "ndcg@10"
    all: float
    cold: float | None  # None: no cold target
    warm: float | None  # None: every target is cold


def warm_value(all_value: float, cold_value: float | None, share: float) -> float | None:
    """The mean over warm targets, from the mean over all and over the cold share:
    ``all = share * cold + (1 - share) * warm``.

    >>> warm_value(0.1, 0.04, 0.25)
    0.12
    >>> warm_value(0.1, None, 0.0), warm_value(0.1, 0.1, 1.0)
    (0.1, None)
    """
    if share >= 1.0:
        return None
    if cold_value is None or share <= 0.0:
        return all_value
    return round((all_value - share * cold_value) / (1.0 - share), 12)


def cold_warm(metrics: dict[str, float]) -> tuple[list[ColdWarm], float, int]:
    """Next-item ranking metrics split into cold and warm targets (cold: the target item
    has at most ``mtrec.eval.protocols.COLD_MAX`` training interactions), with the cold
    share and the number of targets.  Empty when there are no next-item metrics."""
    share = metrics.get(f"{NEXT}cold_share")
    if share is None:
        return [], 0.0, 0
    rows = []
    for key, value in metrics.items():
        name = key.removeprefix(NEXT)
        if not key.startswith(NEXT) or name.split("@")[0] not in RANKING:
            continue
        cold = metrics.get(f"{NEXT}cold_{name}")
        rows.append(ColdWarm(name, value, cold, warm_value(value, cold, share)))
    rows.sort(key=lambda r: (_k_of(r.metric), RANKING.index(r.metric.split("@")[0])))
    return rows, share, int(metrics.get(f"{NEXT}users", 0))


def _k_of(metric: str) -> int:
    match = re.search(r"@(\d+)$", metric)
    return int(match.group(1)) if match else 0


# --- comparison files ----------------------------------------------------------------------


@dataclass(frozen=True)
class CompareRow:
    system: str
    model: str
    kind: str  # mtrec | baseline | peer | published
    metrics: dict[str, float]
    train_seconds: float | None = None
    peak_rss_gib: float | None = None
    note: str = ""
    protocol: str = ""  # published rows: the protocol of the published number
    source: str = ""  # published rows: where it was published
    error: str = ""  # a run that failed
    curve: tuple[tuple[float, float], ...] = ()  # (training seconds, valid NDCG@10) per epoch
    capped: bool = False  # stopped by the comparison's wall-time cap

    @property
    def label(self) -> str:
        """``system model``; a published row by its model alone (its kind says the rest)."""
        if self.kind == "published" and self.system.lower() == "published" and self.model:
            return self.model
        return self.system if self.model in ("", self.system) else f"{self.system} {self.model}"


@dataclass(frozen=True)
class Comparison:
    key: str
    file: Path
    dataset: str
    protocol: str
    command: str
    machine: dict[str, Any]
    rows: list[CompareRow] = field(default_factory=list)


def default_results_dir() -> Path | None:
    """``benchmarks/results`` of the source checkout this package runs from, if any."""
    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    return folder if folder.is_dir() else None


def read_comparisons(folder: Path | None, dataset: str) -> tuple[list[Comparison], list[str]]:
    """The ``compare_*.json`` files in ``folder`` whose ``dataset`` is ``dataset``, and a
    line per file that could not be read (the files are written while benchmarks run)."""
    if folder is None:
        return [], []
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such results directory")
    found, problems = [], []
    for file in sorted(folder.glob("compare_*.json")):
        try:
            data = json.loads(file.read_text())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if data.get("dataset") != dataset:
                continue
            found.append(_comparison(file, data))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            problems.append(f"{file.name}: skipped ({exc})")
    return found, problems


def _comparison(file: Path, data: dict[str, Any]) -> Comparison:
    rows = data.get("rows", [])
    if not isinstance(rows, list):
        raise ValueError("'rows' must be a list")
    key = str(data.get("comparison") or file.stem.removeprefix("compare_"))
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    return Comparison(key, file, str(data["dataset"]), str(data.get("protocol", "")),
                      str(data.get("command", "")), machine or {},
                      [_row(r) for r in rows if isinstance(r, dict) and "pending" not in r])


def _row(r: dict[str, Any]) -> CompareRow:
    metrics = r.get("metrics")
    return CompareRow(
        system=str(r.get("system", "?")), model=str(r.get("model", "")),
        kind=str(r.get("kind", "baseline")),
        metrics={k: v for k, v in _floats(metrics).items() if math.isfinite(v)}
        if isinstance(metrics, dict) else {},
        train_seconds=_opt_float(r.get("train_seconds")),
        peak_rss_gib=_opt_float(r.get("peak_rss_gib")), note=str(r.get("note") or ""),
        protocol=str(r.get("protocol") or ""), source=str(r.get("source") or ""),
        error=str(r.get("error") or ""), curve=_curve(r.get("curve")),
        capped=bool(r.get("capped")))


def _curve(value: Any) -> tuple[tuple[float, float], ...]:
    """``[[epoch, seconds, value], ...]`` as (seconds, value) pairs; anything else: none.

    >>> _curve([[1, 10.0, 0.02], [2, 20.5, 0.03]]), _curve("x"), _curve([[1, None, 0.1]])
    (((10.0, 0.02), (20.5, 0.03)), (), ())
    """
    if not isinstance(value, list):
        return ()
    points = []
    for point in value:
        if not (isinstance(point, list) and len(point) == 3):
            return ()
        seconds, score = _opt_float(point[1]), _opt_float(point[2])
        if seconds is None or score is None:
            return ()
        points.append((seconds, score))
    return tuple(points)


def _opt_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def bundle_value(metrics: dict[str, float], key: str) -> float | None:
    """The bundle's value of a comparison metric: comparison files name next-item metrics
    without the task (``ndcg@10``) and other tasks' metrics with it (``purchase/auc``).

    >>> bundle_value({"next_item/ndcg@10": 0.2, "like/auc": 0.7}, "ndcg@10")
    0.2
    >>> bundle_value({"like/auc": 0.7}, "like/auc"), bundle_value({}, "rating/rmse")
    (0.7, None)
    """
    return metrics.get(key if "/" in key else f"{NEXT}{key}")
