"""The poisoning benchmark's measures: the target's hit rate and the promotion summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.poisoning import RUNS, run_config, summary, target_hit_rate
from mtrec.data.split import TEST
from mtrec.run_config import load_run_config
from mtrec.train.run import build, prepare_run
from tests.planted import fast_torch, planted, tiny, write_store


def test_target_hit_rate_counts_users_without_the_target_and_ranks_fully(
        tmp_path: Path) -> None:
    store = write_store(planted(n_users=60, n_items=30), tmp_path)
    config = load_run_config(None, **tiny(store))
    with fast_torch():
        torch.manual_seed(0)
        prepared = prepare_run(config, store_dir=tmp_path)
        model, batcher = build(config, prepared, None)
        target = int(np.bincount(prepared.interactions.item).argmax())
        found = target_hit_rate(model, batcher, target, ks=(1, 10, 30), autocast=False)
    users = batcher.eval_users(TEST)
    _, history = batcher.eval_batch(users, TEST)
    assert found["target_users"] == sum(target not in h for h in history) > 0
    assert found["target_hr@1"] <= found["target_hr@10"] <= found["target_hr@30"] == 1.0
    assert 0 <= found["target_mean_rank"] < 30


def test_summary_is_the_promotion_and_what_each_defence_keeps() -> None:
    runs = {"clean": {"target_hr@10": 0.01, "ndcg@10": 0.050},
            "random": {"target_hr@10": 0.09, "ndcg@10": 0.049},
            "random-filter": {"target_hr@10": 0.02, "ndcg@10": 0.0495}}
    got = summary(runs)
    assert set(got) == {"random"}
    assert np.isclose(got["random"]["promotion_hr@10"], 0.08)
    assert np.isclose(got["random"]["filter"]["promotion_kept"], 0.125)
    assert np.isclose(got["random"]["filter"]["ndcg@10_vs_undefended"], 0.0495 / 0.049 - 1)
    assert "adversarial" not in got["random"]


def test_every_run_has_a_config() -> None:
    for name in RUNS:
        robust = run_config(name).train.robust
        assert (robust.user_filter == "cohort") == name.endswith("-filter")
        assert robust.adversarial == name.endswith("-adversarial")


def test_markdown_table_has_a_row_per_recorded_run() -> None:
    from benchmarks.poisoning import markdown_table

    run = {"fake_users": 224, "target_hr@10": 0.05, "target_hr@50": 0.1, "ndcg@10": 0.05,
           "recall@10": 0.09, "epochs_run": 10, "best_epoch": 7, "train_seconds": 600.0}
    record = {"runs": {"clean": {**run, "fake_users": 0, "target_hr@10": 0.0},
                       "random-filter": {**run, "filter": {"flagged_fake": 220}}}}
    lines = markdown_table(record).splitlines()
    assert len(lines) == 4 and lines[2].startswith("| clean | 0 |")
    assert lines[3].startswith("| random-filter | 4 | 0.0500 | 0.1000 | +0.0500 |")


def test_a_finished_bundle_is_reused_with_its_budget_resolved(tmp_path: Path) -> None:
    """Regression (review): bundles save the budget resolved from the data, the benchmark's
    config keeps 0 ("from the data"), so no bundle was ever reused (hours each run)."""
    import json
    from dataclasses import replace

    from benchmarks.poisoning import _trained
    from mtrec.config import to_dict
    from mtrec.train.run import budgeted

    store = write_store(planted(n_users=40, n_items=20), tmp_path)
    config = load_run_config(None, **{"data.dataset": str(store), "data.protocol": "loo"})
    prepared = prepare_run(config, store_dir=tmp_path)
    out = tmp_path / "bundle"
    out.mkdir()
    saved = budgeted(config, prepared)[0]
    (out / "config.json").write_text(json.dumps({"run": to_dict(saved)}))
    (out / "metrics.json").write_text(json.dumps({"test": {"next_item/ndcg@10": 0.1}}))
    (out / "catalog.json").write_text(json.dumps({"user_ids": list(prepared.catalog.user_ids)}))
    assert config.train.epochs == 0 and saved.train.epochs > 0
    assert _trained(out, config, prepared) == {"test": {"next_item/ndcg@10": 0.1}}
    other = replace(config, train=replace(config.train, lr=1e-4))
    assert _trained(out, other, prepared) is None  # another config: trained again
