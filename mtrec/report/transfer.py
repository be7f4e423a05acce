"""The report's transfer section: how the model does on the bundle's category when it was
pre-trained on the others and trained on a share of this one's users
(``benchmarks/results/transfer.json``, written by ``python -m benchmarks transfer``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtrec.report import plots
from mtrec.report.doc import Figure, Section, Table, Text

SYSTEMS = ("pretrained", "scratch", "itemknn", "popularity")


def transfer_section(folder: Path | None, dataset: str) -> Section | None:
    """``None`` when there is no transfer result about ``dataset``."""
    file = None if folder is None else folder / "transfer.json"
    if file is None or not file.is_file():
        return None
    summary = [r for r in json.loads(file.read_text()).get("summary", [])
               if r.get("held_out") == dataset]
    if not summary:
        return None
    section = Section("transfer", "Transfer from the other categories")
    series = {s: [(float(r["share"]), float(r["ndcg@10"]), float(r["ndcg@10_sd"]))
                  for r in summary if r["system"] == s] for s in SYSTEMS}
    series = {s: pts for s, pts in series.items() if pts}
    section.blocks.append(Figure("transfer_shares", plots.share_curves(
        series, f"{dataset}: pre-trained on the other categories vs from scratch"),
        "Test NDCG@10 (all test users) against the share of training users each system "
        "trained on; 0 %: the pre-trained model with no training on this category "
        "(zero-shot); bars: 95 % of the spread over seeds"))
    section.blocks.append(Table(
        ["share", "system", "seeds", "NDCG@10", "Recall@10"],
        [[f"{r['share']:.0%}", r["system"], str(r["seeds"]),
          f"{r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f}", f"{r['recall@10']:.4f}"]
         for r in sorted(summary, key=_order)],
        caption=f"From {file.name}; `python -m benchmarks transfer` reproduces it"))
    section.blocks.append(Text("Every system selects its epoch on the validation "
                               "interactions of the users it trains on alone."))
    return section


def _order(row: dict[str, Any]) -> tuple[float, int]:
    return float(row["share"]), SYSTEMS.index(row["system"]) if row["system"] in SYSTEMS else 9
