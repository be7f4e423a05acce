"""A/B timing of two source trees on one bundle, interleaved in one run (the machine is
shared and its speed drifts, so only ratios measured side by side mean anything).

    git worktree add /tmp/base <commit>      # the tree to compare against
    python -m benchmarks.ab eval  --bundle .mtrec/bundles/amazon-beauty --base /tmp/base
    python -m benchmarks.ab serve --bundle .mtrec/bundles/amazon-beauty --base /tmp/base

``eval``: the full test evaluation of the bundle (``mtrec.eval.protocols.evaluate``, every
user, full ranking, bfloat16 autocast as trained), timed inside a fresh process of each
tree, rounds alternating A, B, B, A, ...  ``serve``: a one-worker ``mtrec serve`` of each
tree, one client, ``/v1/recommend`` k=10 for ``--requests`` different known users (after
200 warm-up requests; the same users for both trees in a round), server-side latency from
``Server-Timing``.  This tree is "new", ``--base`` is "base".  Writes
``benchmarks/results/ab_<what>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).resolve().parents[1]

EVAL_SNIPPET = """
import json, sys, time, torch
from mtrec.recommender import Recommender
from mtrec.eval.protocols import evaluate
try:
    from mtrec.models.batches import SequenceBatcher
except ImportError:  # trees before the scoring-path refactor
    from mtrec.train.batches import SequenceBatcher
torch.set_num_threads(int(sys.argv[2]))
rec = Recommender.load(sys.argv[1])
batcher = SequenceBatcher(rec.batcher.data, rec.model.user_tower.config.max_len, {})
started = time.perf_counter()
metrics = evaluate(rec.model, batcher, 2, 512, autocast=True)  # 2 = test
print(json.dumps({"seconds": time.perf_counter() - started,
                  "ndcg@10": metrics["next_item/ndcg@10"]}))
"""


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def eval_round(tree: Path, bundle: Path, threads: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", EVAL_SNIPPET, str(bundle.resolve()),
                          str(threads)], cwd=tree, env=_env(tree), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_round(tree: Path, bundle: Path, users: list[str], port: int) -> dict[str, float]:
    from benchmarks.loadgen import post_json, run_load

    cmd = [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(bundle.resolve()),
           "--port", str(port), "--workers", "1", "--api-key", "bench",
           "--store", str(Path(tempfile.mkdtemp()) / "events.db")]
    key = {"X-API-Key": "bench"}  # reads need a key since issue 19 (older trees ignore it)
    proc = subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait(port, proc)
        bodies = [{"user_id": u, "k": 10} for u in users]
        asyncio.run(run_load(port, (post_json("/v1/recommend", b, headers=key)
                                    for b in bodies[:200]), 1))
        result = asyncio.run(run_load(port, (post_json("/v1/recommend", b, headers=key)
                                             for b in bodies[200:]), 1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ms = sorted(result.server_ms)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[int(0.99 * (len(ms) - 1))],
            "requests": float(len(ms)), "errors": float(result.errors)}


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def run(what: str, bundle: Path, base: Path, rounds: int, requests: int,
        threads: int) -> dict[str, Any]:
    import random

    from benchmarks.serve_load import _free_port

    trees = {"new": HERE, "base": base.resolve()}
    users = [str(u) for u in json.loads((bundle / "catalog.json").read_text())["user_ids"]]
    rows = []
    for r in range(rounds):
        order = ["new", "base"] if r % 2 == 0 else ["base", "new"]
        chosen = random.Random(r).sample(users, requests + 200)
        for name in order:
            got = (eval_round(trees[name], bundle, threads) if what == "eval"
                   else serve_round(trees[name], bundle, chosen, _free_port()))
            rows.append({"round": r, "tree": name, **got})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    key = "seconds" if what == "eval" else "p50_ms"
    med = {n: statistics.median(x[key] for x in rows if x["tree"] == n) for n in trees}
    return {"experiment": f"ab_{what}", "bundle": str(bundle), "base": str(base),
            "base_commit": _commit(base), "new_commit": _commit(HERE), "rounds": rounds,
            "threads": threads if what == "eval" else 1,
            "requests": requests if what == "serve" else None, "machine": describe(),
            "median": med, "ratio_new_over_base": med["new"] / med["base"], "rows": rows,
            "command": f"python -m benchmarks.ab {what} --bundle {bundle} --base {base}"}


def _commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "mtrec"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+uncommitted" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("eval", "serve"))
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = run(args.what, args.bundle, args.base, args.rounds, args.requests, args.threads)
    out = RESULTS / f"ab_{args.what}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.what}: median new {result['median']['new']:.4g} vs base "
          f"{result['median']['base']:.4g} (ratio {result['ratio_new_over_base']:.3f}); "
          f"wrote {out}")


if __name__ == "__main__":
    main()
