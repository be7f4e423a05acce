"""What the half-precision catalog pass costs in accuracy, on a real bundle.

    python -m benchmarks.scan_accuracy --bundle .mtrec/bundles/amazon-beauty

For the first ``--users`` bundle users (their precomputed states, the default scenario,
seen items excluded): whether the exact float32 top 10 are among the 200 candidates the
half-precision pass selects, and how far its softmax normalizer is from the exact one, for
batches of 16 (bfloat16) and single queries (float16); the same for the int8 pass; and how
fast the half and int8 passes are, alone and inside a known user's recommendation.  Writes
``benchmarks/results/scan_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"


def measure(bundle: Path, n_users: int, batch: int = 16) -> dict[str, Any]:
    from mtrec.serve.engine import Engine
    from mtrec.serve.index import IndexConfig
    from mtrec.serve.scan import CatalogScan

    engine = Engine.from_bundle(bundle, IndexConfig(scan="float32"))
    users = [str(u) for u in engine.rec.catalog.user_ids[:n_users]]
    scen = engine.scenario(None)
    seen = [np.unique([s.code for s in engine.history(u)]) for u in users]
    queries = torch.stack([engine.state(engine.history(u), scen, u).query[0] for u in users])
    exact, half, int8 = CatalogScan("float32"), CatalogScan("half"), CatalogScan("int8")
    half.rebuild(engine.catalog.matrix)
    int8.rebuild(engine.catalog.matrix)
    out: dict[str, Any] = {"bundle": str(bundle), "users": len(users), "candidates": 200}
    for name, size, scan in (("batches_bfloat16", batch, half), ("single_float16", 1, half),
                             ("batches_int8", batch, int8), ("single_int8", 1, int8)):
        recall, error = [], []
        for start in range(0, len(users), size):
            q, x = queries[start:start + size], seen[start:start + size]
            truth = exact.candidates(q, engine.catalog.matrix, 1.0, [200] * len(q), x)
            got = scan.candidates(q, engine.catalog.matrix, 1.0, [200] * len(q), x)
            for (t_pool, t_lse, _), (g_pool, g_lse, _) in zip(truth, got, strict=True):
                recall.append(len(set(t_pool[:10].tolist()) & set(g_pool.tolist())) / 10)
                error.append(abs(float(t_lse) - float(g_lse)))
        err = np.asarray(error)
        out[name] = {"exact_top10_in_candidates": round(float(np.mean(recall)), 4),
                     "normalizer_abs_error": {"mean": round(float(err.mean()), 5),
                                              "p99": round(float(np.percentile(err, 99)), 5),
                                              "max": round(float(err.max()), 5)}}
    return out


def speed(bundle: Path, n_users: int, rounds: int = 4) -> dict[str, Any]:
    """One thread, rounds interleaved (order alternating): the catalog pass alone for one
    query, and a known user's whole recommendation in the engine (k=10), by pass."""
    import statistics
    import time

    from mtrec.serve.engine import Engine
    from mtrec.serve.index import IndexConfig

    engines = {d: Engine.from_bundle(bundle, IndexConfig(scan=d))
               for d in ("half", "int8")}
    users = [str(u) for u in engines["half"].rec.catalog.user_ids[1: n_users + 1]]
    query = torch.randn(1, engines["half"].catalog.matrix.shape[1])
    per = max(1, len(users) // rounds)
    recommend: dict[str, list[float]] = {d: [] for d in engines}
    scan: dict[str, list[float]] = {d: [] for d in engines}
    for r in range(rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        for name in order:
            engine, scen = engines[name], engines[name].scenario(None)
            for u in users[r * per: (r + 1) * per]:
                history = engine.history(u)
                started = time.perf_counter()
                engine.recommend(history, 10, scen, user=u)
                recommend[name].append(time.perf_counter() - started)
                started = time.perf_counter()
                engine.retrieval.scan.logits(query)
                scan[name].append(time.perf_counter() - started)
    med = {what: {d: round(statistics.median(v) * 1e3, 4) for d, v in got.items()}
           for what, got in (("recommend_ms", recommend), ("pass_ms", scan))}
    return {"users": len(users), "rounds": rounds, "median": med,
            "recommend_int8_over_half": round(med["recommend_ms"]["int8"]
                                              / med["recommend_ms"]["half"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--speed-users", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {"command": "python -m benchmarks.scan_accuracy " + " ".join(sys.argv[1:]),
              "machine": describe(("mtrec", "torch")), **measure(args.bundle, args.users),
              "speed": speed(args.bundle, args.speed_users)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scan_accuracy.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
