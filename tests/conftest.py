"""Shared fixtures: the real data root (skipped when absent) and a synthetic store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrec.data.sources.base import data_root
from mtrec.data.store import Store
from mtrec.data.synthetic import SyntheticConfig, generate


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
