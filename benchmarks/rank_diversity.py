"""The diversity stage's effect on the shown lists: category coverage against NDCG@10.

    python -m benchmarks.rank_diversity --bundle .mtrec/bundles/amazon-beauty

For every test user of the bundle's dataset, the ranking pipeline ranks the top 10 from the
state after the training and validation parts (the earlier items excluded, 200 exact
candidates), once with the bundle's stages and once per diversity weight with the
``diversity`` stage (MMR over item-tower vectors) after ``blend``.  Each list is scored
against the user's test item (NDCG@10, Recall@10) and by the number of distinct item
categories in it, and the share of the catalog shown to anyone.  States are computed in
float32 (the bundle's own test figures were computed under bfloat16 autocast, so they differ
in the fourth decimal).  Writes ``benchmarks/results/rank_diversity.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import describe
from mtrec.data.split import TEST
from mtrec.rank.config import RankConfig
from mtrec.rank.evaluate import evaluate_lists
from mtrec.rank.pipeline import RankingPipeline
from mtrec.recommender import Recommender

RESULTS = Path(__file__).parent / "results"
WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)


def with_diversity(config: RankConfig, weight: float) -> RankConfig:
    """``config`` with the diversity stage right after ``blend``."""
    stages = list(config.stages)
    stages.insert(stages.index("blend") + 1, "diversity")
    return replace(config, stages=tuple(stages),
                   options=(*config.options, ("diversity.weight", weight)))


def run(bundle: Path, weights: tuple[float, ...] = WEIGHTS) -> dict[str, Any]:
    torch.set_num_threads(2)
    rec = Recommender.load(bundle)
    configs = {"bundle stages": rec.rank_config}
    configs.update({f"diversity {w}": with_diversity(rec.rank_config, w) for w in weights})
    rows = []
    for name, config in configs.items():
        started = time.perf_counter()
        pipeline = RankingPipeline.from_config(rec.model, config)
        metrics = evaluate_lists(pipeline, rec.batcher, TEST, rec.tables, rec.context)
        rows.append({"variant": name, "stages": list(config.stages),
                     "options": [list(o) for o in config.options], **metrics,
                     "seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"experiment": "rank_diversity", "bundle": str(bundle),
            "dataset": rec.meta["dataset"], "protocol": rec.meta["protocol"],
            "part": "test", "k": 10, "candidates": rec.rank_config.candidates,
            "seed": rec.meta["run"]["train"]["seed"], "machine": describe(),
            "command": f"python -m benchmarks.rank_diversity --bundle {bundle}", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=RESULTS / "rank_diversity.json")
    args = parser.parse_args()
    result = run(args.bundle)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
