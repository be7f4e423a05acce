"""Shared fixtures: the real data root (skipped when absent), a synthetic store and a tiny BERT."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mtrec.data.sources.base import data_root
from mtrec.data.store import Store
from mtrec.data.synthetic import SyntheticConfig, generate
from mtrec.text.encoder import resolve_model_path

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set MTREC_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def real_stores(tmp_path_factory: pytest.TempPathFactory, real_root: Path) -> Path:
    """A store folder into which tests import real datasets once per session."""
    return tmp_path_factory.mktemp("stores")


@pytest.fixture()
def synthetic_store(tmp_path: Path) -> Path:
    data = generate(SyntheticConfig(n_users=60, n_items=40, seed=3))
    path = tmp_path / "synthetic.duckdb"
    Store.write_import(path, data.result)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with the default MiniLM tokenizer (loads in < 1 s)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    source = Path(resolve_model_path("default"))
    target = tmp_path_factory.mktemp("tiny-bert")
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    tokenizer = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(target))
    return target
