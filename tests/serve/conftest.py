"""The tiny served bundle shared by the API and the web-page tests (trained once a session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mtrec.data.synthetic import SyntheticData
from mtrec.run_config import load_run_config
from mtrec.train.run import train_run
from tests.planted import fast_torch, planted, tiny, write_store


@dataclass(frozen=True)
class Served:
    data: SyntheticData
    bundle: Path
    encoder_dir: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Served:
    """A bundle trained on planted data (60 items, 120 users) with a random tiny BERT."""
    data = planted(n_users=120, n_items=60)
    home = tmp_path_factory.mktemp("serve")
    store = write_store(data, home)
    config = load_run_config(None, **tiny(
        store, **{"model.tasks": ["next_item", "click", "rating"], "model.item.use_text": True,
                  "model.text.model": str(tiny_model_dir), "model.text.bf16": False,
                  "train.epochs": 6}))
    with fast_torch():
        train_run(config, home / "bundle", store_dir=home)
    return Served(data, home / "bundle", tiny_model_dir)
