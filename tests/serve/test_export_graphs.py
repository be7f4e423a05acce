"""`mtrec export` writes the user tower and the task heads as ONNX graphs that reproduce the
model (checked at export, figures in config.json), and a broken graph file fails when loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mtrec.cli import app as cli
from mtrec.export import graphs
from mtrec.export.bundle import ExportConfig, export_bundle
from mtrec.export.graphs import (
    SEQUENCE,
    OnnxHeads,
    OnnxUserTower,
    exported_graphs,
    sample_batches,
    topk_agreement,
)
from mtrec.export.text import ExportError
from mtrec.models.batches import history_batch
from mtrec.models.model import Batch
from mtrec.recommender import Recommender
from mtrec.run_config import load_run_config
from mtrec.serve.engine import Engine, NewItem
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from mtrec.train.run import train_run
from tests.planted import fast_torch, planted, tiny, write_store
from tests.serve.conftest import Served

TOL = 1e-4


@pytest.fixture(scope="module")
def exported(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export-graphs") / "bundle"
    export_bundle(served.bundle, out, ExportConfig())
    return out


@pytest.fixture(scope="module")
def rec(served: Served) -> Recommender:
    return Recommender.load(served.bundle)


def _graphs(exported: Path) -> tuple[OnnxUserTower, OnnxHeads]:
    tower, heads = exported_graphs(exported, json.loads((exported / "config.json").read_text()))
    assert tower is not None and heads is not None
    return tower, heads


def _encode(tower: OnnxUserTower, batch: Batch, vectors: torch.Tensor,
            text: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return tower.encode({k: getattr(batch, k).numpy() for k in SEQUENCE},
                        batch.target_scenario.numpy(), vectors.numpy(),
                        text.numpy() if tower.needs_text else None)


def test_export_records_the_graphs_and_their_checks(exported: Path) -> None:
    record = json.loads((exported / "config.json").read_text())["export"]
    assert record["graphs"] == {"user_tower": "user_tower.onnx", "heads": "heads.onnx",
                                "text_input": True}  # the fixture's text match is on
    assert (exported / "user_tower.onnx").is_file() and (exported / "heads.onnx").is_file()
    tower, heads = record["checks"]["user_tower"], record["checks"]["heads"]
    assert tower["users"] == 119 and tower["lengths"] == 4  # 4 padded lengths checked
    assert tower["max_abs_error"] < TOL and tower["min_cosine"] > 0.99999
    assert tower["top10_agreement"] == 1.0
    assert heads["max_abs_error"] < TOL and heads["min_cosine"] > 0.99999
    assert heads["top10_agreement"] == 1.0 and heads["items_per_user"] == 60
    assert set(heads["tasks"]) == {"click", "rating"}
    assert record["config"]["min_graph_cosine"] == 0.9999


def test_user_tower_graph_reproduces_encode(rec: Recommender, exported: Path) -> None:
    tower, _ = _graphs(exported)
    batches = sample_batches(rec, 60, chunks=6, seed=3)  # other users, lengths, sizes
    batches.append(sample_batches(rec, 1, seed=4)[0])  # and a batch of one
    assert len({b.items.shape[1] for b in batches}) >= 3
    catalog = rec.tables.retrieval[1:].numpy()
    text = rec.model.item_tower.text_vectors
    for batch in batches:
        with torch.no_grad():
            ref = rec.model.encode(batch, rec.tables)
        h, query = _encode(tower, batch, rec.tables.vectors, text)
        assert np.abs(h - ref.h.numpy()).max() < TOL
        assert np.abs(query - ref.query.numpy()).max() < TOL
        assert topk_agreement(ref.query.numpy() @ catalog.T, query @ catalog.T) == 1.0


@pytest.fixture()
def engine(served: Served) -> Engine:
    encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                        bf16=False))
    return Engine.from_bundle(served.bundle, encoder=encoder)


def test_user_tower_graph_gives_the_served_state(engine: Engine, exported: Path,
                                                 served: Served) -> None:
    """As the engine builds a request's state, also after an item joins the live catalog
    (the graph reads the engine's grown tables: no catalog is baked into it)."""
    tower, _ = _graphs(exported)
    engine.upsert_items([NewItem("brand-new", "a red lipstick with a golden case")])
    new = engine.catalog.item_code["brand-new"]
    assert new == len(served.data.item_ids) + 1
    max_len = engine.model.user_tower.config.max_len
    for user in served.data.user_ids[:5]:
        history = engine.history(user)
        history = [*history, history[-1]._replace(code=new)]  # ends with the new item
        scenario = engine.scenario(None)
        ref = engine.state(history, scenario)
        batch = history_batch(history, scenario, max_len)
        h, query = _encode(tower, batch, engine.catalog.vectors, engine.catalog.text)
        assert np.abs(h - ref.h.numpy()).max() < TOL, user
        assert np.abs(query - ref.query.numpy()).max() < TOL, user


def test_heads_graph_reproduces_task_scores(rec: Recommender, exported: Path) -> None:
    _, heads = _graphs(exported)
    batch = sample_batches(rec, 8, seed=5)[0]
    codes = torch.arange(1, 61).repeat(8, 1)
    with torch.no_grad():
        states = rec.model.encode(batch, rec.tables)
        ref = rec.model.task_scores(states, rec.tables, codes)
    got = heads.scores(np.repeat(states.h.numpy(), 60, 0),
                       rec.tables.vectors[codes.reshape(-1)].numpy(),
                       np.repeat(states.scenario.numpy(), 60))
    assert set(got) == {"click", "rating"}
    for task, scores in got.items():
        assert np.abs(scores.reshape(8, 60) - ref[task].numpy()).max() < TOL, task
        assert topk_agreement(ref[task].numpy(), scores.reshape(8, 60)) == 1.0


@pytest.mark.parametrize("name", ["user_tower.onnx", "heads.onnx"])
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_broken_graph_fails_when_loaded(exported: Path, tmp_path: Path, name: str,
                                          damage: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    graph = broken / name
    if damage == "missing":
        graph.unlink()
    else:
        data = graph.read_bytes()
        graph.write_bytes(data[: len(data) // 2])
    expected = "missing from the exported bundle" if damage == "missing" else "cannot be loaded"
    with pytest.raises(ExportError, match=expected) as failure:
        exported_graphs(broken, json.loads((broken / "config.json").read_text()))
    assert str(graph) in str(failure.value)


@pytest.mark.parametrize(("config", "message"), [
    (ExportConfig(min_graph_cosine=1.5), r"user tower min_cosine \d\.\d{6} is below 1\.5"),
    (ExportConfig(min_graph_topk=1.5), r"user tower top10_agreement 1\.000000 is below 1\.5"),
    (ExportConfig(max_graph_error=-1.0), r"user tower max_abs_error \S+ is above -1\.0"),
])
def test_a_failed_graph_check_names_the_part(served: Served, tmp_path: Path,
                                             config: ExportConfig, message: str) -> None:
    out = tmp_path / "strict"
    with pytest.raises(ExportError, match=message):
        export_bundle(served.bundle, out, config)
    assert not out.exists() and not (tmp_path / "strict.partial").exists()


def test_a_failed_heads_check_names_the_part(served: Served, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = graphs.check_heads

    def worse(*args: Any) -> dict[str, Any]:
        return {**real(*args), "min_cosine": 0.5}

    monkeypatch.setattr(graphs, "check_heads", worse)
    with pytest.raises(ExportError, match=r"task heads min_cosine 0\.500000 is below 0\.9999"):
        export_bundle(served.bundle, tmp_path / "out", ExportConfig())
    assert not (tmp_path / "out").exists()


def test_the_cli_reports_the_graph_checks(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "cli-export"
    result = CliRunner().invoke(cli, ["export", "--bundle", str(served.bundle),
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["user_tower max_abs_error"] < TOL
    assert summary["heads top10_agreement"] == 1.0


@pytest.fixture(scope="module")
def id_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A next-item-only bundle without item text: no text input, no heads."""
    home = tmp_path_factory.mktemp("id-only")
    store = write_store(planted(n_users=60, n_items=40), home)
    config = load_run_config(None, **tiny(store, **{"train.epochs": 1}))
    with fast_torch():
        train_run(config, home / "bundle", store_dir=home)
    return home / "bundle"


def test_an_id_only_bundle_exports_its_user_tower_alone(id_only: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    record = export_bundle(id_only, out, ExportConfig())
    assert record["graphs"] == {"user_tower": "user_tower.onnx", "heads": None,
                                "text_input": False}
    assert record["checks"]["heads"] is None and not (out / "heads.onnx").exists()
    assert record["checks"]["user_tower"]["max_abs_error"] < TOL
    assert record["checks"]["user_tower"]["top10_agreement"] == 1.0
    tower, heads = exported_graphs(out, json.loads((out / "config.json").read_text()))
    assert tower is not None and heads is None and not tower.needs_text
    assert tower.inputs == ["items", "behaviors", "scenarios", "gaps", "scenario", "vectors"]
