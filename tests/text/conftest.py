"""Fixtures for the text encoder tests: a tiny random BERT that loads in well under a second."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mtrec.text.encoder import resolve_model_path

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with the default MiniLM tokenizer."""
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
