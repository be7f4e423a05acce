"""Tests of the text encoder (tiny random BERT, plus one run of the real MiniLM) and its cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrec.text.cache import EmbeddingCache
from mtrec.text.encoder import (
    TextEncoder,
    TextEncoderConfig,
    TextModelError,
    resolve_model_path,
)

TEXTS = [
    "a red lipstick",
    "",
    "an extremely long product title about a moisturising face cream with many words in it",
    "charger",
    "lipstick in red, matte finish",
]


@pytest.fixture(scope="module")
def frozen(tiny_model_dir: Path) -> TextEncoder:
    return TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), bf16=False))


def test_forward_is_masked_mean(frozen: TextEncoder) -> None:
    batch = frozen.tokenize(TEXTS[:3])
    assert batch["attention_mask"].shape[1] <= frozen.config.max_length
    with torch.no_grad():
        pooled = frozen(batch["input_ids"], batch["attention_mask"])
        hidden = frozen.model(**batch).last_hidden_state
    for row in range(3):
        n = int(batch["attention_mask"][row].sum())
        torch.testing.assert_close(pooled[row], hidden[row, :n].mean(dim=0))
    assert pooled.shape == (3, frozen.dim) and frozen.dim == 32


def test_encode_keeps_input_order(frozen: TextEncoder) -> None:
    together = frozen.encode(TEXTS, batch_size=2)
    assert together.dtype == np.float32 and together.shape == (len(TEXTS), 32)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(together[i], frozen.encode([text])[0], atol=1e-5)
    assert frozen.encode([]).shape == (0, 32)


def test_padding_does_not_change_vector(tiny_model_dir: Path) -> None:
    short, long = "red lipstick", "a very long title " * 10
    for bf16, atol in ((False, 1e-5), (True, 5e-2)):
        enc = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), bf16=bf16))
        alone = enc.encode([short])[0]
        padded = enc.encode([long, short], batch_size=8)[1]
        np.testing.assert_allclose(alone, padded, atol=atol)


def test_encode_reports_progress_and_restores_training(frozen: TextEncoder) -> None:
    seen: list[int] = []
    frozen.train()
    frozen.encode(TEXTS, batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1] and frozen.training
    frozen.eval()


def test_modes_trainable_parameters(tiny_model_dir: Path, frozen: TextEncoder) -> None:
    total = sum(p.numel() for p in frozen.parameters())
    assert frozen.trainable_parameters() == 0
    full = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), mode="full"))
    assert full.trainable_parameters() == total
    lora = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), mode="lora"))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # r=8 on query and value of 2 layers, 32 wide: 2 * 2 * (8*32 + 32*8)
    assert lora.trainable_parameters() == 2048


def test_lora_step_changes_only_lora_weights(tiny_model_dir: Path) -> None:
    enc = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), mode="lora"))
    before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    optim = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=0.5)
    enc.train()
    batch = enc.tokenize(TEXTS)
    enc(batch["input_ids"], batch["attention_mask"]).pow(2).sum().backward()
    optim.step()
    changed = {n for n, p in enc.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_lora_state_dict_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    config = TextEncoderConfig(model=str(tiny_model_dir), mode="lora", bf16=False)
    trained = TextEncoder.from_config(config)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_" in name:
                param.add_(torch.randn_like(param) * 0.1)
    state = trained.lora_state_dict()
    assert state and all("lora_" in k for k in state)
    save_file(state, str(tmp_path / "lora.safetensors"))
    fresh = TextEncoder.from_config(config)
    assert not np.allclose(fresh.encode(TEXTS), trained.encode(TEXTS))
    fresh.load_lora_state_dict(load_file(str(tmp_path / "lora.safetensors")))
    np.testing.assert_allclose(fresh.encode(TEXTS), trained.encode(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="missing"):
        fresh.load_lora_state_dict({})


def test_lora_state_dict_needs_lora_mode(frozen: TextEncoder) -> None:
    with pytest.raises(ValueError, match="lora"):
        frozen.lora_state_dict()


def test_missing_hub_model_is_a_clear_error() -> None:
    name = "no-such-org/no-such-model-xyz"
    with pytest.raises(TextModelError, match="local") as info:
        TextEncoder.from_config(TextEncoderConfig(model=name))
    assert name in str(info.value) and "download" in str(info.value)


def test_hub_name_loads_from_local_cache_only(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "models--tiny-org--tiny-bert"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_path("tiny-org/tiny-bert") == str(repo / "snapshots" / "abc123")
    enc = TextEncoder.from_config(TextEncoderConfig(model="tiny-org/tiny-bert"))
    assert enc.dim == 32 and enc.model_key.startswith("tiny-org_tiny-bert-")


def test_directory_without_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TextModelError, match=r"config\.json") as info:
        resolve_model_path(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    with pytest.raises(TextModelError, match="does not exist"):
        resolve_model_path(str(tmp_path / "absent"))


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'qlora'.*frozen, lora, full"):
        TextEncoderConfig(mode="qlora")


def test_model_key_is_stable_and_distinguishes(tiny_model_dir: Path, frozen: TextEncoder) -> None:
    again = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir)))
    assert again.model_key == frozen.model_key and frozen.model_key.endswith("-mean-64")
    shorter = TextEncoder.from_config(TextEncoderConfig(model=str(tiny_model_dir), max_length=16))
    assert shorter.model_key != frozen.model_key


class CountingEncoder:
    """A fake encoder: deterministic vectors from the text, counting encoded texts."""

    def __init__(self, model_key: str = "fake", dim: int = 4) -> None:
        self.model_key, self.dim, self.calls = model_key, dim, 0

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        self.calls += len(texts)
        return np.array(
            [[len(t), sum(map(ord, t)) % 97, i % 3, 1.0][: self.dim] for i, t in enumerate(texts)],
            dtype=np.float32,
        )


def test_cache_reuses_and_recomputes_only_changes(tmp_path: Path) -> None:
    cache, enc = EmbeddingCache(tmp_path), CountingEncoder()
    texts = ["a", "bb", "a", "ccc"]
    first = cache.get_or_compute(enc, texts)
    assert cache.last_computed == 3 and enc.calls == 3  # duplicates encoded once
    np.testing.assert_array_equal(first[0], first[2])
    second = EmbeddingCache(tmp_path).get_or_compute(enc, texts)
    np.testing.assert_array_equal(first, second)
    assert enc.calls == 3
    changed = ["a", "bb", "a", "dddd"]
    third = cache.get_or_compute(enc, changed)
    assert cache.last_computed == 1 and cache.last_reused == 3 and enc.calls == 4
    np.testing.assert_array_equal(third[:3], first[:3])
    other = CountingEncoder(model_key="other")
    cache.get_or_compute(other, texts)
    assert cache.last_computed == 3 and other.calls == 3
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_cache_matches_direct_encode(tmp_path: Path, frozen: TextEncoder) -> None:
    cache = EmbeddingCache(tmp_path / "sub")
    cached = cache.get_or_compute(frozen, TEXTS)
    np.testing.assert_allclose(cached, frozen.encode(TEXTS), atol=1e-6)
    assert cache.get_or_compute(frozen, TEXTS[::-1]).shape == (len(TEXTS), frozen.dim)
    assert cache.last_computed == 0
    np.testing.assert_array_equal(cache.get_or_compute(frozen, TEXTS[::-1]), cached[::-1])


@pytest.mark.parametrize("damage", ["garbage", "wrong_dim"])
def test_corrupt_cache_is_rebuilt_with_warning(tmp_path: Path, damage: str) -> None:
    cache, enc = EmbeddingCache(tmp_path), CountingEncoder()
    expected = cache.get_or_compute(enc, ["x", "y"])
    path = cache.path_for(enc.model_key)
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    else:
        with pytest.warns(UserWarning, match="shape"):
            EmbeddingCache(tmp_path).get_or_compute(CountingEncoder(dim=3), ["z"])
    with pytest.warns(UserWarning, match=path.name):
        rebuilt = cache.get_or_compute(enc, ["x", "y"])
    assert cache.last_computed == 2
    np.testing.assert_array_equal(rebuilt, expected)
    cache.get_or_compute(enc, ["x", "y"])
    assert cache.last_computed == 0


@pytest.mark.slow
def test_real_minilm_separates_topics() -> None:
    enc = TextEncoder.from_config(TextEncoderConfig())
    vectors = enc.encode(["a red lipstick", "lipstick in red", "a laptop charger"])
    assert enc.dim == 384 and vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.1
    assert enc.model_key.startswith("all-MiniLM-L6-v2-")
