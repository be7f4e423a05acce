"""``mtrec train``, ``eval`` and ``recommend`` from the command line, on planted data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from tests.planted import planted, write_store

runner = CliRunner()

CONFIG = """
[data]
protocol = "temporal"
[model]
tasks = ["next_item", "rating"]
[model.item]
use_text = false
dim = 16
[model.user]
max_len = 12
layers = 1
[train]
epochs = 3
batch_size = 32
bf16 = false
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    store = write_store(planted(n_users=80, n_items=30), tmp)
    (tmp / "run.toml").write_text(CONFIG)
    result = runner.invoke(app, ["train", "--dataset", str(store), "--config",
                                 str(tmp / "run.toml"), "--out", str(tmp / "b"),
                                 "--store-dir", str(tmp), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tasks"] == ["next_item", "rating"] and summary["epochs_run"] == 3
    assert "next_item/ndcg@10" in summary["test"] and "rating/rmse" in summary["test"]
    return tmp, store


def test_eval_reproduces_the_training_test_metrics(trained: tuple[Path, Path]) -> None:
    tmp, _ = trained
    result = runner.invoke(app, ["eval", "--bundle", str(tmp / "b"), "--store-dir", str(tmp),
                                 "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    saved = json.loads((tmp / "b" / "metrics.json").read_text())["test"]
    assert metrics["next_item/ndcg@10"] == pytest.approx(saved["next_item/ndcg@10"], abs=1e-6)
    assert metrics["rating/rmse"] == pytest.approx(saved["rating/rmse"], rel=1e-5)


def test_recommend_with_objective(trained: tuple[Path, Path]) -> None:
    tmp, _ = trained
    catalog = json.loads((tmp / "b" / "catalog.json").read_text())
    user = catalog["user_ids"][0]
    result = runner.invoke(app, ["recommend", "--bundle", str(tmp / "b"), "--user", user,
                                 "--k", "4", "--objective", "rating=1", "--json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert len(items) == 4 and len({i["item_id"] for i in items}) == 4
    ratings = [i["scores"]["rating"] for i in items]
    assert ratings == sorted(ratings, reverse=True)  # ranked by the rating objective
    assert all(i["score"] == pytest.approx(i["scores"]["rating"]) for i in items)


@pytest.mark.parametrize(("args", "needle"), [
    (["--user", "nobody"], "unknown user 'nobody'"),
    (["--user", "{user}", "--objective", "purchase=1"], "purchase"),
    (["--user", "{user}", "--objective", "rating"], "expected task=weight"),
    (["--user", "{user}", "--scenario", "mars"], "unknown scenario 'mars'"),
])
def test_recommend_bad_input_is_one_line(trained: tuple[Path, Path], args: list[str],
                                         needle: str) -> None:
    tmp, _ = trained
    user = json.loads((tmp / "b" / "catalog.json").read_text())["user_ids"][0]
    args = [a.replace("{user}", user) for a in args]
    result = runner.invoke(app, ["recommend", "--bundle", str(tmp / "b"), *args])
    assert result.exit_code == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_recommend_with_fewer_candidates_than_items(trained: tuple[Path, Path]) -> None:
    """Bug: retrieval of candidates from a catalog larger than ``candidates`` ran with
    gradients on and crashed on ``.numpy()`` (any real catalog; tests had < 200 items)."""
    from mtrec.recommender import Recommender

    tmp, _ = trained
    rec = Recommender.load(tmp / "b")
    user = str(rec.catalog.user_ids[0])
    top = rec.recommend(user, k=2, candidates=3)
    assert len(top) == 2
    best = rec.recommend(user, k=1, candidates=rec.catalog.n_items)[0]
    assert top[0].item_id == best.item_id  # the retrieval pre-filter keeps the top item


def test_eval_of_a_missing_bundle(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--bundle", str(tmp_path / "none")])
    assert result.exit_code == 2 and "not a bundle" in result.stderr


def test_no_refit_flag_keeps_the_selected_model(trained: tuple[Path, Path]) -> None:
    """``--no-refit`` overrides the default (and a config's) ``train.refit``: no refit run is
    made and ``eval --split valid`` reproduces the selection's figure without a note."""
    tmp, store = trained
    assert (tmp / "b" / "refit" / "history.csv").is_file()  # the default refits
    out = tmp / "selected"
    result = runner.invoke(app, ["train", "--dataset", str(store), "--config",
                                 str(tmp / "run.toml"), "--out", str(out), "--no-refit",
                                 "--store-dir", str(tmp), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["config"]["train"]["refit"] is False and not (out / "refit").exists()
    again = runner.invoke(app, ["eval", "--bundle", str(out), "--split", "valid",
                                "--store-dir", str(tmp), "--json"])
    assert again.exit_code == 0, again.output
    payload = json.loads(again.stdout)
    assert "note" not in payload
    assert payload["metrics"]["next_item/ndcg@10"] == pytest.approx(
        summary["valid"]["next_item/ndcg@10"], abs=1e-6)
