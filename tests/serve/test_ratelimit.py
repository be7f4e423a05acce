"""Key rate limits hold across a server's workers (serve/ratelimit.py).

Regression: each uvicorn worker kept its own token bucket, so ``mtrec serve --workers N``
let a key limited to ``rate`` make ``N * rate`` requests a second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mtrec.serve.keys import ApiKey, Keyring, hash_key
from mtrec.serve.ratelimit import Bucket, SharedBuckets
from tests.serve.conftest import Served

SLOW = (0.001, 4.0)  # one token in ~17 minutes, four at once: nothing refills in a test


K, OTHER = hash_key("k"), hash_key("other")


def test_two_workers_share_one_bucket(tmp_path: Path) -> None:
    path = tmp_path / "rates"
    first, second = (SharedBuckets(path, {K: SLOW, OTHER: SLOW}) for _ in range(2))
    waits = [(first if n % 2 else second).take(K, 100.0 + n) for n in range(8)]
    assert [w == 0.0 for w in waits] == [True] * 4 + [False] * 4
    assert first.take(OTHER, 110.0) == 0.0  # another key has its own slot
    assert waits[-1] == pytest.approx((1.0 - 7 * 0.001) / 0.001, rel=0.01)  # time to a token


def test_workers_with_different_key_files_keep_each_key_its_own_bucket(tmp_path: Path) -> None:
    """Regression (review): slots were numbered by sorted hash in each worker's key file, so
    a worker restarted after a key was added took another key's bucket."""
    path = tmp_path / "rates"
    old = SharedBuckets(path, {K: SLOW})
    restarted = SharedBuckets(path, {hash_key("added"): SLOW, K: SLOW})
    assert all(old.take(K, 100.0 + n) == 0.0 for n in range(4))
    assert restarted.take(K, 105.0) > 0  # the same bucket, empty
    assert all(restarted.take(hash_key("added"), 106.0 + n) == 0.0 for n in range(4))
    assert old.take(K, 110.0) > 0


def test_threads_of_one_worker_take_each_token_once(tmp_path: Path) -> None:
    shared = SharedBuckets(tmp_path / "rates", {K: (0.001, 50.0)})
    taken: list[float] = []

    def worker() -> None:
        for _ in range(25):
            taken.append(shared.take(K, time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(w == 0.0 for w in taken) == 50 and len(taken) == 100


def test_a_shared_bucket_refills_as_a_local_one_does(tmp_path: Path) -> None:
    shared = SharedBuckets(tmp_path / "rates", {K: (2.0, 3.0)})
    local = Bucket(2.0, 3.0)
    times = [0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 0.5, 3.0, 3.0, 3.0, 3.0]
    assert [shared.take(K, t) for t in times] == pytest.approx([local.take(t) for t in times])


def test_a_keyring_uses_the_file_only_for_limited_keys(tmp_path: Path) -> None:
    limited = ApiKey("slow", hash_key("a"), frozenset({"read"}), 0.001, 2)
    free = ApiKey("free", hash_key("b"), frozenset({"read"}))
    rings = [Keyring([limited, free], tmp_path / "rates") for _ in range(2)]
    assert [rings[n % 2].wait(limited, 5.0) == 0.0 for n in range(3)] == [True, True, False]
    assert all(rings[1].wait(free) == 0.0 for _ in range(10))
    assert Keyring([free], tmp_path / "unused").shared is None  # nothing to share


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_two_workers_holds_a_key_to_its_rate(served: Served, tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(ApiKey("slow", hash_key("s3cret"), frozenset({"read"}), 0.001, 4).toml())
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTREC_")}
    env["TMPDIR"] = str(tmp_path)  # where serve makes the workers' rate file
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(served.bundle),
         "--port", str(port), "--workers", "2", "--keys", str(keys)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() \
                if proc.stderr else "serve did not start"
            time.sleep(0.3)
        time.sleep(2.0)  # the second worker is up too
        statuses = []
        for _ in range(16):  # a new connection each: the workers take turns accepting
            r = httpx.get(f"{url}/users", headers={"X-API-Key": "s3cret"}, timeout=10)
            statuses.append(r.status_code)
        assert statuses.count(200) == 4 and statuses.count(429) == 12, statuses
        assert len(list(tmp_path.glob("mtrec-rates-*"))) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not list(tmp_path.glob("mtrec-rates-*"))  # removed when the server stops
