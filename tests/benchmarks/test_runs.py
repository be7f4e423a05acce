"""Resumable comparisons (benchmarks/runs.py): a cached system is reused only when it ran on
the same split and configuration; otherwise it is rerun and the log says what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.render import _epochs, plot_curves
from benchmarks.runs import cached_run, split_fingerprint
from mtrec.data.interactions import prepare
from mtrec.data.split import SplitConfig
from mtrec.data.store import Store
from tests.planted import planted, write_store


class Counter:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.calls, self.rows = 0, rows

    def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        return self.rows


ROW = {"system": "mtrec", "model": "m", "metrics": {"ndcg@10": 0.05}}


def test_a_matching_fingerprint_reuses_and_a_changed_one_reruns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = Counter([ROW])
    fp = {"dataset": "d", "split": "abc", "epochs": 300}
    assert cached_run("cmp", "mtrec m", fp, run, root=tmp_path) == [ROW]
    assert cached_run("cmp", "mtrec m", fp, run, root=tmp_path) == [ROW]
    assert run.calls == 1 and "reusing the cached result" in capsys.readouterr().err
    # each rerun is compared with the run before it (the one cached)
    for changed, said in (({**fp, "split": "abd"}, "split"),
                          ({**fp, "epochs": 4}, "epochs, split")):
        cached_run("cmp", "mtrec m", changed, run, root=tmp_path)
        assert f"ran on a different {said}: rerunning" in capsys.readouterr().err
    assert run.calls == 3
    saved = json.loads((tmp_path / "cmp" / "mtrec-m.json").read_text())
    assert saved["fingerprint"] == {**fp, "epochs": 4}  # the latest run is what is kept


def test_a_failed_system_is_never_cached(tmp_path: Path) -> None:
    run = Counter([{"system": "RecBole", "model": "X", "error": "boom"}])
    for _ in range(2):
        cached_run("cmp", "RecBole X", {"split": "a"}, run, root=tmp_path)
    assert run.calls == 2 and not (tmp_path / "cmp").exists()


def test_the_split_fingerprint_sees_a_moved_interaction(tmp_path: Path) -> None:
    data = planted(n_users=40, n_items=20)
    with Store.open(write_store(data, tmp_path)) as store:
        prepared = prepare(store, "planted", SplitConfig("loo"))
    before = split_fingerprint(prepared)
    assert split_fingerprint(prepared) == before  # deterministic
    prepared.interactions.part[0] = (prepared.interactions.part[0] + 1) % 3
    assert split_fingerprint(prepared) != before


def test_tables_and_plots_say_which_runs_a_cap_stopped(tmp_path: Path) -> None:
    assert _epochs({"epochs": 40, "best_epoch": 31}) == "40 (31)"
    assert "wall-time cap" in _epochs({"epochs": 40, "best_epoch": 40, "capped": True})
    assert "still improving" in _epochs({"epochs": 20, "best_epoch": 20,
                                         "still_improving": True})
    record = {"dataset": "d", "rows": [
        {**ROW, "curve": [[1, 10.0, 0.01], [2, 20.0, 0.02]]},
        {"system": "RecBole", "model": "SASRec", "capped": True,
         "curve": [[1, 30.0, 0.005], [2, 7300.0, 0.03]]},
        {"system": "mtrec", "model": "ItemKNN"}]}  # no curve: not drawn
    path = tmp_path / "curves.png"
    assert plot_curves(record, path) and path.read_bytes()[:4] == b"\x89PNG"
    assert not plot_curves({"dataset": "d", "rows": [ROW]}, tmp_path / "none.png")


def test_cached_only_runs_nothing_and_marks_the_unfinished_pending(tmp_path: Path) -> None:
    """``python -m benchmarks NAME --cached-only``: finished systems from the cache, the
    others (missing, or cached on another fingerprint) as pending rows the tables skip and
    name."""
    from benchmarks.render import metrics_table, pending_line, render_markdown

    run = Counter([ROW])
    cached_run("cmp", "mtrec m", {"split": "a"}, run, root=tmp_path)
    rows = [*cached_run("cmp", "mtrec m", {"split": "a"}, run, root=tmp_path, cached_only=True),
            *cached_run("cmp", "mtrec m", {"split": "b"}, run, root=tmp_path, cached_only=True),
            *cached_run("cmp", "RecBole SASRec", {"split": "a"}, run, root=tmp_path,
                        cached_only=True)]
    assert run.calls == 1
    assert rows[0] == ROW
    assert rows[1]["pending"] == "the cached result ran on a different split"
    assert rows[2] == {"system": "RecBole SASRec", "model": "", "kind": "pending",
                       "pending": "no cached result"}
    assert len(metrics_table(rows)) == 3  # header, rule, the one finished row
    assert pending_line(rows).startswith("Not finished yet, so not in the table: mtrec m, "
                                         "RecBole SASRec")
    record = {"comparison": "cmp", "dataset": "d", "protocol": "loo", "command": "c",
              "wall_seconds": 1.0, "systems_seconds": 600.0, "rows": rows}
    text = render_markdown(record)
    assert "## Not finished yet" in text and "(10.0 min of system runs on" in text


def test_a_fingerprint_with_tuples_matches_its_stored_form(tmp_path: Path) -> None:
    """Regression: the baselines' grid of (n, d) tuples came back from JSON as lists, so the
    cached baselines never matched and were recomputed on every run."""
    run = Counter([ROW])
    fp = {"split": "a", "grid": [(50, 1.0), (200, 0.5)]}
    cached_run("cmp", "baselines", fp, run, root=tmp_path)
    cached_run("cmp", "baselines", fp, run, root=tmp_path)
    assert run.calls == 1


def test_inert_new_settings_keep_cached_runs() -> None:
    """Regression: settings added to the run config (train.init, model.text.lr,
    model.text.tune_items) changed every cached mtrec run's fingerprint, so the queue reran
    runs whose training they do not change; they stay out at their inert values only."""
    from benchmarks.runs import config_fingerprint
    from mtrec.config import to_dict
    from mtrec.run_config import load_run_config

    plain = config_fingerprint(to_dict(load_run_config(None)))
    assert "init" not in plain["train"] and "lr" not in plain["model"]["text"]
    assert "tune_items" not in plain["model"]["text"] and "seed" in plain["train"]
    started = config_fingerprint(to_dict(load_run_config(None, **{"train.init": "pre"})))
    assert started["train"]["init"] == "pre"
    lora = config_fingerprint(to_dict(load_run_config(None, **{"model.text.mode": "lora"})))
    assert lora["model"]["text"]["lr"] == 1e-4 and lora["model"]["text"]["tune_items"] == 64
