"""Multi-source datasets: several datasets as the scenarios of one platform
(``data.dataset = "a+c"``), each part owning its items, users and split."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.config import ConfigError
from mtrec.data.interactions import Catalog, Interactions, Prepared
from mtrec.data.multi_source import merge_sources, source_parts
from mtrec.data.split import TEST
from mtrec.recommender import Recommender
from mtrec.report.scenarios import evaluate_scenarios
from mtrec.run_config import load_run_config
from mtrec.train.evaluate import evaluate_bundle
from mtrec.train.run import prepare_run, train_run
from tests.planted import fast_torch, planted, random_ndcg_at_10, tiny, write_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a`` and ``c``: two platforms' data whose item ids coincide (``i00000`` ...) with
    different texts; ``a2``: a copy of ``a`` (the same ids, the same texts); ``two``: a
    dataset with two scenarios of its own."""
    folder = tmp_path_factory.mktemp("multi")
    write_store(planted(n_users=150, n_items=60, seed=1, scenarios=("web",)), folder, "a")
    write_store(planted(n_users=120, n_items=50, seed=3, scenarios=("web",)), folder, "c")
    shutil.copy(folder / "a.duckdb", folder / "a2.duckdb")
    write_store(planted(n_users=40, n_items=20, seed=4), folder, "two")
    return folder


def _prepare(stores: Path, name: str, **extra: Any) -> Prepared:
    return prepare_run(load_run_config(None, **tiny(name, **extra)), store_dir=stores)


def test_per_source_parts_are_scenarios_owning_their_items(stores: Path) -> None:
    a, c = _prepare(stores, "a"), _prepare(stores, "c")
    merged = _prepare(stores, "a+c", **{"data.item_ids": "per-source"})
    cat, d = merged.catalog, merged.interactions
    assert cat.scenarios == ("", "a", "c")
    assert cat.n_items == a.catalog.n_items + c.catalog.n_items
    assert cat.item_ids[1] == f"a:{a.catalog.item_ids[1]}"
    assert cat.item_ids[a.catalog.n_items + 1] == f"c:{c.catalog.item_ids[1]}"
    assert cat.texts[a.catalog.n_items + 1] == c.catalog.texts[1]
    # every interaction's item belongs to the interaction's scenario (a scoped catalog)
    assert cat.scoped and (cat.item_scenarios[d.item] == d.scenario).all()
    # users are per part, parts keep their own split, items map back to the same ids
    assert len(cat.user_ids) == len(a.catalog.user_ids) + len(c.catalog.user_ids)
    assert cat.user_ids[0] == f"a:{a.catalog.user_ids[0]}"
    n_a = len(a.interactions)
    assert (d.part[:n_a] == a.interactions.part).all()
    assert (d.part[n_a:] == c.interactions.part).all()
    assert [s.split(":", 1)[1] for s in cat.item_ids[d.item[n_a:]]] == list(
        c.catalog.item_ids[c.interactions.item])
    assert (d.user == np.repeat(np.arange(len(cat.user_ids)), np.diff(d.offsets))).all()
    assert (d.user[n_a:] == c.interactions.user + len(a.catalog.user_ids)).all()
    assert merged.protocol == "temporal/temporal"


def test_shared_ids_with_different_texts_are_refused_naming_them(stores: Path) -> None:
    with pytest.raises(ConfigError, match=r"50 item ids are in several parts with different "
                                          r"texts.*i00000 \(a: .*; c: .*per-source"):
        _prepare(stores, "a+c")


def test_shared_ids_with_the_same_texts_are_one_item_of_both_scenarios(stores: Path) -> None:
    merged = _prepare(stores, "a+a2")
    a = _prepare(stores, "a")
    assert merged.catalog.n_items == a.catalog.n_items
    assert list(merged.catalog.item_ids) == list(a.catalog.item_ids)
    assert not merged.catalog.scoped  # every item is in both scenarios: ranked in either
    assert set(np.unique(merged.interactions.scenario)) == {1, 2}


def test_bad_multi_source_configs_are_clear_errors(stores: Path) -> None:
    with pytest.raises(ConfigError, match="names 3 protocols for 2 parts"):
        _prepare(stores, "a+c", **{"data.protocol": "temporal/loo/loo",
                                   "data.item_ids": "per-source"})
    with pytest.raises(ConfigError, match=r"two has scenarios of its own \(home, search\)"):
        _prepare(stores, "a+two", **{"data.item_ids": "per-source"})
    with pytest.raises(ConfigError, match="a named twice"):
        _prepare(stores, "a+c+a")
    with pytest.raises(ValueError, match=r"data\.item_ids must be 'shared' or 'per-source'"):
        load_run_config(None, **{"data.item_ids": "prefixed"})
    with pytest.raises(ConfigError, match="unknown scenario 'web'"):
        _prepare(stores, "a+c", **{"data.item_ids": "per-source", "data.scenarios": ["web"]})


def test_one_protocol_per_part_and_training_on_some_scenarios(stores: Path) -> None:
    merged = _prepare(stores, "a+c", **{"data.protocol": "temporal/loo",
                                        "data.item_ids": "per-source"})
    assert merged.protocol == "temporal/loo"
    c_loo = _prepare(stores, "c", **{"data.protocol": "loo"})
    n_a = len(_prepare(stores, "a").interactions)
    assert (merged.interactions.part[n_a:] == c_loo.interactions.part).all()
    only_c = _prepare(stores, "a+c", **{"data.item_ids": "per-source",
                                        "data.scenarios": ["c"]})
    assert only_c.catalog.n_items == merged.catalog.n_items  # the catalog stays whole
    assert set(np.unique(only_c.interactions.scenario)) == {2}
    assert len(only_c.interactions) == len(_prepare(stores, "c").interactions)


def test_a_multi_source_model_trains_and_is_evaluated_per_scenario(stores: Path,
                                                                    tmp_path: Path) -> None:
    config = load_run_config(None, **tiny("a+c", **{"data.item_ids": "per-source",
                                                    "train.epochs": 6}))
    with fast_torch():
        summary = train_run(config, tmp_path / "b", store_dir=stores)
        got = evaluate_scenarios(tmp_path / "b", summary["test"])
        again = evaluate_bundle(tmp_path / "b", "test", store_dir=stores)
    assert set(got.by_scenario) == {"a", "c"}
    assert got.agrees  # the per-scenario loop recomputes the saved test metrics
    assert again["metrics"]["next_item/ndcg@10"] == pytest.approx(
        summary["test"]["next_item/ndcg@10"], rel=1e-4)
    for name in ("a", "c"):  # each scenario ranks its own items, better than chance
        alone = _prepare(stores, name)
        chance = random_ndcg_at_10(alone, TEST)
        assert got.by_scenario[name]["next_item/ndcg@10"] > 2 * chance
    rec = Recommender.load(tmp_path / "b")  # served: the request's scenario picks the items
    for name in ("a", "c"):
        top = rec.recommend("a:u00001", k=5, scenario=name)
        assert top and all(r.item_id.startswith(f"{name}:") for r in top)
        # no scenario named: the user's own part (its latest interaction's scenario)
        own = rec.recommend(f"{name}:u00002", k=5)
        assert own and all(r.item_id.startswith(f"{name}:") for r in own)


def test_the_cli_refuses_shared_ids_with_different_texts(stores: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--dataset", "a+c", "--store-dir", str(stores),
                                      "--out", str(tmp_path / "b")])
    assert result.exit_code != 0
    assert "item ids are in several parts with different texts" in result.output
    assert "i00000" in result.output and not (tmp_path / "b").exists()


def _part(name: str, ids: list[str], texts: list[str], histories: list[list[int]],
          ordered: bool = True) -> Prepared:
    """A hand-made one-scenario dataset: user ``u`` has the item codes ``histories[u]``,
    the last one held out as test."""
    items = [c for h in histories for c in h]
    part = [p for h in histories for p in [0] * (len(h) - 1) + [TEST]]
    n = len(items)
    catalog = Catalog(np.array(["", *ids], dtype=object), ["", *texts],
                      np.array([f"u{u}" for u in range(len(histories))], dtype=object),
                      ("", name))
    data = Interactions(
        user=np.repeat(np.arange(len(histories)), [len(h) for h in histories]),
        item=np.asarray(items, np.int64), behaviors=np.ones(n, np.int64),
        scenario=np.ones(n, np.int64), rating=np.full(n, np.nan, np.float32),
        ts=np.full(n, -1, np.int64), part=np.asarray(part, np.int8),
        offsets=np.concatenate([[0], np.cumsum([len(h) for h in histories])]).astype(np.int64))
    return Prepared(name, "loo", catalog, data, {}, ordered)


def test_partly_shared_ids_join_where_texts_agree_or_one_is_empty() -> None:
    x = _part("x", ["s1", "s2", "x3"], ["one", "", "x only"], [[1, 2, 3], [3, 1]])
    y = _part("y", ["y1", "s2", "s1"], ["y only", "two", "one"], [[3, 1], [2, 3, 1]],
              ordered=False)
    merged = merge_sources([x, y])
    cat, d = merged.catalog, merged.interactions
    assert list(cat.item_ids) == ["", "s1", "s2", "x3", "y1"]
    assert cat.texts == ["", "one", "two", "x only", "y only"]  # y's text fills x's blank
    # the shared items belong to both scenarios (0), the others to their own part
    assert cat.item_scenarios.tolist() == [0, 0, 0, 1, 2]
    assert cat.item_ids[d.item].tolist() == ["s1", "s2", "x3", "x3", "s1",
                                             "s1", "y1", "s2", "s1", "y1"]
    assert (d.user == np.repeat(np.arange(4), np.diff(d.offsets))).all()
    assert d.scenario.tolist() == [1] * 5 + [2] * 5
    # one part without an order: only its users are reshuffled; no rolling evaluation
    assert merged.unordered_users().tolist() == [False, False, True, True]
    assert merged.protocol == "loo/loo" and not merged.causal_parts
    assert replace(merged, ordered=True, ordered_users=None).causal_parts


def test_a_store_path_holding_a_plus_is_one_dataset(stores: Path, tmp_path: Path) -> None:
    folder = tmp_path / "x+y"
    folder.mkdir()
    shutil.copy(stores / "a.duckdb", folder / "a.duckdb")
    assert source_parts(str(folder / "a.duckdb")) == ()
    prepared = prepare_run(load_run_config(None, **tiny(folder / "a.duckdb")))
    assert prepared.catalog.n_items == _prepare(stores, "a").catalog.n_items


def test_a_store_command_on_a_multi_source_name_names_its_parts(stores: Path) -> None:
    result = CliRunner().invoke(app, ["data", "stats", "a+c", "--store-dir", str(stores)])
    assert result.exit_code != 0
    assert "joins several datasets" in result.output and "(a, c)" in result.output
