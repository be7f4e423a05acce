"""Does one write key's burst move trending?  The attack of issue 19, with the guard off and on.

    python -m benchmarks.trending_attack [--bundle .mtrec/bundles/amazon-beauty]

For each case a fresh server (in process, over the bundle, with an empty event store):

1. read the top 10 of ``/v1/trending``;
2. post the attack in one batch (10,000 purchase events), on one target item drawn with a
   fixed seed among the least-trending half of the catalog;
3. read the top 10 again, the target's rank (in the top 1,000) and the quarantine count;
4. restart (a new app over the same store) and read the top 10 once more.

Cases: the issue's attack (50 new users, 200 events each) with the guard off and on; with
the guard on, 10,000 new users with one event each, and 19 new users (one under the burst
rule) with all 10,000 events.  Then a known user's history: 20 purchase events posted at
once, guard off and on, and how many of their 10 recommendations survive.  Writes
``benchmarks/results/trending_attack.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results" / "trending_attack.json"
KEY = "attack-bench"
EVENTS = 10_000


@dataclass(frozen=True)
class Case:
    name: str
    fake_users: int
    guard: bool


CASES = (Case("50 new users x 200 events, guard off", 50, False),
         Case("50 new users x 200 events, guard on", 50, True),
         Case("10,000 new users x 1 event, guard on", EVENTS, True),
         Case("19 new users x 526 events, guard on", 19, True))


def _client(bundle: Path, store: Path, guard: bool) -> Any:
    from fastapi.testclient import TestClient

    from mtrec.serve.app import ServeSettings, create_app
    from mtrec.serve.guard import GuardConfig

    settings = ServeSettings(api_key=KEY, guard=GuardConfig(enabled=guard),
                             precompute_users=False)
    return TestClient(create_app(settings, bundle, store), base_url="http://localhost",
                      headers={"X-API-Key": KEY})


def _top(client: Any, k: int) -> list[str]:
    return [i["item_id"] for i in client.get(f"/v1/trending?k={k}").json()["items"]]


def run_case(bundle: Path, case: Case, seed: int = 0) -> dict[str, Any]:
    store = Path(tempfile.mkdtemp()) / "events.db"
    started = time.perf_counter()
    with _client(bundle, store, case.guard) as client:
        ranked = _top(client, 1000)
        catalog = client.get("/v1/health").json()["items"]
        rng = np.random.default_rng(seed)
        trending = set(ranked)
        cold = [i for i in client.app.state.service.engine.item_ids if i not in trending]
        target = str(rng.choice(cold)) if cold else ranked[-1]
        before = ranked[:10]
        events = [{"user_id": f"fake-{n % case.fake_users}", "item_id": target,
                   "behavior": "purchase"} for n in range(EVENTS)]
        answer = client.post("/v1/events", json={"events": events}).json()
        after = _top(client, 1000)
        held = client.get("/v1/quarantine?limit=1").json()["count"]
    with _client(bundle, store, case.guard) as client:
        restarted = _top(client, 10)
    return {"case": case.name, "fake_users": case.fake_users, "guard": case.guard,
            "catalog_items": catalog, "target": target,
            "top10_before": before, "top10_after": after[:10],
            "top10_after_restart": restarted,
            "top10_unchanged": after[:10] == before and restarted == before,
            "target_rank_after": after.index(target) + 1 if target in after else None,
            "answer": answer, "quarantined": held,
            "seconds": round(time.perf_counter() - started, 1)}


def history_case(bundle: Path, guard: bool, seed: int = 0) -> dict[str, Any]:
    """20 purchase events posted at once for a known user (items they never had, drawn with
    ``seed``): how many of their 10 recommendations survive."""
    store = Path(tempfile.mkdtemp()) / "events.db"
    with _client(bundle, store, guard) as client:
        engine = client.app.state.service.engine
        rng = np.random.default_rng(seed)
        user = str(rng.choice(engine.rec.catalog.user_ids))
        seen = {h["item_id"] for h in client.get(f"/v1/users/{user}/history").json()["items"]}
        pool = [i for i in engine.item_ids[1:] if i not in seen]
        items = [str(i) for i in rng.choice(pool, 20, replace=False)]
        ask = {"user_id": user, "k": 10}
        before = [r["item_id"] for r in client.post("/v1/recommend", json=ask).json()["items"]]
        answer = client.post("/v1/events", json={"events": [
            {"user_id": user, "item_id": i, "behavior": "purchase"} for i in items]}).json()
        after = [r["item_id"] for r in client.post("/v1/recommend", json=ask).json()["items"]]
    return {"case": f"20 purchases for a known user, guard {'on' if guard else 'off'}",
            "user": user, "answer": answer, "recommendations_kept": len(set(before) & set(after))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for case in CASES:
        rows.append(run_case(args.bundle, case))
        print(json.dumps({k: rows[-1][k] for k in ("case", "top10_unchanged",
                                                   "target_rank_after", "quarantined")}))
    history = [history_case(args.bundle, guard) for guard in (False, True)]
    for row in history:
        print(json.dumps(row))
    report = {"benchmark": "trending_attack",
              "command": "python -m benchmarks.trending_attack --bundle "
                         f"{args.bundle}", "bundle": str(args.bundle),
              "events_per_attack": EVENTS, "seed": 0, "cases": rows, "history": history,
              "guarded_cases_unchanged": all(r["top10_unchanged"] for r in rows if r["guard"]),
              "wall_s": round(time.perf_counter() - started, 1), "machine": describe()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
