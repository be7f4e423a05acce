"""Multi-scenario catalogs: each scenario owns its items, is trained, evaluated and served
over them only, and no held-out interaction of one scenario leaks into any training part.

Planted data: two domains ``a`` (30 items) and ``b`` (20 items) share users; each user has
a taste (one of 5 groups) and interacts, in both domains, with items of that group only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mtrec.data.builder import EventsBuilder, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowLog
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.data.store import Store
from mtrec.eval.protocols import evaluate_scorer
from mtrec.models.baselines import Popularity
from mtrec.models.batches import SequenceBatcher
from mtrec.recommender import Recommender
from mtrec.run_config import load_run_config
from mtrec.serve.app import ServeSettings, create_app
from mtrec.serve.engine import Engine
from mtrec.train.run import prepare_run, train_run
from tests.planted import fast_torch, tiny

DOMAINS = {"a": 30, "b": 20}
GROUPS = 5
N_USERS = 80


def two_domains(path: Path, leak_one: bool = False) -> Path:
    """A store of the planted two-domain data (``leak_one``: one event of an ``a`` item
    happens in scenario ``b``, so the catalog is not partitioned)."""
    rng = np.random.default_rng(0)
    items, users, events = ItemsBuilder(), UsersBuilder(), EventsBuilder()
    for domain, n in DOMAINS.items():
        for i in range(n):
            items.add(f"{domain}:{i}", scenario=domain)
    for u in range(N_USERS):
        user, group = f"u{u}", u % GROUPS
        users.add(user)
        for domain, n in DOMAINS.items():
            own = [i for i in range(n) if i % GROUPS == group]
            picks = rng.permutation(own)[:5 if domain == "a" else 4]
            parts = ["train"] * (len(picks) - 2) + ["valid", "test"]
            for item, part in zip(picks, parts, strict=True):
                events.add(user, f"{domain}:{item}", "purchase", scenario=domain,
                           source_split=part)
    if leak_one:
        events.add("u0", "a:1", "purchase", scenario="b", source_split="train")
    result = finish("two-domains", events, items, users, RowLog(), [], ordered=False)
    Store.write_import(path, result)
    return path


@dataclass(frozen=True)
class Trained:
    store: Path
    bundle: Path
    home: Path


def _config(store: Path, kind: str = "star"):  # type: ignore[no-untyped-def]
    return load_run_config(None, **tiny(store, **{
        "data.protocol": "source", "model.mtl.kind": kind, "train.epochs": 6,
        "train.refit": False}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    home = tmp_path_factory.mktemp("scenarios")
    store = two_domains(home / "two.duckdb")
    with fast_torch():
        train_run(_config(store), home / "bundle", store_dir=home)
    return Trained(store, home / "bundle", home)


def test_a_partitioned_catalog_is_scoped(tmp_path: Path) -> None:
    prepared = prepare_run(_config(two_domains(tmp_path / "s.duckdb")), store_dir=tmp_path)
    cat = prepared.catalog
    assert cat.scoped and cat.scenarios == ("", "a", "b")
    names = [cat.scenarios[s] for s in cat.item_scenarios[1:]]
    assert names == [str(i).split(":")[0] for i in cat.item_ids[1:]]


def test_items_used_in_another_scenario_are_not_scoped(tmp_path: Path) -> None:
    store = two_domains(tmp_path / "s.duckdb", leak_one=True)
    assert not prepare_run(_config(store), store_dir=tmp_path).catalog.scoped


def test_no_held_out_interaction_is_in_any_training_part(tmp_path: Path) -> None:
    d = prepare_run(_config(two_domains(tmp_path / "s.duckdb")), store_dir=tmp_path).interactions
    train = {(u, i) for u, i in zip(d.user[d.part == TRAIN], d.item[d.part == TRAIN],
                                    strict=True)}
    held = np.isin(d.part, (VALID, TEST))
    assert held.sum() == 4 * N_USERS  # a valid and a test row per user and domain
    assert not any((u, i) in train for u, i in zip(d.user[held], d.item[held], strict=True))


def test_every_scenario_target_is_ranked_within_its_scenario(trained: Trained) -> None:
    from mtrec.train.evaluate import evaluate_bundle

    out = evaluate_bundle(trained.bundle, "test", store_dir=trained.home)
    # one target per user and scenario, not one per user
    assert out["metrics"]["next_item/users"] == 2 * N_USERS
    # the planted taste carries: far above a random ranking of a domain's ~20 unseen items
    assert out["metrics"]["next_item/ndcg@10"] > 0.45


def test_baselines_rank_within_the_scenario(trained: Trained) -> None:
    prepared = prepare_run(_config(trained.store), store_dir=trained.home)
    data, cat = prepared.interactions, prepared.catalog
    batcher = SequenceBatcher(data, 16, {}, per_scenario=True)
    pop = Popularity().fit(data, cat.n_items)
    for code, name in enumerate(cat.scenarios[1:], start=1):
        scoped = evaluate_scorer(pop.score, batcher, TEST, cat.n_items,
                                 scope=cat.item_scenarios, scenario=code)
        free = evaluate_scorer(pop.score, batcher, TEST, cat.n_items, scenario=code)
        assert scoped["next_item/users"] == N_USERS, name
        assert scoped["next_item/recall@20"] >= free["next_item/recall@20"], name


def test_recommendations_stay_in_the_requested_scenario(trained: Trained) -> None:
    rec = Recommender.load(trained.bundle)
    for scenario in DOMAINS:
        got = rec.recommend("u3", k=10, scenario=scenario)
        assert got and all(r.item_id.startswith(f"{scenario}:") for r in got), scenario
    with pytest.raises(KeyError, match="unknown scenario 'c'"):
        rec.recommend("u3", k=5, scenario="c")


@pytest.fixture()
def client(trained: Trained) -> Iterator[TestClient]:
    engine = Engine(Recommender.load(trained.bundle))
    with TestClient(create_app(ServeSettings(api_key="k"), engine),
                    base_url="http://localhost", headers={"X-API-Key": "k"}) as c:
        yield c


def test_the_service_serves_each_scenario_its_own_items(client: TestClient) -> None:
    for scenario in DOMAINS:
        r = client.post("/v1/recommend", json={"user_id": "u3", "k": 8, "scenario": scenario})
        assert r.status_code == 200, r.text
        ids = [i["item_id"] for i in r.json()["items"]]
        assert ids and all(i.startswith(f"{scenario}:") for i in ids), (scenario, ids)
    r = client.post("/v1/recommend", json={"user_id": "u3", "k": 8, "scenario": "c"})
    assert r.status_code == 404 and "unknown scenario 'c'" in r.text


def test_a_request_naming_no_scenario_is_served_in_the_users_latest(
        trained: Trained, client: TestClient) -> None:
    rec = Recommender.load(trained.bundle)
    for user in ("u3", "u4", "u5"):
        latest = rec.catalog.scenarios[rec.steps(user)[-1].scenario]
        r = client.post("/v1/recommend", json={"user_id": user, "k": 5})
        assert r.status_code == 200, r.text
        assert all(i["item_id"].startswith(f"{latest}:") for i in r.json()["items"]), user
        assert all(x.item_id.startswith(f"{latest}:") for x in rec.recommend(user, k=5))


def test_unordered_training_sequences_are_redrawn_each_epoch(tmp_path: Path) -> None:
    """train.shuffle_unordered: on data without an order, each training sequence is a fresh
    permutation of the user's training interactions (the same after a reseed), and never
    on ordered data."""
    from mtrec.train.run import build

    store = two_domains(tmp_path / "s.duckdb")
    config = load_run_config(None, **{**tiny(store, **{"data.protocol": "source"}),
                                      "train.shuffle_unordered": True})
    prepared = prepare_run(config, store_dir=tmp_path)
    _, batcher = build(config, prepared, None)
    assert batcher.reorder is not None and batcher.reorder.all()
    data, users = prepared.interactions, np.arange(N_USERS)
    own = [np.sort(data.item[(data.user == u) & (data.part == TRAIN)]) for u in users]

    def inputs(seed: int) -> list[np.ndarray]:
        batcher.reseed(seed)
        batch = batcher.train_batch(users)
        return [row[row > 0].numpy() for row in batch.items]

    first, again, other = inputs(1), inputs(1), inputs(2)
    # the inputs are all training items but the last one drawn (the begin token is -1)
    assert all(set(f) < set(o) and len(f) == len(o) - 1 for f, o in zip(first, own, strict=True))
    assert all((f == g).all() for f, g in zip(first, again, strict=True))
    assert sum(not np.array_equal(f, g) for f, g in zip(first, other, strict=True)) > N_USERS // 2
    ordered = build(config, replace(prepared, ordered=True), None)[1].reorder
    assert ordered is not None and not ordered.any()
    assert build(_config(store), prepared, None)[1].reorder is None  # off by default


def test_star_linear_matches_a_per_row_reference() -> None:
    """Regression (STAR's export): the layer grouped rows by scenario in a Python loop, which
    ONNX tracing froze to the traced batch's scenarios and sizes; it is now one dense
    product per scenario, the same function for any mix of scenarios."""
    from mtrec.models.layers.star import StarLinear

    torch.manual_seed(0)
    layer = StarLinear(6, 4, 3)
    with torch.no_grad():
        layer.own_weight.uniform_(0.5, 1.5)
        layer.own_bias.normal_()
    x, scenario = torch.randn(2, 5, 6), torch.tensor([[0, 1, 2, 1, 1], [2, 2, 0, 1, 0]])
    want = torch.stack([torch.stack([
        x[b, t] @ (layer.weight * layer.own_weight[s]) + layer.bias + layer.own_bias[s]
        for t, s in enumerate(row.tolist())]) for b, row in enumerate(scenario)])
    torch.testing.assert_close(layer(x, scenario), want)


def test_an_exported_scenario_model_serves_each_scenario(trained: Trained,
                                                         tmp_path: Path) -> None:
    """Regressions: int8 tables of an ID-only model (its empty text table), STAR's user tower
    traced on one scenario mix, and an empty heads graph for a next-item-only layer all
    stopped `mtrec export`; the exported bundle keeps the scoped catalog."""
    from mtrec.export.bundle import ExportConfig, export_bundle

    with fast_torch():
        summary = export_bundle(trained.bundle, tmp_path / "x", ExportConfig(tables="int8"))
    assert summary["graphs"]["heads"] is None
    original, exported = Recommender.load(trained.bundle), Recommender.load(tmp_path / "x")
    for scenario in DOMAINS:
        want = [r.item_id for r in original.recommend("u3", k=5, scenario=scenario)]
        got = [r.item_id for r in exported.recommend("u3", k=5, scenario=scenario)]
        assert all(i.startswith(f"{scenario}:") for i in got)
        assert len(set(got) & set(want)) >= 4, scenario
