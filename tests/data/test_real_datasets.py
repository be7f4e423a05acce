"""Every named dataset imports and its counts match its SOURCE.txt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.data.clean import EventArrays
from mtrec.data.imports import store_path
from mtrec.data.split import TEST, TRAIN, VALID, SplitConfig, split_events
from mtrec.data.store import Store

pytestmark = pytest.mark.real_data

# users / items / interactions stated in each SOURCE.txt
EXPECTED = {
    "amazon-beauty": (22_363, 12_101, 198_502),
    "amazon-scientific": (8_442, 4_385, 59_384),
    "ml-100k": (943, 1_682, 100_000),
    # count.txt declares 93,334 users and 24,624 items; rows: 234,691 buy + 49,891 cart
    # + 45,613 collect + 87,192 validation + 11,500 test
    "jdata": (93_334, 24_624, 428_887),
    # 4,905 users; 43,448 train rows + 4,905 dev + 4,905 test; Office.text has 2,420 items
    "amazon-office": (4_905, 2_420, 53_258),
    # SOURCE.txt: phone 17,709 + electronic 38,706 items; 50,407 + 2,559 + 115,554 + 2,560 rows
    "amazon-phone-electronic": (3_325, 56_415, 171_080),
    # sport 30,796 + cloth 39,008 items; 92,612 + 8,326 + 87,829 + 7,540 rows
    "amazon-sport-cloth": (9_928, 69_804, 196_307),
}


def _stats(name: str, stores: Path) -> dict[str, object]:
    result = CliRunner().invoke(
        app, ["data", "stats", name, "--store-dir", str(stores), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_match_source(name: str, real_stores: Path) -> None:
    stats = _stats(name, real_stores)
    users, items, interactions = EXPECTED[name]
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, interactions)
    assert stats["rows_dropped"] == 0


def test_jdata_behaviours_and_active_users(real_stores: Path) -> None:
    stats = _stats("jdata", real_stores)
    assert stats["events_by_behavior"] == {"cart": 49_891, "collect": 45_613,
                                           "purchase": 234_691 + 87_192 + 11_500}
    assert stats["active_users"] == 92_131  # SOURCE.txt: users with at least one row
    assert stats["active_items"] == 24_624
    assert stats["items_with_text"] == 0


def test_ml100k_ratings_text_and_users(real_stores: Path) -> None:
    _stats("ml-100k", real_stores)
    with Store.open(store_path("ml-100k", real_stores)) as store:
        ratings = store.numpy("events", ["value"])["value"]
        assert set(ratings.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
        toy = store.query("SELECT title, text FROM items WHERE item_id = '1'")[0]
        assert toy == ("Toy Story", "Toy Story (1995). Animation, Children's, Comedy")
        attrs = json.loads(store.query("SELECT attributes FROM users WHERE user_id='1'")[0][0])
        assert attrs == {"age": 24, "gender": "M", "occupation": "technician",
                         "zip_code": "85711"}
        assert store.count("events") == store.query("SELECT count(ts) FROM events")[0][0]


@pytest.mark.parametrize("name", ["ali-ccp-sample", "aliexpress-sample"])
def test_ctr_samples_keep_labels_and_features(name: str, real_stores: Path) -> None:
    stats = _stats(name, real_stores)
    behaviours = stats["events_by_behavior"]
    assert behaviours["view"] > behaviours["click"] >= behaviours["purchase"] > 0
    with Store.open(store_path(name, real_stores)) as store:
        context = store.query("SELECT context FROM events WHERE behavior='view' LIMIT 1")[0][0]
        assert len(json.loads(context)) >= 20  # the feature columns are kept


def test_office_keeps_split_timestamps_and_negatives(real_stores: Path) -> None:
    stats = _stats("amazon-office", real_stores)
    assert stats["events_by_source_split"] == {"train": 43_448, "valid": 4_905, "test": 4_905}
    assert stats["timestamps"]["with_ts"] == 53_258
    with Store.open(store_path("amazon-office", real_stores)) as store:
        negs = store.query("SELECT context FROM events WHERE source_split='test' LIMIT 1")[0][0]
        assert len(json.loads(negs)["neg_items"]) == 99


def test_scientific_source_split_is_leave_one_out(real_stores: Path) -> None:
    """UniSRec's own split must equal our loo protocol on the same sequences."""
    _stats("amazon-scientific", real_stores)
    with Store.open(store_path("amazon-scientific", real_stores)) as store:
        events = EventArrays.from_store(store)
    source, _ = split_events(events, SplitConfig("source"))
    loo, _ = split_events(events, SplitConfig("loo"))
    assert (source == loo).all()
    assert (source == TEST).sum() == (source == VALID).sum() == 8_442
    assert (source == TRAIN).sum() == 59_384 - 2 * 8_442


def test_beauty_loo_holds_out_each_users_last_two(real_stores: Path) -> None:
    _stats("amazon-beauty", real_stores)
    with Store.open(store_path("amazon-beauty", real_stores)) as store:
        events = EventArrays.from_store(store)
    parts, report = split_events(events, SplitConfig("loo"))
    assert report["parts"]["test"]["events"] == 22_363
    assert report["parts"]["valid"]["events"] == 22_363
    # The first user line of user_sequence.txt ends "... B0020YLEYK 7806397051 B002WLWX82".
    first_user = events.user[0]
    mine = parts[events.user == first_user]
    items = events.item_ids[events.item[events.user == first_user]]
    assert list(items[-2:]) == ["7806397051", "B002WLWX82"]
    assert list(mine[-2:]) == [VALID, TEST] and (mine[:-2] == TRAIN).all()


def test_demo_imports_beauty_and_splits_it(tmp_path: Path, real_root: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--store-dir", str(tmp_path), "--json", "--no-train"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["stats"]["users"], out["stats"]["interactions"]) == (22_363, 198_502)
    assert out["split"]["parts"]["test"]["events"] == 22_363
    assert out["import"]["rows_dropped"] == 0


# SOURCE.txt of the SSLRec subsets: users, items with events, events.csv rows by behaviour,
# test.csv pairs (one held-out purchase per test user, no timestamp)
SSLREC = {
    "retailrocket": (2_174, 29_905, {"cart": 12_456, "purchase": 9_551, "view": 75_374}, 2_174),
    "taobao-ub": (31_882, 30_985, {"cart": 140_068, "collect": 49_482, "purchase": 167_862},
                  10_000),
}


@pytest.mark.parametrize("name", sorted(SSLREC))
def test_sslrec_counts_timestamps_and_held_out_purchase(name: str, real_stores: Path) -> None:
    users, items, behaviours, pairs = SSLREC[name]
    n_train = sum(behaviours.values())
    stats = _stats(name, real_stores)
    assert (stats["users"], stats["rows_dropped"]) == (users, 0)
    assert stats["events_by_source_split"] == {"test": pairs, "train": n_train}
    assert stats["items_with_text"] == 0
    with Store.open(store_path(name, real_stores)) as store:
        train = store.query("SELECT count(DISTINCT user_id), count(DISTINCT item_id), count(ts) "
                            "FROM events WHERE source_split = 'train'")[0]
        assert train == (users, items, n_train)  # every training event has a timestamp
        assert dict(store.query("SELECT behavior, count(*) FROM events "
                                "WHERE source_split = 'train' GROUP BY 1")) == behaviours
        test = store.query("SELECT count(*), count(DISTINCT user_id), count(ts), "
                           "count(*) FILTER (behavior = 'purchase') FROM events "
                           "WHERE source_split = 'test'")[0]
        assert test == (pairs, pairs, 0, pairs)  # one purchase per user, none timed
        events = EventArrays.from_store(store)
    parts, _ = split_events(events, SplitConfig("source"))
    assert (parts == TEST).sum() == pairs and (parts == TRAIN).sum() == n_train


@pytest.mark.parametrize("name", ["amazon-phone-electronic", "amazon-sport-cloth"])
def test_cross_domain_pairs_keep_each_domain_apart(name: str, real_stores: Path) -> None:
    """Each domain is a scenario owning its items; no held-out interaction of a domain
    (valid: one training row per test user and domain, test: the shipped one) is in the
    training part of any domain."""
    from mtrec.data.interactions import prepare

    stats = _stats(name, real_stores)
    tests = {"amazon-phone-electronic": 2_559 + 2_560, "amazon-sport-cloth": 8_326 + 7_540}
    assert stats["events_by_source_split"]["test"] == tests[name]
    assert stats["events_by_source_split"]["valid"] == tests[name]
    with Store.open(store_path(name, real_stores)) as store:
        prepared = prepare(store, name, SplitConfig(protocol="source"))
    cat, d = prepared.catalog, prepared.interactions
    assert cat.scoped and len(cat.scenarios) == 3
    prefix = np.array([str(i).split(":")[0] for i in cat.item_ids[1:]])
    assert (np.array(cat.scenarios)[cat.item_scenarios[1:]] == prefix).all()
    train = set(zip(d.user[d.part == TRAIN].tolist(), d.item[d.part == TRAIN].tolist(),
                    strict=True))
    held = d.part != TRAIN
    assert not any(p in train for p in zip(d.user[held].tolist(), d.item[held].tolist(),
                                           strict=True))


def test_amazon_three_scenarios_refuse_shared_ids_then_join_per_source(
        real_stores: Path) -> None:
    """Scientific and Office list 11 of the same ASINs with differently written texts: as
    one namespace they are refused, naming the ids; per source, the three categories join
    as three scenarios, each owning its catalog."""
    from mtrec.config import ConfigError
    from mtrec.run_config import load_run_config
    from mtrec.train.run import prepare_run

    name = "amazon-beauty+amazon-scientific+amazon-office"
    overrides = {"data.dataset": name, "data.protocol": "loo/source/source"}
    with pytest.raises(ConfigError, match=r"11 item ids are in several parts with different "
                                          r"texts.*B00AQ2BZZQ"):
        prepare_run(load_run_config(None, **overrides), store_dir=real_stores)
    merged = prepare_run(load_run_config(None, **overrides, **{"data.item_ids": "per-source"}),
                         store_dir=real_stores)
    cat = merged.catalog
    assert cat.scenarios == ("", "amazon-beauty", "amazon-scientific", "amazon-office")
    assert cat.n_items == EXPECTED["amazon-beauty"][1] + EXPECTED["amazon-scientific"][1] \
        + EXPECTED["amazon-office"][1]
    assert len(cat.user_ids) == sum(EXPECTED[p][0] for p in name.split("+"))
    assert cat.scoped and (cat.item_scenarios[merged.interactions.item]
                           == merged.interactions.scenario).all()
