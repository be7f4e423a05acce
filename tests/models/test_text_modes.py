"""Fine-tuning the text encoder inside training: LoRA trains adapter weights only, full
trains the encoder, and both leave a bundle that serves from refreshed cached vectors and
carries the tuned encoder, which new items and queries go through."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from mtrec import bundle as bundle_io
from mtrec.models.model import TextTuner
from mtrec.recommender import Recommender
from mtrec.run_config import RunConfig, load_run_config
from mtrec.serve.app import ServeSettings, create_app
from mtrec.text.encoder import TextEncoder, TextEncoderConfig
from mtrec.train.loss import MultiTaskLoss
from mtrec.train.run import build, prepare_run, text_vectors, train_run
from tests.planted import planted, tiny, write_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(planted(n_users=60, n_items=30), tmp_path_factory.mktemp("modes"))


def _config(store: Path, model_dir: Path, mode: str, epochs: int = 2) -> RunConfig:
    return load_run_config(None, **tiny(store, **{
        "model.item.use_text": True, "model.text.model": str(model_dir),
        "model.text.mode": mode, "train.epochs": epochs,
        "model.text.lr": 1e-2}))  # (1e-4, the default, hardly moves a 2-epoch tiny run)


def test_lora_step_changes_only_lora_weights(store: Path, tiny_model_dir: Path) -> None:
    config = _config(store, tiny_model_dir, "lora")
    prepared = prepare_run(config, store_dir=store.parent)
    vectors = text_vectors(config, prepared, store.parent)
    pretrained = vectors.clone()
    model, batcher = build(config, prepared, vectors)
    assert model.text_tuner is not None
    before = {k: v.clone() for k, v in model.text_tuner.state_dict().items()}
    trainable = [n for n, p in model.text_tuner.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    # regression: the encoder's dropout noised the fresh rows written into the cache
    assert model.text_tuner.training and not model.text_tuner.encoder.training
    losses = MultiTaskLoss(model)(batcher.train_batch(batcher.train_users()[:8]))
    sum(losses.values()).backward()  # type: ignore[union-attr]
    optimizer.step()
    after = model.text_tuner.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora" in k for k in changed)
    # regression: the step's fresh rows went into the caller's vectors, so a refit started
    # from the first run's tuned rows rather than the pretrained encoder's
    MultiTaskLoss(model)(batcher.train_batch(batcher.train_users()[:8]))
    assert torch.equal(vectors, pretrained)
    assert not torch.equal(model.item_tower.text_vectors, pretrained)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_fine_tuned_bundle_serves_refreshed_vectors(store: Path, tiny_model_dir: Path,
                                                    tmp_path: Path, mode: str) -> None:
    config = _config(store, tiny_model_dir, mode)
    train_run(config, tmp_path / "b", store_dir=store.parent)
    rec = Recommender.load(tmp_path / "b")
    frozen = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir)))
    texts = rec.catalog.texts[1:6]
    stale = torch.from_numpy(frozen.encode(texts))
    served = rec.model.item_tower.text_vectors[1:6]
    assert served.shape == stale.shape
    assert not torch.allclose(served, stale, atol=1e-4)  # the tuned encoder's vectors
    user = str(rec.catalog.user_ids[0])
    assert len(rec.recommend(user, k=3)) == 3
    # the tuned weights are the bundle's own (LoRA merged): they encode as training left them
    meta = bundle_io.read_meta(tmp_path / "b")
    assert meta["text_tuned"] == {"mode": mode, "dir": bundle_io.TEXT_MODEL_DIR}
    own = bundle_io.encoder_config(tmp_path / "b", meta)
    assert own is not None and own.mode == "frozen" and own.model.endswith("text_model")
    again = torch.from_numpy(TextEncoder.from_config(own).encode(texts))
    assert torch.allclose(again, served, atol=1e-3)
    app = create_app(ServeSettings(api_key="k"), str(tmp_path / "b"), tmp_path / "ev.db")
    with TestClient(app, base_url="http://localhost", headers={"x-api-key": "k"}) as client:
        added = client.post("/v1/items", json={"items": [{"item_id": "new", "text": texts[0]}]})
        assert added.status_code == 200, added.text  # refused before: no encoder to serve
        found = client.get("/v1/search", params={"q": texts[0], "k": 2}).json()["items"]
        assert {hit["item_id"] for hit in found} >= {"new"}


def test_a_tuned_bundle_without_its_encoder_is_named(store: Path, tiny_model_dir: Path,
                                                     tmp_path: Path) -> None:
    train_run(_config(store, tiny_model_dir, "lora", epochs=1), tmp_path / "b",
              store_dir=store.parent)
    shutil.rmtree(tmp_path / "b" / bundle_io.TEXT_MODEL_DIR)
    with pytest.raises(bundle_io.BundleError, match="text_model: the bundle's own text"):
        bundle_io.encoder_config(tmp_path / "b", bundle_io.read_meta(tmp_path / "b"))


def test_each_step_re_encodes_a_bounded_set_targets_first() -> None:
    """Regression: LoRA on Scientific re-encoded every item of a batch (thousands of texts,
    with gradients) each step; no epoch ended in 13 minutes and memory passed 20 GB."""
    tuner = TextTuner(torch.nn.Identity(), ["", *"abcdefghij"], limit=4)  # type: ignore[arg-type]
    targets, history = torch.tensor([3, 3, 5, 0]), torch.tensor([[0, 1, 2], [3, 7, 9]])
    torch.manual_seed(0)
    chosen = tuner.chosen(targets, history)
    assert chosen[:2].tolist() == [3, 5] and len(chosen) == 4 and len(set(chosen.tolist())) == 4
    assert set(chosen[2:].tolist()) <= {1, 2, 7, 9}
    many = tuner.chosen(torch.arange(1, 11), history)
    assert len(many) == 4 and set(many.tolist()) <= set(range(1, 11))


def test_a_step_writes_its_fresh_rows_into_the_cache() -> None:
    class Doubler(torch.nn.Module):  # an "encoder": each text's vector is 2 x its letter code
        def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
            codes = torch.tensor([[float(ord(t[0]))] if t else [0.0] for t in texts])
            return {"input_ids": codes, "attention_mask": torch.ones_like(codes)}

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return ids * 2

    cache = torch.zeros(4, 1)
    tuner = TextTuner(Doubler(), ["", "a", "b", ""], limit=8)  # type: ignore[arg-type]
    rows = tuner.refresh(cache, torch.tensor([1, 3]))
    assert rows[1, 0] == 2 * ord("a") and rows[3, 0] == 0 and rows[2, 0] == 0
    assert torch.equal(cache, rows.detach())


def test_the_tuned_encoder_trains_at_its_own_learning_rate(store: Path,
                                                           tiny_model_dir: Path) -> None:
    """Regression: at train.lr (2e-3) LoRA on Scientific stalled at NDCG@10 0.021."""
    from mtrec.train.trainer import _optimizer
    from mtrec.train.weighting import build_weighting

    config = _config(store, tiny_model_dir, "lora")
    prepared = prepare_run(config, store_dir=store.parent)
    model, _ = build(config, prepared, text_vectors(config, prepared, store.parent))
    optimizer = _optimizer(model, build_weighting(config.weighting, model.task_names),
                           config.train)
    lora = {id(p) for n, p in model.named_parameters() if "lora" in n}
    rates = {g["lr"] for g in optimizer.param_groups if {id(p) for p in g["params"]} & lora}
    assert rates == {config.model.text.lr} and config.model.text.lr != config.train.lr

