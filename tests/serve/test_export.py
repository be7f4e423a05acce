"""`mtrec export`: compressed tables and an ONNX text encoder, checked at export, served as
any bundle; bad exports stop with the part and the figure, broken ONNX files fail at start-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mtrec.cli import app as cli
from mtrec.export.bundle import ExportConfig, export_bundle, exported_encoder
from mtrec.export.tables import compress, restore
from mtrec.export.text import ExportError, OnnxTextEncoder
from mtrec.recommender import Recommender
from mtrec.serve.app import ServeSettings, create_app
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served


@pytest.fixture(scope="module")
def exported(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(served.bundle, out, ExportConfig(tables="int8"))
    return out


def test_int8_tables_stay_within_half_a_step_per_row() -> None:
    torch.manual_seed(0)
    table = torch.randn(50, 16) * torch.rand(50, 1) * 10
    table[3] = 0.0
    packed = compress({"t": table, "other": torch.ones(2)}, ("t",), "int8")
    assert packed["t"].dtype == torch.int8 and packed["other"].dtype == torch.float32
    back = restore(packed)["t"]
    step = table.abs().amax(1, keepdim=True) / 127
    assert torch.all((back - table).abs() <= step / 2 + 1e-6)
    assert torch.equal(back[3], torch.zeros(16)) and "t@scale" not in restore(packed)


def test_interactions_are_stored_narrow_and_read_back_the_same(served: Served,
                                                               exported: Path) -> None:
    from mtrec import bundle as bundle_io
    from mtrec.tensor_files import load_weights

    stored = load_weights(exported / "interactions.safetensors")
    assert stored["item"].dtype in (torch.int8, torch.int16)  # a tiny catalog's codes
    assert stored["item"].element_size() < 8
    ratings = bundle_io.read_interactions(served.bundle).rating
    whole = bool(np.isfinite(ratings).all() and (ratings == np.round(ratings)).all())
    assert stored["rating"].dtype == (torch.int8 if whole else torch.float16)
    original, again = (bundle_io.read_interactions(b) for b in (served.bundle, exported))
    for name, values in vars(original).items():
        np.testing.assert_array_equal(getattr(again, name), values)
        assert getattr(again, name).dtype == values.dtype


def test_exported_bundle_scores_as_the_original(served: Served, exported: Path) -> None:
    before, after = Recommender.load(served.bundle), Recommender.load(exported)
    users = list(before.catalog.user_ids[1:21])
    items = [str(i) for i in before.catalog.item_ids[1:]]
    for user in users:
        a, b = before.score(user, items), after.score(user, items)
        for task in a:
            assert np.allclose(a[task], b[task], atol=2e-2, rtol=2e-2), task
        top_a = [r.item_id for r in before.recommend(user, 10)]
        top_b = [r.item_id for r in after.recommend(user, 10)]
        assert len(set(top_a) & set(top_b)) >= 8
    meta = json.loads((exported / "config.json").read_text())
    checks = meta["export"]["checks"]
    assert checks["tables"]["item_tower.text_vectors"]["min_cosine"] > 0.99
    assert checks["text"]["min_cosine"] > 0.999 and checks["text"]["texts"] == 60
    assert not (exported / "checkpoint").exists()


def test_onnx_encoder_matches_the_torch_encoder(served: Served, exported: Path) -> None:
    torch_encoder = TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir),
                                                              bf16=False))
    meta = json.loads((exported / "config.json").read_text())
    onnx = exported_encoder(exported, meta)
    assert isinstance(onnx, OnnxTextEncoder) and onnx.model_key.endswith("+onnx")
    texts = ["red lipstick", "a much longer text about a kettle and a whisk", "x"]
    ref, got = torch_encoder.encode(texts), onnx.encode(texts)
    assert got.shape == ref.shape and np.allclose(ref, got, atol=1e-4)
    assert onnx.encode([]).shape[0] == 0


def test_onnx_batches_run_side_by_side_keep_the_input_order(exported: Path) -> None:
    """Small batches on several threads (the fast setting) give each text its own vector."""
    meta = json.loads((exported / "config.json").read_text())
    assert meta["export"]["text"]["batch_size"] == 16
    texts = [f"item {i} " + "word " * (i % 7) for i in range(23)]
    one = exported_encoder(exported, meta, threads=1)
    two = exported_encoder(exported, meta, threads=2)
    assert one is not None and two is not None and two.threads == 2
    alone = np.stack([one.encode([t])[0] for t in texts])
    seen: list[int] = []
    got = two.encode(texts, batch_size=3, progress=seen.append)
    assert np.allclose(got, alone, atol=1e-5) and sum(seen) == len(texts)
    assert np.allclose(one.encode(texts, batch_size=4), alone, atol=1e-5)


def test_int4_embeddings_shrink_the_encoder_and_stay_close(served: Served,
                                                          exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "int4"
    record = export_bundle(served.bundle, out, ExportConfig(int8=True, tables="int8",
                                                            embeddings="int4"))
    int8 = tmp_path / "int8"
    export_bundle(served.bundle, int8, ExportConfig(int8=True, tables="int8"))
    assert record["text"]["embeddings"] == "int4" and record["text"]["key"].endswith("-int4emb")
    assert (out / "text_encoder.onnx").stat().st_size < (int8 / "text_encoder.onnx").stat().st_size
    assert record["text"]["checks"]["mean_cosine"] >= 0.98
    meta = json.loads((out / "config.json").read_text())
    onnx = exported_encoder(out, meta)
    assert onnx is not None and onnx.encode(["red lipstick"]).shape == (1, onnx.dim)


def test_int4_embeddings_need_int8() -> None:
    with pytest.raises(ValueError, match="needs --int8"):
        ExportConfig(embeddings="int4")
    with pytest.raises(ValueError, match="--embeddings must be int8 or int4, got 'int2'"):
        ExportConfig(int8=True, embeddings="int2")


def test_the_service_runs_an_exported_bundle(exported: Path, tmp_path: Path) -> None:
    app = create_app(ServeSettings(api_key="secret"), str(exported), tmp_path / "ev.db")
    with TestClient(app, base_url="http://localhost", headers={"x-api-key": "secret"}) as client:
        added = client.post("/v1/items", headers={"x-api-key": "secret"},
                            json={"items": [{"item_id": "new-1", "text": "red lipstick"}]})
        assert added.status_code == 200, added.text
        found = client.get("/v1/search", params={"q": "red lipstick", "k": 3}).json()
        assert found["items"][0]["item_id"] == "new-1"
        assert client.post("/v1/recommend", json={"items": ["new-1"], "k": 5}).status_code == 200


def test_a_failed_check_names_the_part_and_the_figure(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "strict"
    with pytest.raises(ExportError, match=r"text encoder mean_cosine \d\.\d{6} is below 0\.999999"):
        export_bundle(served.bundle, out, ExportConfig(int8=True, min_text_cosine=0.999999))
    assert not out.exists() and not (tmp_path / "strict.partial").exists()


def test_exporting_an_export_is_refused(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="already an exported bundle"):
        export_bundle(exported, tmp_path / "again", ExportConfig())


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_broken_onnx_files_fail_at_start_up(exported: Path, tmp_path: Path, damage: str
                                            ) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    model = broken / "text_encoder.onnx"
    if damage == "missing":
        model.unlink()
    else:
        model.write_bytes(b"not an onnx graph")
    expected = "missing from the exported bundle" if damage == "missing" else "cannot be loaded"
    result = CliRunner().invoke(cli, ["serve", "--bundle", str(broken), "--port", "1"])
    assert result.exit_code == 2 and str(model) in result.stderr
    assert expected in result.stderr
    with pytest.raises(ExportError, match=expected), TestClient(
            create_app(ServeSettings(), str(broken))):
        pass  # the app's start-up raises before any request
