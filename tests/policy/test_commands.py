"""``mtrec policy train`` / ``eval``, the ``policy`` ranking stage and its service field, end
to end on the planted shop logs (tests/policy/world.py) with a tiny ranking model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mtrec.cli import app as cli
from mtrec.policy.commands import evaluate, train
from mtrec.policy.experiment import LEARNED
from mtrec.policy.store import PolicyError
from mtrec.recommender import Recommender
from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from tests.planted import fast_torch
from tests.policy.conftest import PROTOCOL

KEY = {"X-API-Key": "secret"}


def test_train_writes_the_policy_with_its_checks(trained):
    home, result = trained
    folder = home / "bundle" / "policy"
    assert (folder / "policy.safetensors").is_file() and (folder / "policy.json").is_file()
    checks = result["simulator_validation"]
    assert set(checks["calibration"]) == {"take", "purchase"}
    assert 0 <= checks["returns"]["sim_return_5d"] <= 1
    assert set(result["weights"]) == {"next_item_log", "purchase_logit", "popularity_log",
                                      "retrieval_rank_log", "shown_before"}


def test_the_policy_stage_reorders_by_the_policy(trained):
    home, _ = trained
    rec = Recommender.load(home / "bundle")
    user = str(rec.catalog.user_ids[1])
    plain = rec.recommend(user, k=100)  # every unseen item of the 30
    ranked = rec.recommend(user, k=100, policy=True)
    assert {r.item_id for r in plain} == {r.item_id for r in ranked}  # same candidates
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)  # ordered by the policy's score


def test_eval_compares_every_policy_with_intervals(trained, tmp_path):
    home, _ = trained
    with fast_torch():
        result = evaluate(home / "bundle", (0, 1), tmp_path / "eval.json", iterations=2)
    summary = result["summary"]["policies"]
    assert set(summary) == {LEARNED, "greedy (purchase)", "blend (next item + purchase)",
                            "retrieval order (next item)", "popularity", "random"}
    for row in summary.values():
        assert row["reward"]["low"] <= row["reward"]["mean"] <= row["reward"]["high"]
        assert 0 <= row["ndcg@10"]["mean"] <= 1
    run = result["runs"][0]
    assert run["users"]["simulated"] >= 60
    assert {"snips", "dr"} <= set(run["off_policy"]["greedy (purchase)"])
    assert (tmp_path / "eval.seeds" / "seed-1.json").is_file()  # a rerun resumes per seed


def test_a_bundle_without_a_policy_is_refused(trained, tmp_path):
    home, _ = trained
    bare = tmp_path / "bare"
    shutil.copytree(home / "bundle", bare, ignore=shutil.ignore_patterns("policy"))
    out = CliRunner().invoke(cli, ["policy", "eval", "--bundle", str(bare)])
    assert out.exit_code == 2 and "no ranking policy" in out.output
    with pytest.raises(ValueError, match="no ranking policy"):
        Recommender.load(bare).recommend(str(Recommender.load(bare).catalog.user_ids[1]),
                                         policy=True)
    app = create_app(ServeSettings(api_key="secret"), Engine.from_bundle(bare))
    with TestClient(app, base_url="http://localhost", headers=KEY) as client:
        r = client.post("/v1/recommend", json={"user_id": "u1", "policy": True})
        assert r.status_code == 422 and "no ranking policy" in r.json()["detail"]
        assert client.post("/v1/recommend", json={"user_id": "u1"}).status_code == 200


def test_the_service_serves_the_policy_list(trained):
    home, _ = trained
    app = create_app(ServeSettings(api_key="secret"), Engine.from_bundle(home / "bundle"))
    with TestClient(app, base_url="http://localhost", headers=KEY) as client:
        r = client.post("/v1/recommend", json={"user_id": "u1", "k": 5, "policy": True})
        greedy = client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    assert greedy.status_code == 200


def test_corrupt_policy_files_fail_at_load_naming_the_file(trained, tmp_path):
    home, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(home / "bundle", broken)
    (broken / "policy" / "policy.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(PolicyError, match=r"policy\.safetensors"):
        Engine.from_bundle(broken)


def test_the_report_shows_the_policy_section(trained, tmp_path):
    from mtrec.report.build import write_report

    home, _ = trained
    with fast_torch():
        evaluate(home / "bundle", (0, 1), None, iterations=2)  # -> bundle/policy/eval.json
    files = write_report(home / "bundle", tmp_path / "report", compare=False)
    text = files.markdown.read_text()
    assert "Long-term ranking policy" in text and "come back after a session" in text
    names = {f.name for f in files.figures}
    assert {"policy_reward.svg", "policy_calibration.svg", "policy_returns.svg"} <= names


def test_a_bundle_not_trained_at_the_cut_is_refused(trained, tmp_path):
    """A bundle of `mtrec train` has seen the events after the cut: used as the policy's
    ranking model it would leak them into the candidates and the immediate metrics."""
    import json

    home, result = trained
    other = tmp_path / "other"
    shutil.copytree(home / "bundle", other, ignore=shutil.ignore_patterns("policy"))
    config = json.loads((other / "config.json").read_text())
    config["protocol"] = "temporal"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trained before its cut"):
        train(result["dataset"], other, iterations=1, protocol=PROTOCOL)


def test_an_item_added_live_does_not_break_the_policy():
    """Bug: the policy read the popularity of a candidate by its code, and an item added to
    the live catalog after training has a code past the array: IndexError, a 500."""
    from mtrec.policy.features import candidate_features

    feats = candidate_features({"next_item": np.array([0.5, 0.1]),
                                "purchase": np.array([0.2, 0.3])}, np.array([0.0, 4.0]),
                               np.array([1, 7]))
    assert feats[1, 2] == 0.0 and abs(feats[0, 2] - np.log1p(4.0)) < 1e-6


def test_policy_train_refuses_data_without_time_or_too_short(tmp_path):
    from tests.policy.world import shop_rows, shop_store

    rows = shop_rows(n_users=20, days=20)
    store = shop_store(tmp_path, rows)
    runner = CliRunner()
    out = runner.invoke(cli, ["policy", "train", "--dataset", str(store), "--out",
                              str(tmp_path / "b"), "--horizon-days", "400"])
    assert out.exit_code == 2 and "leave no training history" in out.output
    untimed = tmp_path / "untimed"
    untimed.mkdir()
    bare = shop_store(untimed, [(u, i, b, -1) for u, i, b, _ in rows], name="bare")
    out = runner.invoke(cli, ["policy", "train", "--dataset", str(bare), "--out",
                              str(tmp_path / "c")])
    assert out.exit_code == 2 and "'ts'" in out.output


def test_a_corrupt_policy_json_is_named(trained, tmp_path):
    home, _ = trained
    broken = tmp_path / "broken-json"
    shutil.copytree(home / "bundle", broken)
    (broken / "policy" / "policy.json").write_text("{not json")
    with pytest.raises(PolicyError, match=r"policy\.json"):
        Recommender.load(broken)
