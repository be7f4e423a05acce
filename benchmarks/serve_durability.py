"""Are acknowledged events durable when the server is killed?  Post events concurrently to a
real ``mtrec serve`` process, SIGKILL it mid-run, restart it on the same store and check that
every event whose POST got a 2xx is stored, and that the restarted server serves it.

    python -m benchmarks.serve_durability --bundle DIR [--events 50000] [--concurrency 16]

Writes ``benchmarks/results/serve_durability.json`` (or ``--out``); exits 1 when a check fails.

The procedure (``run``):

1. start ``python -m mtrec.cli serve --bundle DIR --store WORK/events.db --workers 1`` (uvicorn
   runs in that very process, so its pid is the server's) and wait for ``/v1/health``;
2. ``concurrency`` threads post batches of new events for users of their own (``durable-T-J``,
   unknown to the bundle), one batch at a time each; every event has a unique ``ts`` and
   ``event_id``;
3. when ``kill_at`` of the events are acknowledged (2xx), SIGKILL the server; the requests in
   flight then fail with connection errors and are not acknowledged;
4. restart the server on the same store and check: every acknowledged event is in the SQLite
   file with its user, item and ts (``missing``), nothing is stored that was not posted or is
   stored twice, every batch is stored whole or not at all (``torn_batches``), ``/v1/health``
   counts the stored events, and each user's ``/v1/users/{id}/history`` is exactly their stored
   events in order, starting with their acknowledged ones (``history_mismatches``);
5. the clients go on against the restarted server, as a client that lost an answer would:
   each posts again the batch the kill cut off (perhaps stored already: its event ids make
   the server skip what it holds) and the rest of its plan; then every one of the planned
   events is acknowledged and stored exactly once (``after_resume``).

SIGKILL tests a crash of the server process, not of the machine: what the process wrote
survives in the OS page cache even without an fsync.  (``synchronous=FULL`` is what covers a
power cut; that needs a VM or a fault-injecting block device to test.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
API_KEY = "durability-secret"
T0 = 1_700_000_000.0  # event i has ts T0 + i: exact in a float, unique


@dataclass(frozen=True)
class Batch:
    thread: int
    events: list[dict[str, Any]]  # the JSON events: user_id, item_id, behavior, ts


@dataclass
class Posting:
    """What the clients saw."""

    acked: list[Batch] = field(default_factory=list)  # got a 2xx, in the order answered
    unacked: list[Batch] = field(default_factory=list)  # sent, no 2xx (cut off by the kill)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # non-2xx answers
    errors: list[str] = field(default_factory=list)  # connection errors (expected after kill)
    left: dict[int, list[Batch]] = field(default_factory=dict)  # per thread, not acked yet
    duplicates: int = 0  # events the server answered were already stored
    killed_at: float | None = None  # perf_counter of the SIGKILL
    seconds: float = 0.0

    @property
    def acked_events(self) -> int:
        return sum(len(b.events) for b in self.acked)

    @property
    def posted_events(self) -> int:
        return self.acked_events + sum(len(b.events) for b in self.unacked)


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``mtrec serve`` process (workers=1: uvicorn serves in the process itself)."""

    def __init__(self, bundle: Path, store: Path, port: int, log: Path,
                 api_key: str = API_KEY, burst_users: int = 20) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("MTREC_API_KEY", None)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(bundle),
                 "--store", str(store), "--port", str(port), "--workers", "1",
                 "--api-key", api_key, "--burst-users", str(burst_users)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Poll /v1/health until it answers 200; returns the seconds it took."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=5).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"no /v1/health after {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""


def port_refuses(url: str) -> bool:
    """True when nothing accepts connections at ``url`` any more."""
    try:
        httpx.get(f"{url}/v1/health", timeout=5)
    except httpx.ConnectError:
        return True
    except httpx.TransportError:
        return False
    return False


# ---------------------------------------------------------------------------- the load
def plan(items: list[str], events: int, batch: int, concurrency: int,
         users_per_thread: int, seed: int = 0) -> list[list[Batch]]:
    """Each thread's batches, in the order it posts them; its users are its own."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(items), events)
    per_thread: list[list[dict[str, Any]]] = [[] for _ in range(concurrency)]
    for i in range(events):
        t = (i // batch) % concurrency
        j = len(per_thread[t]) % users_per_thread
        per_thread[t].append({"user_id": f"durable-{t}-{j}", "item_id": items[picks[i]],
                              "behavior": "click", "ts": T0 + i, "event_id": f"e{i}"})
    return [[Batch(t, evs[k:k + batch]) for k in range(0, len(evs), batch)]
            for t, evs in enumerate(per_thread)]


def post(url: str, batches: list[list[Batch]], server: Server | None = None,
         kill_after: int = 0, timeout: float = 60.0) -> Posting:
    """Post each thread's batches; SIGKILL ``server`` (if given) once ``kill_after`` events
    are acked.  A thread whose server is gone stops; what it had not got acked is ``left``."""
    out = Posting()
    lock = threading.Lock()

    def worker(mine: list[Batch]) -> None:
        with httpx.Client(base_url=url, timeout=timeout,
                          headers={"X-API-Key": API_KEY}) as client:
            for n, b in enumerate(mine):
                try:
                    r = client.post("/v1/events", json={"events": b.events})
                except httpx.TransportError as exc:  # the server is gone
                    with lock:
                        out.unacked.append(b)
                        out.errors.append(type(exc).__name__)
                        out.left[b.thread] = mine[n:]
                    return
                with lock:
                    answer = r.json() if 200 <= r.status_code < 300 else {}
                    if answer.get("stored", -1) + answer.get("duplicates", 0) == len(b.events):
                        out.acked.append(b)
                        out.duplicates += answer.get("duplicates", 0)
                        if (server is not None and out.killed_at is None
                                and out.acked_events >= kill_after):
                            server.kill()
                            out.killed_at = time.perf_counter()
                    else:
                        out.unacked.append(b)
                        out.rejected.append((r.status_code, r.text[:200]))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(mine,)) for mine in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.seconds = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------- the checks
def stored_events(db: Path) -> list[tuple[str, str, float]]:
    """(user_id, item_id, ts) of every stored event, in row order."""
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute("SELECT user_id, item_id, ts FROM events ORDER BY id").fetchall()
    finally:
        con.close()
    return [(str(u), str(i), float(t)) for u, i, t in rows]


def check(posting: Posting, stored: list[tuple[str, str, float]],
          histories: dict[str, list[str]]) -> dict[str, Any]:
    """Compare what the clients were told with what the store and the server hold."""
    by_ts: dict[float, tuple[str, str]] = {}
    duplicates = 0
    for user, item, ts in stored:
        duplicates += ts in by_ts
        by_ts[ts] = (user, item)
    acked = [e for b in posting.acked for e in b.events]
    missing = [e for e in acked if by_ts.get(e["ts"]) != (e["user_id"], e["item_id"])]
    posted = {e["ts"]: e for b in posting.acked + posting.unacked for e in b.events}
    unknown = [ts for ts, (u, i) in by_ts.items()
               if ts not in posted or (posted[ts]["user_id"], posted[ts]["item_id"]) != (u, i)]
    torn = sum(0 < sum(e["ts"] in by_ts for e in b.events) < len(b.events)
               for b in posting.unacked)
    unacked_stored = sum(e["ts"] in by_ts for b in posting.unacked for e in b.events)

    # per user: stored items in row order; acknowledged ones in posting order (one thread
    # posts each user's events, one batch at a time, so acked order is row order)
    stored_seq: dict[str, list[str]] = defaultdict(list)
    for user, item, _ in stored:
        stored_seq[user].append(item)
    acked_seq: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for e in acked:
        acked_seq[e["user_id"]].append((e["ts"], e["item_id"]))
    mismatches = []
    for user, history in histories.items():
        want_prefix = [i for _, i in sorted(acked_seq.get(user, []))]
        if history != stored_seq.get(user, []) or history[:len(want_prefix)] != want_prefix:
            mismatches.append(user)
    return {"acknowledged": len(acked), "stored_after_restart": len(stored),
            "missing": len(missing), "missing_sample": missing[:5],
            "stored_unacknowledged": unacked_stored, "stored_never_posted": len(unknown),
            "stored_twice": duplicates, "torn_batches": torn,
            "history_users_checked": len(histories), "history_mismatches": mismatches[:20]}


def completion(batches: list[list[Batch]], resumed: Posting, first: Posting,
               stored: list[tuple[str, str, float]]) -> dict[str, Any]:
    """After the clients posted again what the kill cut off: every planned event is
    acknowledged and stored exactly once (the retried batch's events by their ids)."""
    counts: dict[float, int] = defaultdict(int)
    for _, _, ts in stored:
        counts[ts] += 1
    planned = [e["ts"] for mine in batches for b in mine for e in b.events]
    return {"acknowledged": first.acked_events + resumed.acked_events, "stored": len(stored),
            "missing": sum(counts[ts] == 0 for ts in planned),
            "stored_twice": sum(c > 1 for c in counts.values()),
            "duplicates_answered": resumed.duplicates,
            "rejected": len(resumed.rejected), "connection_errors": len(resumed.errors),
            "posting_seconds": round(resumed.seconds, 2)}


# ---------------------------------------------------------------------------- the run
def run(bundle: Path, events: int = 50_000, batch: int = 10, concurrency: int = 16,
        kill_at: float = 0.5, users_per_thread: int = 8, workdir: Path | None = None,
        seed: int = 0, burst_users: int = 20) -> dict[str, Any]:
    """The whole procedure (see the module's doc); returns the report (``ok`` when all holds).
    ``burst_users``: the server's burst rule (every poster is a new user: on a catalog of a
    few items they all hit each item at once, which the rule is there to hold)."""
    if not 0 < kill_at < 1:
        raise ValueError(f"kill_at must be in (0, 1), got {kill_at}")
    bundle = Path(bundle).resolve()
    catalog = json.loads((bundle / "catalog.json").read_text())
    items = [str(i) for i in catalog["item_ids"][1:]]  # code 0 is padding
    with tempfile.TemporaryDirectory(prefix="durability-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        store, log = work / "events.db", work / "server.log"
        if store.exists():
            raise FileExistsError(f"{store} exists: give an empty --workdir")
        start = time.perf_counter()
        port = free_port()
        first = Server(bundle, store, port, log, burst_users=burst_users)
        posting: Posting | None = None
        try:
            startup = first.wait_ready()
            batches = plan(items, events, batch, concurrency, users_per_thread, seed)
            posting = post(first.url, batches, first, kill_after=int(events * kill_at))
        finally:
            if posting is None or posting.killed_at is None:
                first.stop()  # an error, or the kill never came: do not leave it running
        exit_code = first.proc.wait(timeout=60)
        refused = port_refuses(first.url)

        second = Server(bundle, store, port, log, burst_users=burst_users)
        try:
            restart = second.wait_ready()
            health = httpx.get(f"{second.url}/v1/health", timeout=30).json()
            users = sorted({e["user_id"] for mine in batches for b in mine for e in b.events})
            histories = {}
            with httpx.Client(base_url=second.url, timeout=60,
                              headers={"X-API-Key": API_KEY}) as client:  # reads need a key
                for user in users:
                    r = client.get(f"/v1/users/{user}/history")
                    histories[user] = ([i["item_id"] for i in r.json()["items"]]
                                       if r.status_code == 200 else [])
                rec = client.post("/v1/recommend", json={"user_id": users[0], "k": 5}).json()
            stored = stored_events(store)
            # the clients go on: each posts again what was not acknowledged (the batch
            # cut off by the kill, which may be stored already) and the rest of its plan
            resumed = post(second.url, [posting.left.get(t, []) for t in range(concurrency)])
            final = completion(batches, resumed, posting, stored_events(store))
            last = httpx.get(f"{second.url}/v1/health", timeout=30).json()
            final["events_stored_health"] = last.get("events_stored")
            # legitimate traffic: none of it may be held by the burst rule
            final["events_quarantined"] = last.get("events_quarantined")
        finally:
            second.stop()
        wall = time.perf_counter() - start

    result = check(posting, stored, histories)
    report: dict[str, Any] = {
        "benchmark": "serve_durability",
        "command": "python -m benchmarks.serve_durability --bundle DIR "
                   f"--events {events} --batch {batch} --concurrency {concurrency} "
                   f"--kill-at {kill_at}",
        "bundle": str(bundle), "events_planned": events, "batch": batch,
        "concurrency": concurrency, "users": concurrency * users_per_thread,
        "kill_after_acknowledged": int(events * kill_at),
        "posted": posting.posted_events, **result,
        "events_stored_health": health.get("events_stored"),
        "rejected": len(posting.rejected), "rejected_sample": posting.rejected[:5],
        "connection_errors": len(posting.errors),
        "killed": posting.killed_at is not None and exit_code == -signal.SIGKILL,
        "server_exit_code": exit_code, "port_refused_after_kill": refused,
        "recommend_after_restart_cold_start": rec.get("cold_start"),
        "seconds": {"startup": round(startup, 2), "posting": round(posting.seconds, 2),
                    "restart": round(restart, 2), "wall": round(wall, 2)},
        "acknowledged_events_per_s": round(posting.acked_events / posting.seconds, 1)
        if posting.seconds else None,
        "after_resume": final,
        "machine": describe(),
    }
    report["ok"] = bool(
        report["killed"] and refused
        and report["missing"] == 0 and report["stored_never_posted"] == 0
        and report["stored_twice"] == 0 and report["torn_batches"] == 0
        and report["rejected"] == 0 and not report["history_mismatches"]
        and report["events_stored_health"] == report["stored_after_restart"]
        and rec.get("cold_start") is False
        and final["acknowledged"] == final["stored"] == final["events_stored_health"] == events
        and final["missing"] == 0 and final["stored_twice"] == 0
        and final["events_quarantined"] == 0)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_durability",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle (mtrec train)")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=10, help="events per POST")
    parser.add_argument("--concurrency", type=int, default=16, help="posting threads")
    parser.add_argument("--kill-at", type=float, default=0.5,
                        help="SIGKILL once this share of the events is acknowledged")
    parser.add_argument("--users-per-thread", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the store and server log here (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_durability.json")
    args = parser.parse_args(argv)
    report = run(args.bundle, args.events, args.batch, args.concurrency, args.kill_at,
                 args.users_per_thread, args.workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"{'OK' if report['ok'] else 'FAILED'}: {report['acknowledged']} acknowledged, "
          f"{report['stored_after_restart']} stored after restart, {report['missing']} missing"
          f" ({args.out})")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
