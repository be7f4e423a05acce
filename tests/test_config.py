"""Run configs: defaults, TOML/JSON files, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrec.config import ConfigError, read_config_file
from mtrec.run_config import RunConfig, load_run_config


def test_defaults_are_the_documented_default_model() -> None:
    config = load_run_config(None)
    assert config == RunConfig()
    assert config.model.tasks == ("next_item",)
    assert config.model.text.model == "default"


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[model]\ntasks = ["next_item", "rating"]\n[train]\nepochs = 3\nlr = 1\n')
    config = load_run_config(path, **{"train.epochs": 7, "train.seed": None})
    assert config.model.tasks == ("next_item", "rating")
    assert config.train.epochs == 7  # the flag wins over the file
    assert config.train.lr == 1.0  # an int where a float is expected is accepted


@pytest.mark.parametrize(("text", "needle"), [
    ("[train]\nepoch = 3\n", "train: unknown key 'epoch'"),
    ("[model.item]\ndim = 'big'\n", "model.item.dim: expected int"),
    ("[model.mtl]\nkind = 'moe'\n", "mtl.kind must be one of"),
    ("[weighting]\nkind = 'magic'\n", "magic"),
    ("[train]\nepochs = true\n", "train.epochs: expected int"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert needle in str(info.value)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad\.json: cannot parse"):
        read_config_file(bad)
