"""Load benchmark of ``/v1/recommend`` (k=10), results to benchmarks/results/serve_load.json.

    python -m benchmarks.serve_load --bundle .mtrec/bundles/amazon-beauty   # after make demo
    python -m benchmarks.serve_load --bundle DIR --only million
    python -m benchmarks.serve_load --bundle DIR --only million --ann ivf   # compressed

``beauty``: a real ``mtrec serve`` process on loopback; one client sends requests one at a
time (latency), then 2 workers take ``--concurrency`` clients (throughput).  Each measured
request asks for a different known user (a shuffle of all users), so they are served from
the states precomputed at start-up; anonymous sessions (5 random items, the user tower run
per request) are measured as well.  Latency is measured twice: by the client (round trip)
and by the server (``Server-Timing``, from the request reaching the app to its response
headers).  The client is :mod:`benchmarks.loadgen` (keep-alive connections, a few tens of
microseconds per request), sharing the 2 cores with the server.

``million``: the same bundle with its catalog grown to 1,000,000 items (each new item a real
item's vectors plus noise, so the index sees realistic structure), HNSW index, requests
through the ASGI app in-process (server-side time from ``Server-Timing``), and recall@10 of
the ANN candidates against exact search over the same vectors.  With ``--ann ivf`` the
index is FAISS IVF over ``--codec`` codes re-scored at full precision from the catalog's
table (``mtrec/serve/compressed.py``), swept over ``nprobe``; its memory (as FAISS
serialises it) is set against the float32 HNSW graph's, measured on ``--float32-sample``
items of the same catalog (part ``million_ivf``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen import LoadResult, post_json, run_load
from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in (50, 95, 99)}


def _server_ms(headers: Any) -> float:
    return float(headers["server-timing"].split("dur=")[1])


def _start(bundle: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(bundle),
           "--port", str(port), "--workers", str(workers), "--api-key", KEY,
           "--store", str(Path(tempfile.mkdtemp()) / "events.db")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return wait_healthy(proc, port, 180.0)


def wait_healthy(proc: subprocess.Popen[bytes], port: int,
                 timeout: float) -> subprocess.Popen[bytes]:
    """``proc`` once its server answers ``/v1/health``; killed, with its stderr, if not."""
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    tail = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    raise RuntimeError(f"server on port {port} did not start: {tail}")


def _users(bundle: Path) -> list[str]:
    """Every user of the bundle, shuffled (seed 0)."""
    users = [str(u) for u in json.loads((bundle / "catalog.json").read_text())["user_ids"]]
    random.Random(0).shuffle(users)
    return users


def _summary(result: LoadResult) -> dict[str, Any]:
    return {"requests": result.requests, "concurrency": None, "errors": result.errors,
            "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
            "throughput_rps": round(result.requests / result.wall_s, 1),
            "client_ms": _percentiles(result.client_ms),
            "server_ms": _percentiles(result.server_ms)}


def _load(port: int, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """One ``/v1/recommend`` per body (each asks for k=10 and must get 10 items)."""
    requests = (post_json("/v1/recommend", body, headers={"X-API-Key": KEY})
                for body in bodies)
    result = asyncio.run(run_load(port, requests, concurrency,
                                  check=lambda status, body: body.count(b'"scores"') == 10))
    return {**_summary(result), "concurrency": concurrency}


def _user_bodies(users: list[str]) -> list[dict[str, Any]]:
    return [{"user_id": user, "k": 10} for user in users]


def _session_bodies(bundle: Path, n: int, length: int = 5) -> list[dict[str, Any]]:
    """Anonymous sessions of ``length`` random catalog items (seed 1): the user tower runs
    on every request, no precomputed state can serve."""
    items = json.loads((bundle / "catalog.json").read_text())["item_ids"][1:]
    rng = random.Random(1)
    return [{"items": [str(i) for i in rng.sample(items, length)], "k": 10} for _ in range(n)]


def freshness(port: int, rounds: int = 50, reconnect: bool = False) -> dict[str, Any]:
    """A new item per round: milliseconds until ``POST /v1/items`` is answered (it answers
    once the item is in every index) and until the item has also been found first by
    ``/v1/search`` and answered by ``similar-items`` (the clock covers all three requests,
    the search's own query encoding included).  ``reconnect``: the reads open connections
    of their own, so with several workers they may land on one that did not take the POST
    (it applies the item from the shared store before answering)."""
    import httpx

    posted, seen, found = [], [], 0
    url = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_keepalive_connections=0 if reconnect else None)
    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as client, \
            httpx.Client(base_url=url, timeout=30, limits=limits) as reader:
        for i in range(rounds):
            item = f"bench-new-{int(reconnect)}-{i}"
            text = f"benchmark fresh item {i} argan oil hair mask"
            started = time.perf_counter()
            client.post("/v1/items", json={"items": [{"item_id": item, "text": text}]})
            posted.append((time.perf_counter() - started) * 1000)
            hits = reader.get("/v1/search", params={"q": text, "k": 5}).json()["items"]
            similar = reader.get("/v1/similar-items", params={"item_id": item, "k": 5})
            seen.append((time.perf_counter() - started) * 1000)
            found += hits[0]["item_id"] == item and similar.status_code == 200
    return {"rounds": rounds, "reconnect": reconnect, "found_first_in_search": found,
            "post_ms": {**_percentiles(posted), "max": round(max(posted), 3)},
            "post_search_similar_ms": {**_percentiles(seen), "max": round(max(seen), 3)}}


KEY = "bench-key"


def beauty(bundle: Path, requests: int, concurrency: int) -> dict[str, Any]:
    """Known users, each once (a shuffle of all users; warm-up on others), then sessions."""
    out: dict[str, Any] = {}
    users = _users(bundle)
    if len(users) < requests + 200:
        raise ValueError(f"{bundle} has {len(users)} users; --requests {requests} needs "
                         f"{requests + 200} (each measured user is asked for once)")
    measured, warm = _user_bodies(users[:requests]), _user_bodies(users[-200:])
    for workers, conc in ((1, 1), (2, concurrency)):
        port = _free_port()
        proc = _start(bundle, port, workers)
        try:
            _load(port, warm, conc)
            result = _load(port, measured, conc)
            if workers == 1:
                out["sessions_workers1_concurrency1"] = _load(
                    port, _session_bodies(bundle, requests), 1)
                out["new_item_visible"] = freshness(port)
            else:
                out[f"new_item_visible_workers{workers}"] = freshness(port, reconnect=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        out[f"workers{workers}_concurrency{conc}"] = result
        print(f"beauty workers={workers} concurrency={conc}: {result}", file=sys.stderr)
    return out


def million(bundle: Path, n_items: int, requests: int, ann: str = "hnsw",
            codec: str = "PQ112", float32_sample: int = 100_000) -> dict[str, Any]:
    import torch
    from fastapi.testclient import TestClient

    from mtrec.serve.app import ServeSettings, create_app
    from mtrec.serve.compressed import lists_for
    from mtrec.serve.engine import Engine
    from mtrec.serve.index import IndexConfig

    torch.set_num_threads(1)
    started = time.perf_counter()
    config = IndexConfig(exact_max=200_000, ann=ann, codec=codec)  # type: ignore[arg-type]
    engine = Engine.from_bundle(bundle, config)
    grown = grow_synthetic(engine, n_items, seed=0)
    build_s = time.perf_counter() - started
    index = engine.retrieval.next_item
    app = create_app(ServeSettings(api_key="bench"), engine)
    users = [str(u) for u in engine.rec.catalog.user_ids[:2000]]
    sweep = []
    with TestClient(app, base_url="http://localhost", headers={"X-API-Key": "bench"}) as client:
        for breadth in (NPROBE if ann == "ivf" else EF_SEARCH):  # recall against time
            if ann == "ivf":
                index.set_nprobe(breadth)
            else:
                index.set_ef_search(breadth)
            server_ms: list[float] = []
            for i in range(requests + 100):
                r = client.post("/v1/recommend",
                                json={"user_id": users[i % len(users)], "k": 10})
                if i >= 100:
                    server_ms.append(_server_ms(r.headers))
            sweep.append({"nprobe" if ann == "ivf" else "ef_search": breadth,
                          "recall@10_vs_exact": engine_recall(engine, 200),
                          "server_ms": _percentiles(server_ms)})
            print(f"million {ann} {sweep[-1]}", file=sys.stderr, flush=True)
    items = len(engine.item_ids) - 1
    out = {"items": items, "synthetic_items": grown, "index": index.kind_,
           "build_seconds": round(build_s, 1), "requests": requests, "sweep": sweep}
    if ann == "ivf":  # (the HNSW graph's size: float32_index_bytes, without a 2 GB save)
        memory = index.nbytes()
        f32 = float32_index_bytes(engine.catalog.matrix[1: float32_sample + 1].numpy())
        out.update(index_config={"codec": codec, "nlist": lists_for(len(index), 0),
                                 "rescore": index.config.rescore},
                   index_bytes=memory, index_bytes_per_item=round(memory / items, 1),
                   float32_hnsw=f32, memory_vs_float32_hnsw=round(
                       memory / items / f32["index_bytes_per_item"], 4))
    return out


def float32_index_bytes(vectors: np.ndarray) -> dict[str, Any]:
    """The float32 HNSW index's bytes per item (hnswlib, M 32, as serving builds it), built
    on ``vectors`` (the first items of the same grown catalog): its size is linear in items."""
    from mtrec.serve.index import IndexConfig, ItemIndex

    sample = len(vectors)
    config = IndexConfig(exact_max=0)
    started = time.perf_counter()
    index = ItemIndex(config).build(vectors, np.arange(1, sample + 1, dtype=np.int64))
    size = index.nbytes()
    return {"sample_items": sample, "m": config.m, "build_seconds":
            round(time.perf_counter() - started, 1), "index_bytes": size,
            "index_bytes_per_item": round(size / sample, 1)}


NPROBE = (16, 32, 48, 96)
EF_SEARCH = (128, 256, 512)


def grow_synthetic(engine: Any, n_items: int, seed: int = 0) -> int:
    """Grow the catalog to ``n_items`` with noisy copies of real items (their vectors plus
    Gaussian noise, so an ANN index sees realistic structure) and rebuild the next-item index.
    Returns how many items were added."""
    import torch

    cat = engine.catalog
    extra = n_items - len(cat)
    if extra <= 0:
        return 0
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(1, len(cat.item_ids), (extra,), generator=gen)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(extra, x.shape[1], generator=gen) * x[1:].std(0)
        return x[base] + 0.3 * noise

    with engine.lock:
        text = noisy(cat.text) if cat.has_text else cat.text[:0]
        cat.extend([f"synthetic-{i}" for i in range(extra)],
                   [cat.texts[b] for b in base.tolist()],
                   [cat.categories[b] for b in base.tolist()], noisy(cat.vectors), text)
        engine.retrieval.rebuild(lookups=False)  # similar items and search: the real ones
    return extra


def engine_recall(engine: Any, n_queries: int) -> float:
    """Recall@10 of the ANN index against exact search over the same vectors."""
    rng = np.random.default_rng(0)
    users = engine.rec.catalog.user_ids
    matrix = engine.catalog.matrix[1:].numpy()
    hits = 0
    for u in rng.choice(len(users), n_queries, replace=False):
        query = engine.state(engine.history(str(users[u])), engine.scenario(None)).query[0]
        q = query.float().numpy()
        approx, _ = engine.retrieval.next_item.search(q, 10)
        exact = np.argpartition(-(matrix @ q), 10)[:10] + 1
        hits += len(set(approx.tolist()) & set(exact.tolist()))
    return round(hits / (10 * n_queries), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("beauty", "million"))
    parser.add_argument("--ann", choices=("hnsw", "ivf"), default="hnsw",
                        help="the million-item index (ivf: compressed codes, re-scored)")
    parser.add_argument("--codec", default="PQ112", help="the ivf index's codes")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_load.json",
                        help="results file (a part run alone keeps the file's other parts)")
    parser.add_argument("--float32-sample", type=int, default=100_000,
                        help="items the float32 HNSW size is measured on (ivf runs)")
    args = parser.parse_args()
    context = {"command": "python -m benchmarks.serve_load " + " ".join(sys.argv[1:]),
               "bundle": str(args.bundle), "machine": describe(
                   ("mtrec", "fastapi", "uvicorn", "uvloop", "httptools", "hnswlib", "torch")),
               "cpus": os.cpu_count()}
    path = args.out
    # each part carries its own command and machine: a part run alone keeps the other's
    record = json.loads(path.read_text()) if args.only and path.exists() else {}
    record.pop("command", None), record.pop("bundle", None), record.pop("machine", None)
    if args.only in (None, "beauty"):
        record["beauty"] = {**context, **beauty(args.bundle, args.requests, args.concurrency)}
    if args.only in (None, "million"):
        part = "million" if args.ann == "hnsw" else "million_ivf"
        record[part] = {**context, **million(args.bundle, args.items,
                                             min(args.requests, 2000), args.ann, args.codec,
                                             args.float32_sample)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))

if __name__ == "__main__":
    main()
