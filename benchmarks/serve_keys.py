"""What do scoped keys and rate limits cost a recommendation?  Interleaved against the
service as it was before them.

    python -m benchmarks.serve_keys --bundle .mtrec/bundles/amazon-beauty --baseline REV

Two ``mtrec serve`` processes over the same bundle, one worker each, on loopback:

* ``keys``: this checkout, ``--keys FILE`` with a ``read`` key limited to 100,000 requests
  per second (the bucket is taken on every request; the limit is not reached);
* ``baseline``: the code of git revision ``REV`` (a worktree, run with the same virtualenv),
  where reads needed no key (``--baseline-keys``: it gets the same key file, for a
  revision that has keys; ``--baseline HEAD --baseline-keys`` is an A/A control).

Two processes running the same code differ by up to ~7 % in throughput on this 2-core
machine (placement, caches), and the one started first tends to be the slower: one pair of
processes cannot resolve a 10 % difference.  So ``--pairs`` pairs are started in turn, the
start order alternating, each pair getting ``--rounds`` rounds that alternate which side
goes first, after a warm-up round each (not measured); each round is ``/v1/recommend`` for
``--requests / (pairs * rounds)`` known users (a shuffle, the same on both sides) at
``--concurrency`` keep-alive connections (:mod:`benchmarks.loadgen`).  Writes
``benchmarks/results/serve_keys_<REV>.json``: errors, client and server
(``Server-Timing``) latency percentiles per side over every pair, their p50 ratio, and each
pair's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, post_json, run_load
from benchmarks.machine import describe
from benchmarks.serve_load import _free_port, _percentiles, _users, wait_healthy

RESULTS = Path(__file__).parent / "results" / "serve_keys.json"
ROOT = Path(__file__).resolve().parent.parent


def _keys_file(work: Path) -> tuple[Path, str]:
    from mtrec.serve.keys import ApiKey, hash_key, new_key

    secret = new_key()
    path = work / "keys.toml"
    path.write_text(ApiKey("bench-reader", hash_key(secret), frozenset({"read"}),
                           rate=100_000.0, burst=100_000).toml())
    return path, secret


def _start(src: Path, bundle: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(bundle.resolve()),
           "--port", str(port), "--workers", "1", *extra]
    proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    return wait_healthy(proc, port, 240.0)


def _round(port: int, users: list[str], concurrency: int,
           headers: dict[str, str]) -> LoadResult:
    requests = (post_json("/v1/recommend", {"user_id": u, "k": 10}, headers=headers)
                for u in users)
    return asyncio.run(run_load(port, requests, concurrency,
                                check=lambda status, body: body.count(b'"scores"') == 10))


def _side(results: list[LoadResult]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    return {"requests": sum(r.requests for r in results),
            "errors": sum(r.errors for r in results), "statuses": statuses,
            "client_ms": _percentiles([x for r in results for x in r.client_ms]),
            "server_ms": _percentiles([x for r in results for x in r.server_ms]),
            "throughput_rps": round(sum(r.requests for r in results)
                                    / sum(r.wall_s for r in results), 1)}


def _pair(base_src: Path, args: argparse.Namespace, keys: Path, secret: str,
          batches: list[list[str]], keys_first: bool) -> dict[str, list[LoadResult]]:
    """One pair of servers, started in the given order, over ``batches`` (rounds)."""
    extra = {"keys": ["--keys", str(keys)],
             "baseline": ["--keys", str(keys)] if args.baseline_keys else []}
    src = {"keys": ROOT, "baseline": base_src}
    headers = {"keys": {"X-API-Key": secret},
               "baseline": {"X-API-Key": secret} if args.baseline_keys else {}}
    order = ("keys", "baseline") if keys_first else ("baseline", "keys")
    ports = {side: _free_port() for side in order}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    results: dict[str, list[LoadResult]] = {"keys": [], "baseline": []}
    try:
        for side in order:
            procs[side] = _start(src[side], args.bundle, ports[side], extra[side])
        for side in order:  # warm-up, not measured
            _round(ports[side], batches[-1], args.concurrency, headers[side])
        for n, batch in enumerate(batches):
            for side in (order if n % 2 == 0 else order[::-1]):
                results[side].append(_round(ports[side], batch, args.concurrency,
                                            headers[side]))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=60)
    return results


def _p50_ratio(results: dict[str, list[LoadResult]]) -> float:
    p50 = {side: _percentiles([x for r in rs for x in r.client_ms])["p50"]
           for side, rs in results.items()}
    return round(p50["keys"] / p50["baseline"], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--baseline", required=True,
                        help="git revision of the service before keys (e.g. 86a64d9)")
    parser.add_argument("--baseline-keys", action="store_true",
                        help="the baseline has keys too (HEAD: an A/A control)")
    parser.add_argument("--requests", type=int, default=10_000, help="per side")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4, help="per pair")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/serve_keys_<baseline>.json")
    args = parser.parse_args(argv)
    out = args.out or RESULTS.with_name(f"serve_keys_{args.baseline}.json")
    work = Path(tempfile.mkdtemp())
    base_src = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_src),
                    args.baseline], check=True, capture_output=True)
    keys, secret = _keys_file(work)
    users = _users(args.bundle)
    per_round = args.requests // (args.pairs * args.rounds)
    results: dict[str, list[LoadResult]] = {"keys": [], "baseline": []}
    pair_ratios = []
    try:
        for p in range(args.pairs):
            first = (p * args.rounds) * per_round
            batches = [[users[(first + n * per_round + i) % len(users)]
                        for i in range(per_round)] for n in range(args.rounds)]
            pair = _pair(base_src, args, keys, secret, batches, keys_first=p % 2 == 0)
            pair_ratios.append(_p50_ratio(pair))
            for side, rs in pair.items():
                results[side].extend(rs)
            print(f"pair {p + 1}/{args.pairs}: client p50 ratio {pair_ratios[-1]}", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(base_src)], check=False, capture_output=True)
    sides = {side: _side(r) for side, r in results.items()}
    report = {"benchmark": "serve_keys",
              "command": f"python -m benchmarks.serve_keys --bundle {args.bundle} "
                         f"--baseline {args.baseline} "
                         + ("--baseline-keys " if args.baseline_keys else "")
                         + f"--requests {args.requests} --pairs {args.pairs} "
                         f"--rounds {args.rounds} --concurrency {args.concurrency}",
              "bundle": str(args.bundle), "baseline_revision": args.baseline,
              "baseline_has_keys": args.baseline_keys, **sides,
              "p50_ratio_client": _p50_ratio(results),
              "p50_ratio_client_per_pair": pair_ratios,
              "p50_ratio_server": round(sides["keys"]["server_ms"]["p50"]
                                        / sides["baseline"]["server_ms"]["p50"], 3),
              "throughput_ratio": round(sides["keys"]["throughput_rps"]
                                        / sides["baseline"]["throughput_rps"], 3),
              "machine": describe(("mtrec", "fastapi", "uvicorn", "torch"))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
