"""Published results read from a dataset's SOURCE.txt, as rows marked "published".

A SOURCE.txt lists published results in a block that starts with a line beginning
``Published`` (which states the protocol, ending in a colon) and runs to the next blank
line; each result line is ``MODEL  Metric@k .dddd  Metric@k .dddd ... (where)``.  Only the
numbers written there are used; nothing is typed in by hand.

>>> text = '''Published full-ranking results on this split (leave-one-out):
...   SASRec (BCE loss)    Recall@10 .0605  NDCG@10 .0318   (TIGER paper, Table 1)
...   TIGER                NDCG@10 .0384   (same table)
...
... Other text'''
>>> rows = parse_anchors(text, "SOURCE.txt")
>>> [(r["model"], r["metrics"]) for r in rows]
[('SASRec (BCE loss)', {'recall@10': 0.0605, 'ndcg@10': 0.0318}), ('TIGER', {'ndcg@10': 0.0384})]
>>> rows[1]["source"], rows[0]["protocol"]
('TIGER paper, Table 1', 'full-ranking results on this split (leave-one-out)')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_METRIC = re.compile(r"\b([A-Za-z]+@\d+)\s+(\d*\.\d+)")
_WHERE = re.compile(r"\(([^()]*)\)\s*$")


def parse_anchors(text: str, where: str) -> list[dict[str, Any]]:
    """Rows ``{system, model, kind, metrics, protocol, source}`` of every published block."""
    rows: list[dict[str, Any]] = []
    protocol = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Published"):
            protocol = stripped[len("Published"):].strip().rstrip(":").strip()
            continue
        if protocol is None:
            continue
        if not stripped:
            protocol = None
            continue
        first = _METRIC.search(stripped)
        if first is None:
            continue
        model = stripped[:first.start()].strip().rstrip(":").strip()
        metrics = {m.lower(): float(v) for m, v in _METRIC.findall(stripped)}
        found = _WHERE.search(stripped)
        source = found.group(1) if found else where
        if source.startswith("same") and rows:  # "(same table)": the row above's source
            source = rows[-1]["source"]
        rows.append({"system": "published", "model": model, "kind": "published",
                     "metrics": metrics, "protocol": protocol, "source": source})
    return rows


def anchors_for(source_dir: Path) -> list[dict[str, Any]]:
    """The published rows of ``source_dir/SOURCE.txt`` ([] when it publishes none)."""
    path = source_dir / "SOURCE.txt"
    if not path.is_file():
        return []
    return parse_anchors(path.read_text(encoding="utf-8"), f"{source_dir.name}/SOURCE.txt")
