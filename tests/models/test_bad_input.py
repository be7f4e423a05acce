"""Bad input fails at once with a clear error, before any training step or written file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from mtrec.bundle import BundleError
from mtrec.cli import app
from mtrec.config import ConfigError
from mtrec.data.builder import EventsBuilder, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowLog
from mtrec.data.split import SplitError
from mtrec.data.store import Store, StoreError
from mtrec.data.synthetic import SyntheticConfig, generate
from mtrec.run_config import load_run_config
from mtrec.tasks import TaskError
from mtrec.tasks.base import TaskDims, TaskOptions
from mtrec.tasks.engagement import EngagementTask
from mtrec.text.encoder import TextModelError
from mtrec.train.evaluate import evaluate_bundle
from mtrec.train.run import prepare_run, train_run
from tests.planted import fast_torch, planted, tiny, write_store

pytestmark = pytest.mark.usefixtures("fast")


@pytest.fixture(scope="module")
def fast() -> Iterator[None]:
    """One torch thread (the machine is shared) and no fsync in checkpoints."""
    with fast_torch():
        yield


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small stores: planted funnel data, review-only data, and funnel data without time."""
    folder = tmp_path_factory.mktemp("stores")
    data = planted(n_users=60, n_items=40)
    untimed = generate(SyntheticConfig(n_users=40, n_items=30, with_timestamps=False))
    events = data.result.events
    source = events.set_column(events.schema.get_field_index("source_split"), "source_split",
                               pa.array(["test"] * events.num_rows, pa.string()))
    return {
        "planted": write_store(data, folder),
        "reviews": _review_only(folder),
        "untimed": write_store(untimed, folder, "untimed"),
        "all-test": write_store(dataclasses.replace(
            data, result=dataclasses.replace(data.result, events=source)), folder, "all-test"),
    }


def _review_only(folder: Path) -> Path:
    """An Amazon-like dataset: every event is a review, with no rating value."""
    events, items, users = EventsBuilder(), ItemsBuilder(), UsersBuilder()
    rng = np.random.default_rng(0)
    start = datetime(2024, 1, 1)
    for i in range(20):
        items.add(f"i{i}", title=f"item {i}")
    for u in range(30):
        users.add(f"u{u}")
        for k, i in enumerate(rng.choice(20, size=6, replace=False)):
            events.add(f"u{u}", f"i{i}", "review", ts=start + timedelta(days=u + k))
    result = finish("reviews", events, items, users, RowLog(), files=[])
    path = folder / "reviews.duckdb"
    Store.write_import(path, result)
    return path


def _fails(tmp_path: Path, overrides: dict[str, Any], error: type[Exception],
           *phrases: str) -> str:
    """Train with ``overrides``; it must raise ``error`` naming ``phrases`` and write nothing."""
    out = tmp_path / "bundle"
    with pytest.raises(error) as caught:
        train_run(load_run_config(None, **overrides), out, store_dir=tmp_path / "home")
    message = str(caught.value)
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    return message


def test_unknown_task(stores: dict[str, Path], tmp_path: Path) -> None:
    message = _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["next_item", "clik"]}),
                     TaskError, "unknown task 'clik'", "click")
    assert "known tasks" in message


def test_task_listed_twice(stores: dict[str, Path], tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["click", "click"]}),
           TaskError, "listed twice")


def test_unknown_scenario(stores: dict[str, Path], tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"data.scenarios": ["home", "checkout"]}),
           ConfigError, "unknown scenario 'checkout'", "home, search")


def test_unknown_dataset(tmp_path: Path) -> None:
    _fails(tmp_path, {"data.dataset": "amazon-bueaty"}, StoreError,
           "unknown dataset 'amazon-bueaty'", "amazon-beauty")


@pytest.mark.parametrize("task,phrases", [
    ("purchase", ("task 'purchase'", "behaviour 'purchase'", "this dataset has: review")),
    ("click", ("task 'click'", "behaviour 'click'", "this dataset has: review")),
    ("rating", ("task 'rating'", "'rate'", "this dataset has: review")),
    ("like", ("task 'like'", "neither 'like' nor 'rate'")),
])
def test_task_the_dataset_cannot_label(stores: dict[str, Path], tmp_path: Path, task: str,
                                       phrases: tuple[str, ...]) -> None:
    _fails(tmp_path, tiny(stores["reviews"], **{"model.tasks": ["next_item", task]}),
           TaskError, *phrases)


def test_binary_task_without_negatives(stores: dict[str, Path], tmp_path: Path) -> None:
    # Ratings are 1..5: with a like threshold of 1 every rated interaction is a like.
    _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["next_item", "like"],
                                                "model.task_options.like_threshold": 1.0}),
           TaskError, "task 'like'", "no negatives")


def test_esmm_needs_click(stores: dict[str, Path], tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["purchase"],
                                                "model.task_options.esmm": True}),
           TaskError, "'purchase'", "esmm", "'click'")


def test_engagement_needs_the_temporal_protocol(stores: dict[str, Path],
                                                tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["engagement"],
                                                "data.protocol": "loo"}),
           TaskError, "'engagement'", "'temporal' protocol")


def test_engagement_without_timestamps(stores: dict[str, Path], tmp_path: Path) -> None:
    # Checked before any split: the message names the missing timestamps ...
    _fails(tmp_path, tiny(stores["untimed"], **{"model.tasks": ["engagement"]}),
           TaskError, "'engagement' needs timestamps")
    # ... and the task itself refuses untimed interactions under any protocol.
    config = load_run_config(None, **tiny(stores["untimed"], **{"data.protocol": "loo"}))
    prepared = prepare_run(config, store_dir=tmp_path)
    task = EngagementTask(TaskOptions(), TaskDims(8, 8, 8))
    with pytest.raises(TaskError, match="'engagement' needs timestamps"):
        task.check(prepared.interactions, ("engagement",))


def test_engagement_horizon_longer_than_the_data(stores: dict[str, Path],
                                                 tmp_path: Path) -> None:
    # The synthetic timeline is about two weeks: no training interaction has 60 days after it.
    _fails(tmp_path, tiny(stores["planted"], **{"model.tasks": ["engagement"],
                                                "model.task_options.horizon_days": 60}),
           TaskError, "'engagement'", "60 days")


@pytest.mark.parametrize("model", ["/nonexistent/text-model", "no-such-org/no-such-model"])
def test_missing_text_model_weights(stores: dict[str, Path], tmp_path: Path,
                                    model: str) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"model.item.use_text": True,
                                                "model.text.model": model}),
           TextModelError, model.split("/")[-1])


def test_empty_training_split(stores: dict[str, Path], tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["all-test"], **{"data.protocol": "source"}),
           SplitError, "train part is empty")


def test_bad_value_names_the_key(stores: dict[str, Path], tmp_path: Path) -> None:
    _fails(tmp_path, tiny(stores["planted"], **{"model.mtl.kind": "moe"}),
           ConfigError, "model.mtl", "'moe'", "mmoe")
    _fails(tmp_path, tiny(stores["planted"], **{"train.epochs": -1}),
           ConfigError, "train.epochs")


def test_unknown_key_in_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[model]\ntasks = ["next_item"]\n\n[model.item]\ndim = 32\ndimm = 64\n')
    with pytest.raises(ConfigError, match=r"model\.item: unknown key 'dimm'"):
        load_run_config(path)
    path.write_text('[trian]\nepochs = 3\n')
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_run_config(path)


def test_bundle_used_with_another_dataset(stores: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    train_run(load_run_config(None, **tiny(stores["planted"], **{"train.epochs": 1})), out,
              store_dir=tmp_path)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    ok = evaluate_bundle(out, "valid", store_dir=tmp_path)
    assert ok["metrics"]["next_item/users"] > 0
    with pytest.raises(BundleError, match="40 items") as caught:
        evaluate_bundle(out, "test", dataset=str(stores["reviews"]), store_dir=tmp_path)
    assert "20 items" in str(caught.value) and "reviews" in str(caught.value)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with pytest.raises(BundleError, match="not a bundle"):
        evaluate_bundle(tmp_path / "nothing-here", "test", store_dir=tmp_path)
    with pytest.raises(ConfigError, match="--split must be valid or test"):
        evaluate_bundle(out, "train", store_dir=tmp_path)


runner = CliRunner()


def test_cli_unknown_task_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["train", "--tasks", "bogus", "--out", str(out),
                                 "--store-dir", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown task 'bogus'" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_cli_unknown_config_key_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[train]\nepochz = 3\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "b"),
                                 "--store-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown key 'epochz'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
