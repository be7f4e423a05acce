"""Published anchors are read from SOURCE.txt, never typed in."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.anchors import anchors_for, parse_anchors


@pytest.mark.real_data
def test_beauty_source_publishes_four_full_ranking_rows(real_root: Path) -> None:
    rows = anchors_for(real_root / "amazon-beauty-p5")
    assert [r["model"] for r in rows][:3] == ["SASRec (BCE loss)", "S3-Rec", "TIGER"]
    tiger = rows[2]
    assert tiger["metrics"] == {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648,
                                "ndcg@10": 0.0384}
    assert tiger["source"].startswith("TIGER paper") and "leave-one-out" in tiger["protocol"]
    assert all(r["kind"] == "published" for r in rows)


@pytest.mark.real_data
def test_sources_without_a_published_block_give_no_rows(real_root: Path) -> None:
    assert anchors_for(real_root / "multibehavior-jdata") == []
    assert anchors_for(real_root / "no-such-dataset") == []


def test_lines_outside_the_block_are_ignored() -> None:
    text = "Stats: NDCG@10 .5 here\n\nPublished on X:\n  M  NDCG@10 .1\n\nLater NDCG@10 .9\n"
    rows = parse_anchors(text, "s")
    assert [(r["model"], r["metrics"]) for r in rows] == [("M", {"ndcg@10": 0.1})]
