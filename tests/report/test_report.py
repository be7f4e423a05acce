"""``mtrec report`` on a tiny bundle trained on planted data: sections, tables, cold/warm
arithmetic, per-scenario metrics, comparisons (published and failed rows), escaping, errors."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mtrec.cli import app
from mtrec.data.split import TEST
from mtrec.eval.metrics import ranking_metrics
from mtrec.eval.protocols import COLD_MAX, item_train_counts
from mtrec.report import ReportError, build_report, write_report
from mtrec.report.data import cold_warm, read_bundle, read_comparisons, warm_value
from mtrec.report.doc import Table, Text, fmt
from mtrec.report.markdown import md_escape
from mtrec.report.scenarios import collect, evaluate_scenarios
from mtrec.run_config import load_run_config
from mtrec.train.run import train_run
from tests.planted import fast_torch, planted, tiny, write_store

runner = CliRunner()
EVIL = "<script>alert('x')</script> & co $x_1$"
TASKS = ["next_item", "click", "rating"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A next-item + click + rating bundle on planted data with two scenarios."""
    tmp = tmp_path_factory.mktemp("report")
    store = write_store(planted(n_users=90, n_items=160), tmp)
    config = load_run_config(None, **tiny(store, **{
        "model.tasks": TASKS, "train.epochs": 2, "model.user.layers": 1,
        "model.user.max_len": 12, "model.item.dim": 32}))
    with fast_torch():
        train_run(config, tmp / "bundle", store_dir=tmp)
        yield tmp / "bundle"


@pytest.fixture(scope="module")
def results(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """compare_*.json fixtures: one for the bundle's dataset, one for another, one broken."""
    folder = tmp_path_factory.mktemp("results")
    summary = json.loads((bundle / "metrics.json").read_text())
    rows: list[dict[str, Any]] = [
        {"system": "popularity", "model": "MostPop", "kind": "baseline",
         "metrics": {"ndcg@10": 0.01, "recall@10": 0.02, "click/auc": 0.5},
         "train_seconds": 0.1, "peak_rss_gib": 0.2},
        {"system": EVIL, "model": "SASRec", "kind": "peer",
         "metrics": {"ndcg@10": 0.03, "rating/rmse": 1.3}, "note": "a <b>note</b>",
         "curve": [[1, 30.0, 0.01], [2, 61.0, 0.03]], "capped": True},
        {"system": "RecBole BERT4Rec", "model": "", "kind": "pending",
         "pending": "no cached result"},
        {"system": "published", "model": "UniSRec", "kind": "published",
         "metrics": {"ndcg@10": 0.0456}, "protocol": "leave-one-out, 100 negatives",
         "source": "Hou et al., KDD 2022"},
        {"system": "torch-rechub", "model": "MMoE", "kind": "peer", "metrics": {},
         "error": "exit 137 <killed> & out of memory"},
    ]
    comparison = {"comparison": "planted", "dataset": summary["dataset"],
                  "protocol": summary["protocol"], "command": "python -m benchmarks planted",
                  "machine": {"cpu": "test cpu", "cores": 2}, "rows": rows}
    (folder / "compare_planted.json").write_text(json.dumps(comparison))
    other = {**comparison, "dataset": "amazon-beauty", "comparison": "beauty"}
    (folder / "compare_beauty.json").write_text(json.dumps(other))
    (folder / "compare_broken.json").write_text("{not json")
    return folder


@pytest.fixture(scope="module")
def written(bundle: Path, results: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[str, str, Path]:
    out = tmp_path_factory.mktemp("out")
    files = write_report(bundle, out, results)
    assert files.html == out / "report.html" and files.markdown == out / "report.md"
    assert files.figures and all(f.is_file() and f.suffix == ".svg" for f in files.figures)
    return files.html.read_text(), files.markdown.read_text(), out


def _table_row(md: str, first: str, second: str = "") -> list[str]:
    """Cells of the first Markdown table row starting with ``first`` (and ``second``)."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and cells[0] == first and (not second or cells[1] == second):
            return cells
    raise AssertionError(f"no table row {first!r} {second!r}")


def test_every_section_is_there(written: tuple[str, str, Path]) -> None:
    html, md, out = written
    for key in ("run", "training", "metrics", "cold", "scenarios", "compare"):
        assert f'<section id="{key}">' in html
    for title in ("Run", "Training curves", "Test metrics", "Cold vs warm items (next item)",
                  "Per scenario", "Against baselines, peers and published numbers"):
        assert f"## {title}" in md
    for task in TASKS:  # a training-curve figure per task, linked from the summary
        assert (out / "figures" / f"training_{task.replace('_', '-')}.svg").is_file()
        assert f"(figures/training_{task.replace('_', '-')}.svg)" in md
    assert html.count("data:image/svg+xml;base64,") == len(list((out / "figures").glob("*")))


def test_header_names_the_run(bundle: Path, written: tuple[str, str, Path]) -> None:
    _, md, _ = written
    summary = json.loads((bundle / "metrics.json").read_text())
    assert _table_row(md, "tasks")[1] == md_escape(", ".join(TASKS))
    assert _table_row(md, "best epoch")[1] == str(summary["best_epoch"])
    assert _table_row(md, "epochs")[1].startswith(f"{summary['epochs_run']} of 2")
    assert f"{summary['peak_rss_gib']:.2f} GiB" in _table_row(md, "peak memory")[1]
    assert f"{summary['train_seconds']:.1f} s" in _table_row(md, "train time")[1]


def test_test_metrics_table_has_every_value(bundle: Path, written: tuple[str, str, Path]
                                            ) -> None:
    html, md, _ = written
    summary = json.loads((bundle / "metrics.json").read_text())
    for key, value in summary["test"].items():
        if "/cold_" in key:
            continue
        task, metric = key.split("/", 1)
        row = _table_row(md, md_escape(task), md_escape(metric))
        assert row[3] == fmt(value, key), key
        assert row[2] == fmt(summary["valid"].get(key), key), key
    assert "click/auc" in summary["test"] and "rating/rmse" in summary["test"]
    assert f'<td class="r">{fmt(summary["test"]["rating/rmse"])}</td>' in html


def test_warm_is_the_mean_over_warm_targets(bundle: Path, written: tuple[str, str, Path]
                                            ) -> None:
    """Derived warm values equal the metrics recomputed over the warm targets only."""
    _, md, _ = written
    test = read_bundle(bundle).metrics("test")
    rows, share, users = cold_warm(test)
    assert 0.0 < share < 1.0 and users == test["next_item/users"]
    by_name = {r.metric: r for r in rows}
    ndcg = by_name["ndcg@10"]
    all_, cold = test["next_item/ndcg@10"], test["next_item/cold_ndcg@10"]
    assert ndcg.warm == pytest.approx((all_ - share * cold) / (1 - share), abs=1e-12)
    assert _table_row(md, "ndcg@10")[1:] == [fmt(all_), fmt(cold), fmt(ndcg.warm)]

    from mtrec.models.batches import SequenceBatcher
    from mtrec.recommender import Recommender

    rec = Recommender.load(bundle)
    data = rec.batcher.data
    labels = {n: t.labels(data) for n, t in rec.model.pointwise_tasks().items()}
    batcher = SequenceBatcher(data, rec.model.user_tower.config.max_len, labels)
    got = collect(rec.model, batcher, TEST, rolling=True)
    ranks, targets = np.concatenate(got.ranks), np.concatenate(got.targets)
    is_cold = item_train_counts(batcher, rec.catalog.n_items)[targets] <= COLD_MAX
    warm = ranking_metrics(ranks[~is_cold])
    for r in rows:
        assert r.warm == pytest.approx(warm[r.metric], abs=1e-9), r.metric


def test_warm_value_edge_cases() -> None:
    assert warm_value(0.1, 0.04, 0.25) == pytest.approx(0.12)
    assert warm_value(0.3, None, 0.0) == 0.3  # no cold target: warm is all
    assert warm_value(0.3, 0.3, 1.0) is None  # every target cold: no warm one
    rows, share, users = cold_warm({"next_item/ndcg@10": 0.2, "next_item/cold_ndcg@10": 0.1,
                                    "next_item/cold_share": 0.5, "next_item/users": 10.0,
                                    "like/auc": 0.7})
    assert [(r.metric, r.all, r.cold, r.warm) for r in rows] == [("ndcg@10", 0.2, 0.1, 0.3)]
    assert (share, users) == (0.5, 10)
    assert cold_warm({"like/auc": 0.7}) == ([], 0.0, 0)


def test_per_scenario_metrics(bundle: Path, written: tuple[str, str, Path]) -> None:
    _, md, _ = written
    saved = read_bundle(bundle).metrics("test")
    result = evaluate_scenarios(bundle, saved)
    assert result.agrees, result.max_rel_diff  # recomputed overall == saved test metrics
    assert set(result.by_scenario) == {"home", "search"}
    users = [m["next_item/users"] for m in result.by_scenario.values()]
    assert sum(users) == saved["next_item/users"]
    examples = [m["click/examples"] for m in result.by_scenario.values()]
    assert sum(examples) == saved["click/examples"]
    ndcg = sum(m["next_item/ndcg@10"] * m["next_item/users"]
               for m in result.by_scenario.values()) / sum(users)
    assert ndcg == pytest.approx(saved["next_item/ndcg@10"], abs=1e-9)
    for name, metrics in result.by_scenario.items():
        row = _table_row(md, name)
        assert fmt(metrics["next_item/ndcg@10"]) in row and fmt(metrics["click/auc"]) in row
    assert "agree with the saved test metrics" in md


def test_single_scenario_is_one_sentence(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("checkpoint*", "tensorboard"))
    meta = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**meta, "n_scenarios": 2}))
    report = build_report(copy, compare=False)
    section = next(s for s in report.sections if s.key == "scenarios")
    [block] = section.blocks
    assert isinstance(block, Text) and "single scenario" in block.text


def test_comparison_rows(written: tuple[str, str, Path], bundle: Path) -> None:
    html, md, out = written
    test = read_bundle(bundle).metrics("test")
    # this bundle is the first, highlighted row, with its own test values
    bundle_row = _table_row(md, "**this bundle**")
    assert fmt(test["next_item/ndcg@10"]) in bundle_row[2]
    assert '<tr class=strong><td class="l">this bundle</td>' in html
    # published rows are marked, with their protocol and source in a footnote
    assert _table_row(md, "UniSRec")[1] == "published \\[1\\]"
    assert "published [1]" in html
    assert "[1] UniSRec: published under protocol leave-one-out, 100 negatives; " \
           "source: Hou et al., KDD 2022" in html
    # a row's note is a numbered footnote under the table (long notes stretched its rows)
    assert any("SASRec" in line and line.endswith("| \\[2\\] |") for line in md.splitlines())
    assert "[2] a &lt;b&gt;note&lt;/b&gt;" in html
    # one chart per headline metric: NDCG@10, click AUC, rating RMSE
    for name in ("ndcg-10", "click-auc", "rating-rmse"):
        assert (out / "figures" / f"compare_planted_{name}.svg").is_file()
    # the time-to-accuracy plot of the rows with a validation curve; a system not finished
    # yet (a pending row of a partial comparison) is in no table or chart
    assert (out / "figures" / "compare_planted_time_to_accuracy.svg").is_file()
    assert "BERT4Rec" not in md and "BERT4Rec" not in html
    # the failed row shows its error
    error = "exit 137 <killed> & out of memory"
    assert f"FAILED: {escape(error)}" in html and f"Failed: torch-rechub MMoE (peer): " \
        f"{escape(error)}" in html
    assert f"FAILED: {md_escape(error)}" in md
    # other datasets' files are left out; unreadable ones are named
    assert "compare_beauty.json" not in html
    assert "compare_broken.json: skipped" in html


def test_html_is_escaped_and_self_contained(written: tuple[str, str, Path]) -> None:
    html, md, out = written
    assert "<script" not in html and "<b>note" not in html
    assert escape(EVIL) in html and "a &lt;b&gt;note&lt;/b&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script" not in md and "&lt;script&gt;" in md
    for svg in (out / "figures").glob("*.svg"):  # chart labels are paths and escaped comments
        assert "<script" not in svg.read_text()


def test_protocol_mismatch_leaves_the_bundle_out(bundle: Path, results: Path,
                                                 tmp_path: Path) -> None:
    data = json.loads((results / "compare_planted.json").read_text())
    (tmp_path / "compare_planted.json").write_text(json.dumps({**data, "protocol": "loo"}))
    report = build_report(bundle, tmp_path, per_scenario=False)
    section = next(s for s in report.sections if s.key == "compare")
    tables = [b for b in section.blocks if isinstance(b, Table)]
    assert tables and all(row[0] != "this bundle" for row in tables[0].rows)
    assert any(isinstance(b, Text) and "not loo" in b.text for b in section.blocks)


def test_read_comparisons_filters_by_dataset(results: Path) -> None:
    found, problems = read_comparisons(results, "amazon-beauty")
    assert [c.key for c in found] == ["beauty"] and len(found[0].rows) == 4
    assert problems == [problems[0]] and problems[0].startswith("compare_broken.json")
    assert read_comparisons(None, "x") == ([], [])


def test_cli_report(bundle: Path, results: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--bundle", str(bundle), "--out",
                                 str(tmp_path / "r"), "--results", str(results),
                                 "--no-scenarios", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert Path(summary["html"]).is_file() and Path(summary["markdown"]).is_file()
    assert "were not computed" in Path(summary["markdown"]).read_text()


@pytest.mark.parametrize(("make", "needle"), [
    (lambda b, t: t / "absent", "absent: no such bundle directory"),
    (lambda b, t: _without(b, t, "metrics.json"), "metrics.json: missing"),
    (lambda b, t: _without(b, t, "config.json"), "config.json: not a bundle"),
])
def test_cli_missing_bundle_is_one_line(bundle: Path, tmp_path: Path, make: Any,
                                        needle: str) -> None:
    path = make(bundle, tmp_path)
    result = runner.invoke(app, ["report", "--bundle", str(path)])
    assert result.exit_code == 2
    assert needle in " ".join(result.output.split()) and "Traceback" not in result.output
    with pytest.raises(ReportError, match=re.escape(needle)):
        write_report(path)


def _without(bundle: Path, tmp: Path, name: str) -> Path:
    copy = tmp / "partial"
    copy.mkdir()
    for file in ("config.json", "metrics.json", "history.csv"):
        if file != name:
            shutil.copy(bundle / file, copy / file)
    return copy


@pytest.mark.real_data
@pytest.mark.slow
def test_demo_writes_the_report(bundle: Path, real_root: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`mtrec demo` ends with the report of the bundle it trained (training stubbed here:
    the tiny bundle stands in for the default model)."""
    import mtrec.train.run as run

    def fake_train(config: Any, out_dir: Path, **_: Any) -> dict[str, Any]:
        shutil.copytree(bundle, out_dir, ignore=shutil.ignore_patterns("checkpoint*"))
        return dict(json.loads((out_dir / "metrics.json").read_text()))

    monkeypatch.setattr(run, "train_run", fake_train)
    result = runner.invoke(app, ["demo", "--data-root", str(real_root), "--store-dir",
                                 str(tmp_path), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "report" / "report.html").is_file()
    assert (tmp_path / "b" / "report" / "report.md").is_file()
    assert str(tmp_path / "b" / "report" / "report.html") in " ".join(result.output.split())


def test_transfer_section(bundle: Path, tmp_path: Path) -> None:
    """The transfer chart and table appear for the held-out category the bundle is about,
    with every system's mean ± sd, in share order; another category's rows stay out."""
    dataset = json.loads((bundle / "metrics.json").read_text())["dataset"]
    rows = [{"held_out": h, "system": s, "share": share, "seeds": 3, "ndcg@10": v,
             "ndcg@10_sd": 0.001, "recall@10": 2 * v, "train_users": 5, "seconds": 1.0}
            for h in (dataset, "amazon-office")
            for s, share, v in (("pretrained", 0.0, 0.02), ("pretrained", 1.0, 0.05),
                                ("scratch", 1.0, 0.04), ("popularity", 1.0, 0.004))]
    (tmp_path / "transfer.json").write_text(json.dumps({"summary": rows}))
    files = write_report(bundle, tmp_path / "out", tmp_path)
    md = files.markdown.read_text()
    assert "## Transfer from the other categories" in md
    assert (tmp_path / "out" / "figures" / "transfer_shares.svg").is_file()
    assert _table_row(md, "0%", "pretrained")[3] == "0.0200 ± 0.0010"
    assert _table_row(md, "100%", "scratch")[3] == "0.0400 ± 0.0010"
    assert md.count("| 100% | popularity |") == 1  # amazon-office's rows are not this report's


def test_scenarios_section(bundle: Path, tmp_path: Path) -> None:
    """The joint-vs-alone chart and per-scenario table appear for the bundle's dataset;
    another dataset's rows stay out."""
    dataset = json.loads((bundle / "metrics.json").read_text())["dataset"]
    summary = [{"dataset": d, "scenario": sc, "system": s, "seeds": 3, "ndcg@10": v,
                "ndcg@10_sd": 0.001, "recall@10": 2 * v, "test_users": 10}
               for d in (dataset, "amazon-sport-cloth")
               for sc, s, v in (("home", "alone", 0.02), ("home", "joint-star", 0.03))]
    deltas = [{"dataset": dataset, "scenario": "home", "system": "joint-star", "seeds": 3,
               "delta": 0.01, "ci95": 0.004}]
    (tmp_path / "scenarios.json").write_text(json.dumps({"summary": summary,
                                                         "deltas": deltas}))
    files = write_report(bundle, tmp_path / "out", tmp_path)
    md = files.markdown.read_text()
    assert "## One model across scenarios vs one per scenario" in md
    assert (tmp_path / "out" / "figures" / "scenario_deltas.svg").is_file()
    assert _table_row(md, "home", "joint-star")[3] == "0.0300 ± 0.0010"
    assert md.count("| home | alone |") == 1  # amazon-sport-cloth's rows are not this one's


def test_remedies_section(bundle: Path, tmp_path: Path) -> None:
    """Joint-minus-single-task bars and table for the bundle's dataset only."""
    dataset = json.loads((bundle / "metrics.json").read_text())["dataset"]
    rows = [{"dataset": "x", "store": d, "metric": "click/auc", "system": "joint + pcgrad",
             "seeds": 3, "delta": 0.0123, "ci95": 0.004} for d in (dataset, "jdata")]
    (tmp_path / "remedies.json").write_text(json.dumps({"deltas": rows}))
    files = write_report(bundle, tmp_path / "out", tmp_path)
    md = files.markdown.read_text()
    assert "## Joint training vs one model per task" in md
    assert (tmp_path / "out" / "figures" / "task_deltas.svg").is_file()
    assert md.count("| click/auc | joint + pcgrad | 3 | +0.0123 | ± 0.0040 |") == 1
