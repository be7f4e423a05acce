"""One contract for every model variant: train on planted synthetic data, learn the answer.

Variants cover every multi-task layer (shared-bottom, MMoE, PLE), both text adapters (MLP,
MoE over a tiny random BERT), text off (ID only) and both next-item losses (full and
sampled softmax).  Each variant trains once (module-scoped) and must: rank the planted
favourite category clearly above a random ranker; learn the planted click/purchase items
(AUC) and ratings (below the RMSE of the training mean); write a complete bundle; and serve
it through :class:`Recommender` (recommend, score, objective).  See ``tests/planted.py``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtrec.data.interactions import Prepared
from mtrec.data.split import TEST, TRAIN
from mtrec.data.synthetic import SyntheticData
from mtrec.eval.protocols import main_metric, mean_best_share
from mtrec.recommender import Recommender
from mtrec.run_config import RunConfig, load_run_config
from mtrec.tasks.base import TaskDims, TaskOptions
from mtrec.tasks.engagement import EngagementTask
from mtrec.train.run import prepare_run, train_run
from tests.planted import CLICKABLE, fast_torch, planted, random_ndcg_at_10, tiny, write_store

pytestmark = pytest.mark.usefixtures("fast")


@pytest.fixture(scope="module")
def fast() -> Iterator[None]:
    """One torch thread (the machine is shared) and no fsync in checkpoints."""
    with fast_torch():
        yield


TASKS = ["next_item", "click", "purchase", "rating"]
BUNDLE_FILES = ("config.json", "model.safetensors", "item_embeddings.safetensors",
                "catalog.json", "interactions.safetensors", "metrics.json", "history.csv")


@dataclass(frozen=True)
class Variant:
    mtl: str
    text: str  # "off", or the adapter over the tiny BERT: "mlp" / "moe"
    loss: str  # next_item loss: "full" / "sampled"
    engagement: bool = False

    @property
    def id(self) -> str:
        text = "id-only" if self.text == "off" else f"text-{self.text}"
        return f"{self.mtl}-{text}-{self.loss}" + ("-engagement" if self.engagement else "")


VARIANTS = [
    Variant("shared-bottom", "off", "full"),
    Variant("mmoe", "mlp", "sampled"),
    Variant("ple", "moe", "full"),
    Variant("mmoe", "off", "sampled", engagement=True),
    Variant("ple", "mlp", "sampled"),
    Variant("shared-bottom", "moe", "full"),
    Variant("star", "off", "sampled"),
    Variant("pepnet", "mlp", "full"),
]


@dataclass(frozen=True)
class Trained:
    variant: Variant
    data: SyntheticData
    prepared: Prepared
    result: dict[str, Any]
    out: Path


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticData, Path]:
    data = planted()
    return data, write_store(data, tmp_path_factory.mktemp("stores"))


def _config(variant: Variant, store: Path, tiny_bert: Path) -> RunConfig:
    tasks = TASKS + (["engagement"] if variant.engagement else [])
    extra: dict[str, Any] = {
        "model.tasks": tasks, "model.mtl.kind": variant.mtl,
        "model.task_options.next_item_loss": variant.loss,
        "model.task_options.negatives": 32,
        # The synthetic timeline is ~2 weeks: a 1-day window leaves labels to learn from.
        "model.task_options.horizon_days": 1, "model.task_options.return_days": 1,
    }
    if variant.text != "off":
        extra.update({"model.item.use_text": True, "model.item.adapter": variant.text,
                      "model.text.model": str(tiny_bert), "model.text.bf16": False})
    return load_run_config(None, **tiny(store, **extra))


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.id)
def trained(request: pytest.FixtureRequest, planted_store: tuple[SyntheticData, Path],
            tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
            fast: None) -> Trained:
    variant: Variant = request.param
    data, store = planted_store
    config = _config(variant, store, tiny_model_dir)
    home = tmp_path_factory.mktemp(variant.id)
    out = home / "bundle"
    result = train_run(config, out, store_dir=home)
    return Trained(variant, data, prepare_run(config, store_dir=home), result, out)


def _mean_rmse(prepared: Prepared, part: int) -> float:
    """RMSE of always predicting the training mean rating."""
    d = prepared.interactions
    rated = ~np.isnan(d.rating)
    mean = d.rating[rated & (d.part == TRAIN)].mean()
    return float(np.sqrt(np.mean((d.rating[rated & (d.part == part)] - mean) ** 2)))


def test_learns_the_planted_answers(trained: Trained) -> None:
    test = trained.result["test"]
    chance = random_ndcg_at_10(trained.prepared, TEST)
    assert 0.03 < chance < 0.1  # ~4.5 / (80 items - history)
    ndcg = test["next_item/ndcg@10"]
    assert ndcg > 2.5 * chance and ndcg > chance + 0.08, (ndcg, chance)
    assert test["click/auc"] > 0.8
    assert test["purchase/auc"] > 0.75
    baseline = _mean_rmse(trained.prepared, TEST)
    assert baseline > 1.2  # ratings 1-2 vs 4-5 by item category
    assert test["rating/rmse"] < 0.5 * baseline, (test["rating/rmse"], baseline)


def test_every_test_interaction_is_scored(trained: Trained) -> None:
    d = trained.prepared.interactions
    test, in_test = trained.result["test"], d.part == TEST
    assert test["next_item/users"] == len(np.unique(d.user[in_test]))
    assert test["click/examples"] == test["purchase/examples"] == in_test.sum()
    assert test["rating/examples"] == (in_test & ~np.isnan(d.rating)).sum()
    if not trained.variant.engagement:
        assert not any(k.startswith("engagement/") for k in test)
        return
    labels = EngagementTask(TaskOptions(horizon_days=1, return_days=1), TaskDims(1, 1, 1)).labels(d)
    train, held = labels.mask & (d.part == TRAIN), labels.mask & in_test
    assert test["engagement/examples"] == held.sum() > 0
    mean = labels.values[train, 0].mean()
    baseline = float(np.sqrt(np.mean((labels.values[held, 0] - mean) ** 2)))
    assert test["engagement/log_count_rmse"] < 1.25 * baseline
    for key in ("log_count_mae", "return_auc", "return_logloss"):
        assert math.isfinite(test[f"engagement/{key}"])


def test_run_summary_and_bundle(trained: Trained) -> None:
    result, out = trained.result, trained.out
    for name in BUNDLE_FILES:
        assert (out / name).is_file(), name
    assert (out / "tensorboard").is_dir()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"] == pytest.approx(result["test"])
    assert result["selection_metric"] == "mean"  # several tasks: mean share of each best
    assert 1 <= result["best_epoch"] <= result["epochs_run"] == 8
    with (out / "history.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    tasks = tuple(result["tasks"])
    mains = [{m: float(r[f"valid/{m}"]) for m in map(main_metric, tasks)} for r in rows]
    # Each logged mean is that epoch's share of the bests up to then; the reported best is
    # re-scored against the bests of the whole run.
    for epoch, row in enumerate(rows):
        assert float(row["valid/mean"]) == pytest.approx(
            mean_best_share(mains[epoch], mains[:epoch + 1], tasks))
    best = mean_best_share(mains[result["best_epoch"] - 1], mains, tasks)
    assert result["best_valid"] == pytest.approx(best)
    assert float(rows[0]["valid/mean"]) == 1.0  # the first epoch is every task's best so far
    meta = json.loads((out / "config.json").read_text())
    assert meta["run"]["model"]["mtl"]["kind"] == trained.variant.mtl
    assert meta["n_items"] == trained.prepared.catalog.n_items == 80
    assert (meta["text_dim"] > 0) == (trained.variant.text != "off")


def _user_items(data: SyntheticData, user: str) -> set[str]:
    events = data.result.events
    users = np.array(events.column("user_id").to_pylist())
    return set(np.array(events.column("item_id").to_pylist())[users == user].tolist())


def test_recommend_unseen_items(trained: Trained) -> None:
    rec = Recommender.load(trained.out)
    assert rec.tasks == tuple(trained.result["tasks"])
    for user in trained.data.user_ids[:5]:
        items = rec.recommend(user, k=5)
        ids = [r.item_id for r in items]
        assert len(ids) == 5 == len(set(ids))
        assert not set(ids) & _user_items(trained.data, user)
        scores = [r.score for r in items]
        assert scores == sorted(scores, reverse=True)
        # The default objective is next_item: the score is its catalog probability.
        assert all(r.score == pytest.approx(r.scores["next_item"]) for r in items)


def test_recommendations_follow_the_planted_taste(trained: Trained) -> None:
    rec = Recommender.load(trained.out)
    data = trained.data
    category = dict(zip(data.item_ids, data.item_category.tolist(), strict=True))
    shares = [np.mean([category[r.item_id] == data.user_taste[u]
                       for r in rec.recommend(user, k=5)])
              for u, user in enumerate(data.user_ids[:40])]
    assert np.mean(shares) > 0.7  # random: 1 in 4 categories


def test_score_gives_every_task(trained: Trained) -> None:
    rec = Recommender.load(trained.out)
    user = trained.data.user_ids[0]
    items = list(trained.data.item_ids[:7])
    scores = rec.score(user, items)
    assert set(scores) == set(trained.result["tasks"])
    for task, values in scores.items():
        assert len(values) == len(items), task
        assert all(math.isfinite(v) for v in values), task
    for task in ("click", "purchase", "next_item"):
        assert all(0.0 <= v <= 1.0 for v in scores[task]), task
    everything = rec.score(user, list(trained.data.item_ids))["next_item"]
    assert sum(everything) == pytest.approx(1.0, abs=1e-4)  # a softmax over the catalog
    assert scores["next_item"] == pytest.approx(everything[:7])
    # Planted: clickable categories score higher on click than the others.
    category = trained.data.item_category
    click = np.array(rec.score(user, list(trained.data.item_ids))["click"])
    assert click[np.isin(category, CLICKABLE)].mean() > click[~np.isin(category,
                                                                        CLICKABLE)].mean()


def test_objective_weighs_the_tasks(trained: Trained) -> None:
    rec = Recommender.load(trained.out)
    data = trained.data
    user = data.user_ids[1]
    weights = {"next_item": 1.0, "click": 0.5, "rating": 0.25}
    mixed = rec.recommend(user, k=5, objective=weights)
    for r in mixed:
        assert r.score == pytest.approx(sum(w * r.scores[t] for t, w in weights.items()))
    # Ranking by rating alone returns the five highest predicted ratings among unseen items.
    by_rating = rec.recommend(user, k=5, objective={"rating": 1.0})
    unseen = [i for i in data.item_ids if i not in _user_items(data, user)]
    predicted = dict(zip(unseen, rec.score(user, unseen)["rating"], strict=True))
    top = sorted(predicted.values(), reverse=True)[:5]
    assert [r.score for r in by_rating] == pytest.approx(top, abs=1e-5)
    assert [predicted[r.item_id] for r in by_rating] == pytest.approx(top, abs=1e-5)
    # Planted: ratings are high for even categories, so that objective picks those.
    category = dict(zip(data.item_ids, data.item_category.tolist(), strict=True))
    assert all(category[r.item_id] % 2 == 0 for r in by_rating)
    with pytest.raises(ValueError, match="bogus"):
        rec.recommend(user, k=5, objective={"bogus": 1.0})


def test_loo_next_item_targets_are_unseen(planted_store: tuple[SyntheticData, Path],
                                          tmp_path: Path) -> None:
    """Regression (loo split funnels): loo used to hold out the last *event*, so the last
    funnel's view stayed in training while its click/cart became the test interaction and
    most targets were already in the user's history (masked, scored as misses)."""
    _, store = planted_store
    prepared = prepare_run(load_run_config(None, **tiny(store, **{"data.protocol": "loo"})),
                           store_dir=tmp_path)
    d = prepared.interactions
    seen_targets = 0
    for u in range(len(d.offsets) - 1):
        rows = np.arange(d.offsets[u], d.offsets[u + 1])
        test = rows[d.part[rows] == TEST]
        seen_targets += bool(len(test)) and d.item[test[0]] in d.item[rows[d.part[rows] < TEST]]
    share = seen_targets / (len(d.offsets) - 1)
    assert share < 0.05, f"{share:.0%} of the loo test targets are in the user's history"
