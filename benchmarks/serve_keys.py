"""What do scoped keys and rate limits cost a recommendation?  Interleaved against the
service as it was before them.

    python -m benchmarks.serve_keys --bundle .mtrec/bundles/amazon-beauty --baseline REV

Two ``mtrec serve`` processes over the same bundle, one worker each, on loopback:

* ``keys``: this checkout, ``--keys FILE`` with a ``read`` key limited to 100,000 requests
  per second (the bucket is taken on every request; the limit is not reached);
* ``baseline``: the code of git revision ``REV`` (a worktree, run with the same virtualenv),
  where reads needed no key.

After a warm-up round each (not measured), ``--rounds`` rounds alternate between them,
each ``/v1/recommend`` for ``--requests``
known users (a shuffle, the same in both) at ``--concurrency`` keep-alive connections
(:mod:`benchmarks.loadgen`).  Writes ``benchmarks/results/serve_keys_<REV>.json``: errors,
client and server (``Server-Timing``) latency percentiles per side and their p50 ratio.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--baseline", required=True,
                        help="git revision of the service before keys (e.g. 86a64d9)")
    parser.add_argument("--requests", type=int, default=10_000, help="per side")
    parser.add_argument("--rounds", type=int, default=10)
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
    per_round = args.requests // args.rounds
    ports = {"keys": _free_port(), "baseline": _free_port()}
    procs = {}
    try:
        procs["keys"] = _start(ROOT, args.bundle, ports["keys"], ["--keys", str(keys)])
        procs["baseline"] = _start(base_src, args.bundle, ports["baseline"], [])
        results: dict[str, list[LoadResult]] = {"keys": [], "baseline": []}
        headers = {"keys": {"X-API-Key": secret}, "baseline": {}}
        for side in ("keys", "baseline"):  # warm-up, not measured
            _round(ports[side], users[-per_round:], args.concurrency, headers[side])
        for n in range(args.rounds):
            batch = [users[(n * per_round + i) % len(users)] for i in range(per_round)]
            order = ("keys", "baseline") if n % 2 == 0 else ("baseline", "keys")
            for side in order:
                results[side].append(_round(ports[side], batch, args.concurrency,
                                            headers[side]))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=60)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(base_src)], check=False, capture_output=True)
    sides = {side: _side(r) for side, r in results.items()}
    report = {"benchmark": "serve_keys",
              "command": f"python -m benchmarks.serve_keys --bundle {args.bundle} "
                         f"--baseline {args.baseline} --requests {args.requests} "
                         f"--rounds {args.rounds} --concurrency {args.concurrency}",
              "bundle": str(args.bundle), "baseline_revision": args.baseline, **sides,
              "p50_ratio_client": round(sides["keys"]["client_ms"]["p50"]
                                        / sides["baseline"]["client_ms"]["p50"], 3),
              "p50_ratio_server": round(sides["keys"]["server_ms"]["p50"]
                                        / sides["baseline"]["server_ms"]["p50"], 3),
              "machine": describe(("mtrec", "fastapi", "uvicorn", "torch"))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
