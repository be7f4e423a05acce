"""The tabular export for peer libraries: it writes mtrec's examples and labels, reads back the
same, catches a changed file, and the metrics of predictions are the tasks' own."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from benchmarks.export_tabular import (
    ExportError,
    age_group,
    export_group,
    features,
    group_rows,
    load_export,
    read_predictions,
    score,
    task_groups,
    verify_export,
)
from benchmarks.peers import rechub_runner, surprise_runner
from benchmarks.peers.rechub import esmm_pair, selecting_outputs
from mtrec.data.interactions import Prepared, prepare
from mtrec.data.split import TEST, TRAIN, VALID, SplitConfig
from mtrec.data.store import Store
from mtrec.data.synthetic import SyntheticConfig, generate
from mtrec.eval.metrics import auc
from mtrec.tasks import PointwiseTask, TaskDims, TaskOptions, build_tasks

TASKS = ("purchase", "cart", "rating", "like", "engagement")


def _with_genres(items: pa.Table) -> pa.Table:
    """Items whose attributes carry a multi-valued ``genres`` (1-3 values), as ML-100k's."""
    cats = items.column("category").to_pylist()
    genres = [json.dumps({"genres": [c, "extra"][: 1 + k % 2] + (["rare"] if k % 5 == 0 else [])})
              for k, c in enumerate(cats)]
    index = items.column_names.index("attributes")
    return items.set_column(index, "attributes", pa.array(genres, pa.string()))


@pytest.fixture()
def split(tmp_path: Path) -> tuple[Prepared, dict[str, PointwiseTask], Path]:
    data = generate(SyntheticConfig(n_users=50, n_items=30, seed=5))
    result = dataclasses.replace(data.result, items=_with_genres(data.result.items))
    path = tmp_path / "synthetic.duckdb"
    Store.write_import(path, result)
    with Store.open(path) as store:
        prepared = prepare(store, "synthetic", SplitConfig("temporal"))
    options = TaskOptions(horizon_days=1, return_days=1)
    built = build_tasks(TASKS, options, TaskDims(prepared.catalog.n_items, 8, 8))
    tasks = {n: t for n, t in built.items() if isinstance(t, PointwiseTask)}
    return prepared, tasks, path


def _read(csv: Path) -> pa.Table:
    return pacsv.read_csv(csv)


def test_groups_follow_label_masks(split: tuple[Prepared, dict[str, PointwiseTask], Path]) -> None:
    prepared, tasks, _ = split
    groups = task_groups(tasks, prepared)
    assert groups == [("purchase", "cart"), ("rating", "like"), ("engagement",)]
    rated = ~np.isnan(prepared.interactions.rating)
    assert np.array_equal(group_rows(tasks, ("rating", "like"), prepared), np.flatnonzero(rated))
    with pytest.raises(ExportError, match="label different interactions"):
        group_rows(tasks, ("purchase", "rating"), prepared)


def test_round_trip_every_group(tmp_path: Path,
                                split: tuple[Prepared, dict[str, PointwiseTask], Path]) -> None:
    prepared, tasks, store = split
    data = prepared.interactions
    for group in task_groups(tasks, prepared):
        export = export_group(prepared, tasks, group, tmp_path / "out", "side", store)
        verify_export(export, prepared, tasks, store)
        table = _read(export.csv)
        rows = group_rows(tasks, group, prepared)
        assert np.array_equal(table.column("row").to_numpy(), rows)
        assert np.array_equal(table.column("part").to_numpy(), data.part[rows])
        assert np.array_equal(table.column("user_id").to_numpy(), data.user[rows] + 1)
        assert np.array_equal(table.column("item_id").to_numpy(), data.item[rows])
        for part in (TRAIN, VALID, TEST):
            assert np.array_equal(export.part_rows(part), rows[data.part[rows] == part])
        again = load_export(export.manifest)
        assert again.tasks == group and np.array_equal(again.rows, rows)


def test_labels_are_the_tasks_labels(tmp_path: Path,
                                     split: tuple[Prepared, dict[str, PointwiseTask], Path]
                                     ) -> None:
    prepared, tasks, store = split
    data = prepared.interactions
    for group in task_groups(tasks, prepared):
        export = export_group(prepared, tasks, group, tmp_path, "id", store)
        table, rows = _read(export.csv), export.rows
        for col in export.labels:
            want = tasks[col.task].labels(data).values[rows, col.index]
            got = table.column(col.column).to_numpy().astype(np.float32)
            assert np.array_equal(got, want), col
    engagement = load_export(tmp_path / "engagement.manifest.json")
    assert [(c.column, c.kind) for c in engagement.labels] == [
        ("engagement_log_count", "regression"), ("engagement_return", "binary")]
    like = tasks["like"].labels(data)
    exported_like = _read(tmp_path / "rating-like.csv").column("like").to_numpy()
    assert exported_like.sum() == like.values[like.mask, 0].sum() > 0


def test_side_features_and_genres(split: tuple[Prepared, dict[str, PointwiseTask], Path]) -> None:
    prepared, _, store = split
    specs, values = features(prepared, "side", store)
    names = [f.name for f in specs]
    assert names == ["user_id", "item_id", "age", "gender", "category", "genres"]
    genres = next(f for f in specs if f.name == "genres")
    assert genres.kind == "sequence" and genres.max_len == 3 and genres.owner == "item"
    seq = values["genres"]
    assert seq.shape == (len(prepared.interactions), 3)
    assert (seq[:, 0] > 0).all() and seq.max() < genres.vocab
    assert (values["gender"] > 0).all() and values["age"].max() < specs[2].vocab
    assert age_group(30) == "25+" and age_group(10) == "<18"


def test_changed_file_is_caught(tmp_path: Path,
                                split: tuple[Prepared, dict[str, PointwiseTask], Path]) -> None:
    prepared, tasks, store = split
    export = export_group(prepared, tasks, ("purchase", "cart"), tmp_path, "id", store)
    lines = export.csv.read_text().splitlines()
    head = lines[0].split(",")
    col = head.index('"purchase"')
    cells = lines[1].split(",")
    cells[col] = "0" if cells[col] == "1" else "1"
    lines[1] = ",".join(cells)
    export.csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportError, match="SHA-256"):
        verify_export(export, prepared, tasks, store)
    # Even with the checksum updated, the content check finds the flipped label.
    meta = json.loads(export.manifest.read_text())
    meta["sha256"] = hashlib.sha256(export.csv.read_bytes()).hexdigest()
    export.manifest.write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="label 'purchase'"):
        verify_export(export, prepared, tasks, store)
    # A dropped example is caught too.
    del lines[2]
    export.csv.write_text("\n".join(lines) + "\n")
    meta["sha256"] = hashlib.sha256(export.csv.read_bytes()).hexdigest()
    export.manifest.write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="rows differ"):
        verify_export(export, prepared, tasks, store)


def test_score_uses_the_tasks_metrics(tmp_path: Path,
                                      split: tuple[Prepared, dict[str, PointwiseTask], Path]
                                      ) -> None:
    prepared, tasks, store = split
    data = prepared.interactions
    export = export_group(prepared, tasks, ("purchase", "cart"), tmp_path, "id", store)
    rows = export.part_rows(TEST)
    rng = np.random.default_rng(0)
    preds = rng.random((len(rows), 2))
    path = tmp_path / "pred.csv"
    rechub_runner.write_predictions(path, ["purchase", "cart"], preds)
    got = score(export, prepared, tasks, TEST, read_predictions(path, len(rows)))
    for k, name in enumerate(("purchase", "cart")):
        want = tasks[name].metrics(tasks[name].labels(data).values[rows], preds[:, k],
                                   data.user[rows])
        assert {m: got[f"{name}/{m}"] for m in want} == want
        assert got[f"{name}/examples"] == len(rows)
    perfect = {n: tasks[n].labels(data).values[rows, 0].astype(np.float64)
               for n in ("purchase", "cart")}
    assert score(export, prepared, tasks, TEST, perfect)["cart/auc"] == 1.0
    with pytest.raises(ExportError, match="predictions for"):
        read_predictions(path, len(rows) + 1)


def test_engagement_score_reads_both_columns(
        tmp_path: Path, split: tuple[Prepared, dict[str, PointwiseTask], Path]) -> None:
    prepared, tasks, store = split
    export = export_group(prepared, tasks, ("engagement",), tmp_path, "id", store)
    rows = export.part_rows(TEST)
    labels = tasks["engagement"].labels(prepared.interactions).values[rows]
    got = score(export, prepared, tasks, TEST, {"engagement_log_count": labels[:, 0] + 1.0,
                                                "engagement_return": labels[:, 1] * 0.5 + 0.2})
    assert got["engagement/log_count_rmse"] == pytest.approx(1.0)
    assert 0 < labels[:, 1].sum() < len(rows)  # both classes, so the AUC is defined
    assert got["engagement/return_auc"] == 1.0


def test_runner_helpers_agree_with_mtrec(tmp_path: Path,
                                         split: tuple[Prepared, dict[str, PointwiseTask], Path]
                                         ) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500), 1)  # many ties
    assert rechub_runner.auc_score(y, s) == pytest.approx(auc(y, s))
    outs = rechub_runner.outputs([], ("cart", "purchase"))
    cols = {"cart": np.array([1.0, 1.0, 0.0]), "purchase": np.array([1.0, 0.0, 1.0])}
    assert rechub_runner.targets(cols, outs).tolist() == [[1, 1, 1], [0, 1, 0], [1, 0, 0]]
    assert [o["select"] for o in outs] == [False, True, True]
    prepared, tasks, store = split
    export = export_group(prepared, tasks, ("rating", "like"), tmp_path, "side", store)
    assert esmm_pair(export.tasks, tasks, ("cart", "purchase")) is None
    assert esmm_pair(("purchase", "cart"), tasks, ("cart", "purchase")) == ("cart", "purchase")
    assert selecting_outputs(export, None) == ["rating", "like"]
    ratings = surprise_runner.read_ratings(export.manifest)
    rated = prepared.interactions.rating
    assert [r for _, _, r in ratings["test"]] == rated[export.part_rows(TEST)].tolist()
    assert len(ratings["train"]) == len(export.part_rows(TRAIN))
    meta = json.loads(export.manifest.read_text())
    genres = next(f for f in meta["features"] if f["name"] == "genres")
    cells = _read(export.csv).column("genres").to_pylist()
    parsed = rechub_runner.parse_sequence(cells, genres["max_len"])
    _, values = features(prepared, "side", store)
    assert np.array_equal(parsed, values["genres"][export.rows])
