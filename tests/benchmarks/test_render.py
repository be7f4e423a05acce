"""The README results table is generated from the recorded results and must match them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.render import END, START, readme_block, render_markdown, update_readme


def _record() -> dict[str, Any]:
    rows = [
        {"system": "mtrec", "model": "default (text + ID)", "kind": "mtrec",
         "metrics": {"ndcg@10": 0.0571, "recall@10": 0.0968}, "train_seconds": 480.0,
         "peak_rss_gib": 2.9, "epochs": 19, "best_epoch": 16, "note": ""},
        {"system": "RecBole", "model": "SASRec", "kind": "peer",
         "metrics": {"ndcg@10": 0.0512, "recall@10": 0.0901}, "train_seconds": 900.0,
         "peak_rss_gib": 2.1, "epochs": 20, "best_epoch": 18, "note": "a|b"},
        {"system": "RecBole", "model": "BERT4Rec", "kind": "peer",
         "error": "RuntimeError: boom\nValueError: the last line"},
        {"system": "published", "model": "TIGER", "kind": "published",
         "metrics": {"ndcg@10": 0.0384}, "protocol": "loo, all items", "source": "TIGER"},
        {"system": "mtrec", "model": "joint (seed 0)", "kind": "mtrec",
         "metrics": {"like/auc": 0.7}},
        {"system": "mtrec", "model": "joint (mean of 2 seeds)", "kind": "mtrec",
         "metrics": {"like/auc": 0.71}, "aggregate": True},
    ]
    return {"comparison": "beauty", "dataset": "amazon-beauty", "protocol": "loo",
            "command": "python -m benchmarks beauty", "wall_seconds": 1800.0,
            "machine": {"cpu": "test cpu", "cores": 2}, "rows": rows, "speed": None}


def test_markdown_marks_published_lists_failures_and_folds_seeds() -> None:
    text = render_markdown(_record())
    assert "| TIGER *(published)* | published | 0.0384 |" in text
    assert "protocol: loo, all items" in text
    assert "RecBole BERT4Rec: `ValueError: the last line`" in text
    assert "| RecBole SASRec | peer | 0.0512 | 0.0901 |" in text
    assert "a/b" in text  # a pipe in a note would break the table
    assert "joint (mean of 2 seeds)" in text and "joint (seed 0)" not in text
    assert "30.0 min" in text


def test_readme_block_from_results(tmp_path: Path) -> None:
    import json

    (tmp_path / "compare_beauty.json").write_text(json.dumps(_record()))
    block = readme_block(tmp_path)
    assert block.startswith(START) and block.endswith(END)
    assert "`python -m benchmarks beauty` (30 min)" in block
    assert "not run yet (`python -m benchmarks jdata`)" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\nold\n{END}\n\nrest\n")
    assert not update_readme(readme, tmp_path, check=True)
    assert not update_readme(readme, tmp_path)
    assert update_readme(readme, tmp_path, check=True)
    assert readme.read_text().endswith("\n\nrest\n") and "old" not in readme.read_text()
    with pytest.raises(ValueError, match="no <!-- results:start"):
        update_readme(tmp_path / "compare_beauty.json", tmp_path)


def test_committed_readme_table_matches_committed_results() -> None:
    assert update_readme(check=True), (
        "README.md's results table differs from benchmarks/results/compare_*.json: "
        "run `python -m benchmarks.render`")
