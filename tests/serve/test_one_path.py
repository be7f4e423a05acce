"""One scoring path: evaluation's scores, ``Recommender`` and the HTTP API agree.

Property test on planted data: for random users and items, the per-task scores computed
the way evaluation computes them (the batcher's state after every part, the whole-catalog
softmax, the pointwise heads), ``Recommender.score`` and ``/v1/score`` agree to 1e-5, and
``Recommender.recommend`` and ``/v1/recommend`` return the same top k.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mtrec.rank.config import DEFAULT_STAGES
from mtrec.recommender import ALL_PARTS, Recommender
from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.serve.index import IndexConfig
from tests.serve.conftest import Served


@pytest.fixture(scope="module")
def both(served: Served) -> Iterator[tuple[Recommender, TestClient]]:
    rec = Recommender.load(served.bundle)
    # the exact float32 catalog pass, as offline (the half-precision pass is checked for
    # candidate recall in benchmarks/scan_accuracy.py)
    engine = Engine(Recommender.load(served.bundle), IndexConfig(scan="float32"))
    with TestClient(create_app(ServeSettings(scan="float32", api_key="k"), engine),
                    base_url="http://localhost", headers={"X-API-Key": "k"}) as client:
        yield rec, client


@torch.no_grad()
def _evaluation_scores(rec: Recommender, user: str, items: list[str]) -> dict[str, np.ndarray]:
    """Scores as evaluation computes them: the batcher's state after every part."""
    model = rec.model
    tables = model.item_tables()
    batch, _ = rec.batcher.eval_batch([rec.user_code(user)], ALL_PARTS)
    batch.cols = torch.tensor([batch.items.shape[1] - 1])  # the state after the history
    batch.rows = torch.zeros(1, dtype=torch.long)
    batch.target_gap = torch.zeros(1, dtype=torch.long)  # the next interaction's time unknown
    batch.target_scenario = torch.tensor([rec.default_scenario])
    states = model.encode(batch, tables)
    codes = torch.from_numpy(rec.item_codes(items))
    out = {"next_item": torch.softmax(model.catalog_logits(states, tables), -1)[0, codes - 1]}
    heads = model.heads(states.h.expand(len(codes), -1), tables.vectors[codes],
                        states.scenario.expand(len(codes)))
    for name, task in model.pointwise_tasks().items():
        out[name] = task.eval_scores(heads).float()
    return {k: v.numpy() for k, v in out.items()}


def test_scores_agree_across_evaluation_recommender_and_api(
        both: tuple[Recommender, TestClient], served: Served) -> None:
    rec, client = both
    rng = np.random.default_rng(0)
    users = rng.choice(served.data.user_ids, 12, replace=False).tolist()
    for user in users:
        items = rng.choice(served.data.item_ids, 8, replace=False).tolist()
        expected = _evaluation_scores(rec, user, items)
        offline = rec.score(user, items)
        online = client.post("/v1/score", json={"user_id": user, "items": items}).json()
        assert set(offline) == set(online["scores"]) == set(expected) == set(rec.tasks)
        for task in rec.tasks:
            np.testing.assert_allclose(offline[task], expected[task], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(online["scores"][task], expected[task], rtol=1e-5,
                                       atol=1e-6)


@pytest.mark.parametrize("objective", [None, {"next_item": 1.0, "rating": 0.01},
                                       {"click": 1.0}])
def test_recommend_agrees_offline_and_online(both: tuple[Recommender, TestClient],
                                             served: Served,
                                             objective: dict[str, float] | None) -> None:
    rec, client = both
    rng = np.random.default_rng(1)
    for user in rng.choice(served.data.user_ids, 10, replace=False).tolist():
        offline = rec.recommend(user, k=7, objective=objective)
        body = {"user_id": user, "k": 7, **({"objective": objective} if objective else {})}
        online = client.post("/v1/recommend", json=body).json()["items"]
        assert [r.item_id for r in offline] == [r["item_id"] for r in online]
        np.testing.assert_allclose([r.score for r in offline], [r["score"] for r in online],
                                   rtol=1e-5, atol=1e-7)
        assert [[i for i, _ in r.because] for r in offline] == \
            [[b["item_id"] for b in r["because"]] for r in online]


def test_default_scenario_and_errors_follow_one_rule(both: tuple[Recommender, TestClient],
                                                     served: Served) -> None:
    rec, client = both
    user = served.data.user_ids[0]
    engine: Engine = client.app.state.service.engine  # type: ignore[attr-defined]
    assert rec.scenario_code(None) == engine.scenario(None) == rec.default_scenario
    with pytest.raises(ValueError, match="bogus"):
        rec.recommend(user, objective={"bogus": 1.0})
    answer = client.post("/v1/recommend", json={"user_id": user, "objective": {"bogus": 1}})
    assert answer.status_code == 422 and "bogus" in answer.json()["detail"]
    with pytest.raises(KeyError, match="nobody"):
        rec.score("nobody", [served.data.item_ids[0]])
    assert client.post("/v1/score", json={"user_id": "nobody",
                                          "items": [served.data.item_ids[0]]}).status_code == 404


def test_the_bundle_saves_and_applies_its_ranking_stages(served: Served,
                                                         tmp_path: Path) -> None:
    import json
    import shutil

    from mtrec.bundle import read_meta

    assert read_meta(served.bundle)["run"]["rank"]["stages"] == list(DEFAULT_STAGES)
    bundle = tmp_path / "bundle"
    shutil.copytree(served.bundle, bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["run"]["rank"] = {"stages": ["cold_start", "filter", "blend", "diversity"],
                             "candidates": 50, "options": [["diversity.weight", 1.0]]}
    (bundle / "config.json").write_text(json.dumps(config))
    rec = Recommender.load(bundle)
    assert [s.name for s in rec.pipeline.stages] == ["cold_start", "filter", "blend",
                                                     "diversity"]
    user = served.data.user_ids[0]
    plain = Recommender.load(served.bundle).recommend(user, k=5)
    diverse = rec.recommend(user, k=5)
    assert diverse[0].item_id == plain[0].item_id  # the best stays first
    assert all(not r.because for r in diverse)  # no explain stage configured
    engine = Engine(rec, IndexConfig(scan="float32"))
    with TestClient(create_app(ServeSettings(scan="float32", api_key="k"), engine),
                    base_url="http://localhost", headers={"X-API-Key": "k"}) as client:
        online = client.post("/v1/recommend", json={"user_id": user, "k": 5}).json()["items"]
    assert [r["item_id"] for r in online] == [r.item_id for r in diverse]
    config["run"]["rank"] = {"stages": ["blend", "rerank"]}
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown rank stage 'rerank'"):
        Recommender.load(bundle)
