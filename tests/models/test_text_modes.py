"""Fine-tuning the text encoder inside training: LoRA trains adapter weights only, full
trains the encoder, and both leave a bundle that serves from refreshed cached vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtrec.recommender import Recommender
from mtrec.run_config import RunConfig, load_run_config
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
        "model.text.mode": mode, "train.epochs": epochs}))


def test_lora_step_changes_only_lora_weights(store: Path, tiny_model_dir: Path) -> None:
    config = _config(store, tiny_model_dir, "lora")
    prepared = prepare_run(config, store_dir=store.parent)
    model, batcher = build(config, prepared, text_vectors(config, prepared, store.parent))
    assert model.text_tuner is not None
    before = {k: v.clone() for k, v in model.text_tuner.state_dict().items()}
    trainable = [n for n, p in model.text_tuner.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    losses = MultiTaskLoss(model)(batcher.train_batch(batcher.train_users()[:8]))
    sum(losses.values()).backward()  # type: ignore[union-attr]
    optimizer.step()
    after = model.text_tuner.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora" in k for k in changed)


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
