"""Write a prepared mtrec split as tabular files for peer libraries, and check them.

    python -m benchmarks.export_tabular jdata OUT_DIR            # ID features only
    python -m benchmarks.export_tabular ml100k OUT_DIR --features side

A *group* is a set of mtrec pointwise tasks labelled on the same interactions (the same
label mask), e.g. ML-100k's ``like`` and ``rating`` (every rated interaction) or
``engagement`` (interactions whose follow-up window is visible).  One CSV per group holds
every labelled interaction of the train, valid and test parts, in interaction order:
``row`` (the index into ``prepared.interactions``), ``part`` (0 train, 1 valid, 2 test), the
features as integer codes (0 = unknown or padding; a multi-valued feature is ``|``-joined
codes padded to a fixed length) and one column per label, exactly
``task.labels(interactions)``.  A JSON manifest beside it names the features (vocabulary
sizes, user or item side), the label columns and the file's SHA-256.  :func:`verify_export`
reads a written group back and checks it against the split and the tasks' own labels, so a
peer trains and is scored on mtrec's examples and nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtrec.data.imports import store_path
from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.data.store import Store
from mtrec.models.model import task_dims
from mtrec.run_config import RunConfig, load_run_config
from mtrec.tasks import PointwiseTask, build_tasks
from mtrec.tasks.binary import BinaryTask
from mtrec.tasks.engagement import EngagementTask
from mtrec.train.run import prepare_run

FORMAT = 1
PARTS = {TRAIN: "train", VALID: "valid", TEST: "test"}
CONFIGS = Path(__file__).parent / "configs"
#: The splits of benchmarks/model_targets.py: config file, dataset, protocol, tasks.
BENCHMARKS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "jdata": ("jdata.toml", "jdata", "pair", ("purchase", "cart", "collect")),
    "ml100k": ("ml100k.toml", "ml-100k", "temporal", ("rating", "like", "engagement")),
}
USER_SIDE = ("age", "gender", "occupation")  # categorical user attributes, when present
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups
ENGAGEMENT_LABELS = ("log_count", "return")


class ExportError(ValueError):
    """A written export does not match the split or the tasks' labels."""


@dataclass(frozen=True)
class LabelColumn:
    column: str  # the CSV column
    task: str  # the mtrec task that owns it
    index: int  # its column in the task's Labels.values
    kind: str  # "binary" or "regression"


@dataclass(frozen=True)
class Feature:
    name: str
    owner: str  # "user" or "item"
    kind: str  # "sparse" (one code) or "sequence" (max_len codes, 0-padded)
    vocab: int  # codes lie in [0, vocab)
    max_len: int = 1


@dataclass(frozen=True)
class Export:
    csv: Path
    manifest: Path
    tasks: tuple[str, ...]
    rows: np.ndarray  # interaction index of every CSV row, in file order
    parts: np.ndarray  # the part of every CSV row
    labels: tuple[LabelColumn, ...]
    features: tuple[Feature, ...]

    def part_rows(self, part: int) -> np.ndarray:
        return self.rows[self.parts == part]


def benchmark_split(name: str) -> tuple[RunConfig, Prepared, dict[str, PointwiseTask]]:
    """The config, split and pointwise tasks of a model target (``jdata`` or ``ml100k``)."""
    config_file, dataset, protocol, tasks = BENCHMARKS[name]
    cfg = load_run_config(CONFIGS / config_file, **{
        "data.dataset": dataset, "data.protocol": protocol, "model.tasks": tasks})
    prepared = prepare_run(cfg)
    return cfg, prepared, pointwise_tasks(cfg, prepared)


def pointwise_tasks(cfg: RunConfig, prepared: Prepared) -> dict[str, PointwiseTask]:
    m = cfg.model
    tasks = build_tasks(m.tasks, m.task_options, task_dims(m, prepared.catalog.n_items))
    return {name: t for name, t in tasks.items() if isinstance(t, PointwiseTask)}


def label_columns(task: PointwiseTask) -> tuple[LabelColumn, ...]:
    """The CSV label columns of one task (engagement has two)."""
    if isinstance(task, EngagementTask):
        return tuple(LabelColumn(f"{task.name}_{label}", task.name, k,
                                 "regression" if label == "log_count" else "binary")
                     for k, label in enumerate(ENGAGEMENT_LABELS))
    kind = "binary" if isinstance(task, BinaryTask) else "regression"
    return (LabelColumn(task.name, task.name, 0, kind),)


def task_groups(tasks: Mapping[str, PointwiseTask], prepared: Prepared) -> list[tuple[str, ...]]:
    """Tasks grouped by identical label masks, in the given order."""
    data = prepared.interactions
    groups: list[tuple[tuple[str, ...], np.ndarray]] = []
    for name, task in tasks.items():
        mask = task.labels(data).mask
        for k, (names, other) in enumerate(groups):
            if np.array_equal(mask, other):
                groups[k] = ((*names, name), other)
                break
        else:
            groups.append(((name,), mask))
    return [names for names, _ in groups]


def group_rows(tasks: Mapping[str, PointwiseTask], names: tuple[str, ...],
               prepared: Prepared) -> np.ndarray:
    """Interactions every task of ``names`` labels, in train/valid/test parts."""
    data = prepared.interactions
    masks = [tasks[n].labels(data).mask for n in names]
    if any(not np.array_equal(masks[0], m) for m in masks[1:]):
        raise ExportError(f"tasks {names} label different interactions; export them apart")
    return np.flatnonzero(masks[0] & np.isin(data.part, list(PARTS)))


def _codes(values: list[Any]) -> tuple[np.ndarray, int]:
    """Category codes 1..V in sorted order of the distinct values; None is 0."""
    vocab = sorted({str(v) for v in values if v is not None})
    index = {v: k + 1 for k, v in enumerate(vocab)}
    return np.array([0 if v is None else index[str(v)] for v in values], np.int64), len(vocab) + 1


def age_group(age: Any) -> str | None:
    """The MovieLens-1M age group of an age (``None`` when unknown).

    >>> age_group(17), age_group(18), age_group(49), age_group(60), age_group(None)
    ('<18', '18+', '45+', '56+', None)
    """
    if age is None:
        return None
    lower = [e for e in AGE_EDGES if float(age) >= e]
    return f"{lower[-1]}+" if lower else f"<{AGE_EDGES[0]}"


def _user_side(prepared: Prepared, store: Store) -> dict[str, list[Any]]:
    attrs = {uid: json.loads(a) for uid, a in store.query(
        "SELECT user_id, attributes FROM users WHERE attributes IS NOT NULL")}
    out: dict[str, list[Any]] = {}
    for key in USER_SIDE:
        values = [attrs.get(str(u), {}).get(key) for u in prepared.catalog.user_ids]
        if key == "age":
            values = [age_group(v) for v in values]
        if any(v is not None for v in values):
            out[key] = values
    return out


def _item_genres(prepared: Prepared, store: Store) -> list[list[str]]:
    rows = dict(store.query("SELECT item_id, attributes FROM items"))
    genres = []
    for item in prepared.catalog.item_ids:
        raw = rows.get(str(item)) if item != "" else None
        value = json.loads(raw).get("genres") if raw else None
        genres.append([str(g) for g in value] if isinstance(value, list) else [])
    return genres


def _sequence(lists: list[list[str]]) -> tuple[np.ndarray, int]:
    vocab = sorted({g for gs in lists for g in gs})
    index = {g: k + 1 for k, g in enumerate(vocab)}
    width = max(1, max(len(gs) for gs in lists))
    codes = np.zeros((len(lists), width), np.int64)
    for row, gs in enumerate(lists):
        codes[row, :len(gs)] = [index[g] for g in gs]
    return codes, len(vocab) + 1


def features(prepared: Prepared, feature_set: str = "id",
             store_file: Path | None = None) -> tuple[tuple[Feature, ...], dict[str, np.ndarray]]:
    """Feature specs and per-interaction codes (``[M]``, or ``[M, L]`` for a sequence).

    ``id``: ``user_id`` (user code + 1) and ``item_id`` (item code).  ``side`` adds the
    user attributes of :data:`USER_SIDE` (age as an age group), the item ``category`` and
    the item ``genres`` (multi-valued), each only where the store has any value.
    """
    if feature_set not in ("id", "side"):
        raise ValueError(f"feature_set must be 'id' or 'side', got {feature_set!r}")
    data, cat = prepared.interactions, prepared.catalog
    specs = [Feature("user_id", "user", "sparse", len(cat.user_ids) + 1),
             Feature("item_id", "item", "sparse", cat.n_items + 1)]
    values = {"user_id": data.user + 1, "item_id": data.item.astype(np.int64)}
    if feature_set == "side":
        with Store.open(store_file or store_path(prepared.dataset)) as store:
            users, genres = _user_side(prepared, store), _item_genres(prepared, store)
        for key, column in users.items():
            codes, vocab = _codes(column)
            specs.append(Feature(key, "user", "sparse", vocab))
            values[key] = codes[data.user]
        if any(cat.categories[1:]):
            codes, vocab = _codes([c or None for c in cat.categories])
            specs.append(Feature("category", "item", "sparse", vocab))
            values["category"] = codes[data.item]
        if any(genres):
            seq, vocab = _sequence(genres)
            specs.append(Feature("genres", "item", "sequence", vocab, seq.shape[1]))
            values["genres"] = seq[data.item]
    return tuple(specs), values


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _feature_array(spec: Feature, values: np.ndarray) -> pa.Array:
    if spec.kind == "sequence":
        return pa.array(["|".join(map(str, row)) for row in values.tolist()], pa.string())
    return pa.array(values, pa.int64())


def export_group(prepared: Prepared, tasks: Mapping[str, PointwiseTask],
                 names: tuple[str, ...], out_dir: Path, feature_set: str = "id",
                 store_file: Path | None = None) -> Export:
    """Write the group ``names`` as ``<out_dir>/<group>.csv`` plus its manifest."""
    data = prepared.interactions
    rows = group_rows(tasks, names, prepared)
    specs, values = features(prepared, feature_set, store_file)
    columns: dict[str, pa.Array] = {"row": pa.array(rows, pa.int64()),
                                    "part": pa.array(data.part[rows].astype(np.int64))}
    columns.update({f.name: _feature_array(f, values[f.name][rows]) for f in specs})
    label_cols = tuple(c for n in names for c in label_columns(tasks[n]))
    for col in label_cols:
        label = tasks[col.task].labels(data).values[rows, col.index]
        columns[col.column] = pa.array(label.astype(np.float64))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "-".join(names)
    csv = out_dir / f"{stem}.csv"
    pacsv.write_csv(pa.table(columns), csv)
    manifest = {
        "format": FORMAT, "dataset": prepared.dataset, "protocol": prepared.protocol,
        "tasks": list(names), "feature_set": feature_set, "csv": csv.name,
        "sha256": _sha256(csv), "features": [asdict(f) for f in specs],
        "labels": [asdict(c) for c in label_cols],
        "rows": {PARTS[p]: int((data.part[rows] == p).sum()) for p in PARTS}}
    path = out_dir / f"{stem}.manifest.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return load_export(path)


def load_export(manifest: Path) -> Export:
    """An export's description from its manifest (reads the CSV's row and part columns)."""
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ExportError(f"{manifest}: unknown format {meta.get('format')!r}")
    csv = manifest.parent / meta["csv"]
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(
        include_columns=["row", "part"],
        column_types={"row": pa.int64(), "part": pa.int64()}))
    return Export(csv, manifest, tuple(meta["tasks"]),
                  table.column("row").to_numpy(), table.column("part").to_numpy(),
                  tuple(LabelColumn(**c) for c in meta["labels"]),
                  tuple(Feature(**f) for f in meta["features"]))


def _read_all(export: Export) -> pa.Table:
    types: dict[str, pa.DataType] = {"row": pa.int64(), "part": pa.int64()}
    types.update({f.name: pa.string() if f.kind == "sequence" else pa.int64()
                  for f in export.features})
    types.update({c.column: pa.float64() for c in export.labels})
    try:
        return pacsv.read_csv(export.csv, convert_options=pacsv.ConvertOptions(
            column_types=types, include_columns=list(types)))
    except (pa.ArrowInvalid, KeyError) as exc:
        raise ExportError(f"{export.csv}: unreadable: {exc}") from exc


def parse_sequence(cells: list[str], width: int) -> np.ndarray:
    """``|``-joined codes as an ``[n, width]`` array.

    >>> parse_sequence(["3|1|0", "2|0|0"], 3).tolist()
    [[3, 1, 0], [2, 0, 0]]
    """
    rows = [[int(v) for v in cell.split("|")] for cell in cells]
    if any(len(r) != width for r in rows):
        raise ExportError(f"a sequence cell does not have {width} codes")
    return np.array(rows, np.int64).reshape(len(cells), width)


def verify_export(export: Export, prepared: Prepared, tasks: Mapping[str, PointwiseTask],
                  store_file: Path | None = None) -> None:
    """Raise :class:`ExportError` unless the files are the ones written for this split:
    the checksum, the examples (rows, parts), every feature and every label."""
    meta = json.loads(export.manifest.read_text(encoding="utf-8"))
    if _sha256(export.csv) != meta["sha256"]:
        raise ExportError(f"{export.csv}: SHA-256 differs from its manifest (file changed)")
    table, data = _read_all(export), prepared.interactions
    rows = group_rows(tasks, export.tasks, prepared)
    got_rows = table.column("row").to_numpy()
    if not np.array_equal(got_rows, rows):
        raise ExportError(f"{export.csv}: rows differ from the split's labelled interactions")
    if not np.array_equal(table.column("part").to_numpy(), data.part[rows]):
        raise ExportError(f"{export.csv}: parts differ from the split")
    counts = {PARTS[p]: int((data.part[rows] == p).sum()) for p in PARTS}
    if meta["rows"] != counts:
        raise ExportError(f"{export.manifest}: row counts {meta['rows']} != split {counts}")
    specs, values = features(prepared, meta["feature_set"], store_file)
    if specs != export.features:
        raise ExportError(f"{export.manifest}: features differ from the store's")
    for f in specs:
        col = table.column(f.name).to_pylist()
        got = parse_sequence(col, f.max_len) if f.kind == "sequence" else np.array(col)
        if not np.array_equal(got, values[f.name][rows]):
            raise ExportError(f"{export.csv}: feature {f.name!r} differs from the split")
    for c in export.labels:
        want = tasks[c.task].labels(data).values[rows, c.index]
        got = table.column(c.column).to_numpy().astype(np.float32)
        if not np.array_equal(got, want):
            bad = int(np.flatnonzero(got != want)[0])
            raise ExportError(f"{export.csv}: label {c.column!r} of row {rows[bad]} is "
                              f"{got[bad]}, the task says {want[bad]}")


def read_predictions(path: Path, n_rows: int) -> dict[str, np.ndarray]:
    """A runner's prediction CSV (a header of column names, one line per example)."""
    table = pacsv.read_csv(path)
    if table.num_rows != n_rows:
        raise ExportError(f"{path}: {table.num_rows} predictions for {n_rows} examples")
    out = {name: table.column(name).to_numpy().astype(np.float64)
           for name in table.column_names}
    for name, values in out.items():
        if not np.isfinite(values).all():
            raise ExportError(f"{path}: column {name!r} has NaN or infinite predictions")
    return out


def score(export: Export, prepared: Prepared, tasks: Mapping[str, PointwiseTask], part: int,
          preds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """mtrec's metrics (``task/metric``) of predictions for the group's ``part`` rows, by the
    tasks' own ``metrics``, on their own labels: the numbers mtrec reports for itself."""
    rows, data = export.part_rows(part), prepared.interactions
    out: dict[str, float] = {}
    for name in export.tasks:
        task = tasks[name]
        cols = sorted((c for c in export.labels if c.task == name), key=lambda c: c.index)
        if any(c.column not in preds for c in cols):
            continue
        stacked = np.stack([preds[c.column] for c in cols], 1)
        scores = stacked[:, 0] if task.out_dim == 1 else stacked
        labels = task.labels(data).values[rows]
        metrics = task.metrics(labels, scores, data.user[rows])
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
        out[f"{name}/examples"] = float(len(rows))
    return out


def export_benchmark(name: str, out_dir: Path, feature_set: str = "id") -> list[Export]:
    """Export and verify every task group of a model target."""
    _, prepared, tasks = benchmark_split(name)
    exports = []
    for group in task_groups(tasks, prepared):
        export = export_group(prepared, tasks, group, out_dir, feature_set)
        verify_export(export, prepared, tasks)
        exports.append(export)
    return exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("out", type=Path)
    parser.add_argument("--features", choices=("id", "side"), default="id")
    args = parser.parse_args()
    for export in export_benchmark(args.benchmark, args.out, args.features):
        counts = {PARTS[p]: len(export.part_rows(p)) for p in PARTS}
        print(f"{export.csv} ({', '.join(export.tasks)}): {counts}, verified", file=sys.stderr)


if __name__ == "__main__":
    main()
