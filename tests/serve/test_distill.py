"""`mtrec distill`: a student encoder with fewer layers, trained to the teacher's vectors,
serving (and exporting) in its place; a student below the cosine floor is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mtrec import bundle as bundle_io
from mtrec.export.bundle import ExportConfig, export_bundle
from mtrec.export.distill import (
    DistillConfig,
    Distiller,
    cosines,
    distill_bundle,
    make_student,
    query_texts,
)
from mtrec.export.text import ExportError
from mtrec.serve.app import ServeSettings, create_app
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from tests.serve.conftest import Served

FAST = DistillConfig(layers=1, epochs=8, patience=8, lr=5e-4, batch_size=8)


@pytest.fixture(scope="module")
def teacher(served: Served) -> TextEncoder:
    return TextEncoder.from_config(TextEncoderConfig(model=str(served.encoder_dir), bf16=False))


@pytest.fixture(scope="module")
def student_bundle(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("distill") / "student"
    distill_bundle(served.bundle, out, FAST, min_cosine=0.0)
    return out


def test_a_student_with_every_layer_is_the_teacher(teacher: TextEncoder) -> None:
    model, kept = make_student(teacher.model, 2)
    assert kept == [0, 1]
    copy = TextEncoder(teacher.config, teacher.tokenizer, model, teacher.path)
    texts = ["red lipstick", "a kettle and a whisk"]
    assert np.allclose(copy.encode(texts), teacher.encode(texts), atol=1e-6)
    with pytest.raises(ValueError, match="cannot keep 3 layers: the teacher has 2"):
        make_student(teacher.model, 3)


def _strong(teacher: TextEncoder) -> TextEncoder:
    """The random tiny teacher with its layers' outputs scaled up, so that dropping a layer
    changes its vectors (a random tiny BERT's vectors are mostly its embeddings)."""
    import copy

    model = copy.deepcopy(teacher.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in model.encoder.layer:
            layer.output.dense.weight.mul_(8.0)
            layer.attention.output.dense.weight.mul_(8.0)
    return TextEncoder(teacher.config, teacher.tokenizer, model, teacher.path)


def test_training_brings_the_student_closer_on_held_out_texts(teacher: TextEncoder,
                                                              served: Served) -> None:
    texts = bundle_io.read_catalog(served.bundle).texts[1:]
    teacher = _strong(teacher)
    untrained, _ = make_student(teacher.model, 1)
    before = TextEncoder(teacher.config, teacher.tokenizer, untrained, teacher.path)
    out = Distiller(teacher, FAST).fit(texts)
    held = [texts[i] for i in range(len(texts))]  # every text: the held-out share among them
    want = teacher.encode(held)

    def error(enc: TextEncoder) -> float:  # squared error relative to the vectors' size
        return float(((enc.encode(held) - want) ** 2).sum(1).mean() / (want ** 2).sum(1).mean())

    assert error(out.encoder) < 0.75 * error(before), (error(before), error(out.encoder))
    start = cosines(before.encode(held), want).mean()
    assert out.layers == [1] and len(out.encoder.model.encoder.layer) == 1
    assert out.checks["held_out_items"] == 6 and out.checks["mean_cosine"] > start
    assert out.history[0]["held_mean_cosine"] <= max(r["held_mean_cosine"] for r in out.history)


def test_queries_are_spans_of_the_text() -> None:
    queries = query_texts(["Red Cotton Summer Dress", ""], 3, random.Random(1))
    assert len(queries) == 3
    for q in queries:
        assert q in "red cotton summer dress" and 1 <= len(q.split()) <= 4


def test_the_distilled_bundle_serves_with_the_student(student_bundle: Path,
                                                      tmp_path: Path) -> None:
    meta = bundle_io.read_meta(student_bundle)
    assert meta["distill"]["layers"] == [1] and (student_bundle / "text_model").is_dir()
    config = bundle_io.encoder_config(student_bundle, meta)
    assert config is not None and config.model.endswith("text_model")
    student = TextEncoder.from_config(config)
    texts = bundle_io.read_catalog(student_bundle).texts
    table = bundle_io.read_weights(student_bundle)["item_tower.text_vectors"]
    assert np.allclose(table[1:6].numpy(), student.encode(texts[1:6]), atol=1e-4)
    app = create_app(ServeSettings(api_key="k"), str(student_bundle), tmp_path / "ev.db")
    with TestClient(app, base_url="http://localhost") as client:
        added = client.post("/v1/items", headers={"x-api-key": "k"},
                            json={"items": [{"item_id": "new-1", "text": "red lipstick"}]})
        assert added.status_code == 200, added.text
        found = client.get("/v1/search", params={"q": "red lipstick", "k": 3}).json()
        assert found["items"][0]["item_id"] == "new-1"


def test_a_distilled_bundle_exports_its_student(student_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    record = export_bundle(student_bundle, out, ExportConfig(int8=False))
    assert record["text"]["checks"]["min_cosine"] > 0.999
    assert json.loads((out / "config.json").read_text())["distill"]["layers"] == [1]


def test_a_weak_student_is_refused_and_nothing_is_written(served: Served,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "weak"
    torch.manual_seed(0)
    with pytest.raises(ExportError, match=r"held-out mean cosine \d\.\d{4} is below 1\.01"):
        distill_bundle(served.bundle, out, DistillConfig(layers=1, epochs=1), min_cosine=1.01)
    assert not out.exists() and not (tmp_path / "weak.partial").exists()


def test_distilling_a_distilled_bundle_is_refused(student_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="already a distilled bundle"):
        distill_bundle(student_bundle, tmp_path / "again", FAST)
