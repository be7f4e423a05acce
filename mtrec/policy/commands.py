"""``mtrec policy train`` and ``mtrec policy eval`` as functions (the CLI and the benchmark
call these).

``train``: the ranking model at the policy cut (a bundle, trained unless ``out`` already has
one), the training simulator on one half of the users, the policy trained in it, written into
the bundle with its training curve and the simulator's validation.  ``evaluate``: for each
seed, a fresh split of the users, a policy trained in that seed's training simulator and
every policy judged in the other simulator and on the logs (:func:`run_seed`); each seed's
result is cached next to the output, so a killed evaluation resumes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtrec.data.interactions import Prepared
from mtrec.data.split import TRAIN, VALID
from mtrec.policy.agent import PolicyConfig
from mtrec.policy.evaluate import BASELINES, calibration, return_check
from mtrec.policy.experiment import (
    LEARNED,
    PROTOCOLS,
    PolicyProtocol,
    World,
    describe,
    fit_policy,
    prepare_policy,
    run_seed,
    summarize,
)
from mtrec.policy.features import check_tasks
from mtrec.policy.labels import DAY
from mtrec.policy.pool import popularity_before
from mtrec.policy.simulator import SimulatorConfig, state_features
from mtrec.policy.store import load_policy, save_policy
from mtrec.recommender import Recommender
from mtrec.run_config import load_run_config
from mtrec.train.run import train_run

# bumped when the simulator's or the evaluation's behaviour changes: cached seeds rerun
# (2: a session is the user's own browsing plus the slate; per-user common random numbers)
CODE = 2


def _world(dataset: str, bundle: Path, protocol: PolicyProtocol, root: Path | None,
           store_dir: Path | None, seed: int, ranker: dict[str, Any] | None = None
           ) -> tuple[World, Recommender]:
    prepared, cut = prepare_policy(dataset, protocol, root, store_dir)
    if not (bundle / "config.json").is_file():
        _train_ranker(prepared, bundle, seed, ranker or {}, root, store_dir)
    rec = Recommender.load(bundle)
    check_tasks(rec.tasks)
    _check_ranker(rec, bundle, dataset, prepared, cut)
    # the candidates depend on the ranking model: a retrained bundle starts a new cache
    stamp = (bundle / "model.safetensors").stat().st_mtime_ns
    cache = bundle / "policy" / f"pool-{stamp}.npz"
    return World.build(rec, prepared, cut, protocol, cache), rec


def _check_ranker(rec: Recommender, bundle: Path, dataset: str, prepared: Prepared,
                  cut: int) -> None:
    """A ranking model trained by this protocol at this cut on this dataset: anything else
    (a bundle of `mtrec train`) has seen the events after the cut, and would leak them into
    the candidates, the features and the immediate metrics."""
    if rec.meta.get("dataset") != dataset:
        raise ValueError(f"{bundle}: a bundle of {rec.meta.get('dataset')!r}, not {dataset!r}")
    if rec.meta.get("protocol") != "policy-cut":
        raise ValueError(f"{bundle}: a bundle of the {rec.meta.get('protocol')!r} protocol; "
                         "a policy needs a ranking model trained before its cut: give an "
                         "empty --out and `mtrec policy train` trains one")
    d = rec.batcher.data
    fitted = (d.part == TRAIN) | (d.part == VALID)
    if (d.ts[fitted] >= cut).any() or len(rec.catalog.user_ids) != len(
            prepared.catalog.user_ids):
        raise ValueError(f"{bundle}: its ranking model was trained on other data or another "
                         f"cut than {dataset}'s at {cut} (events after the cut, or other "
                         "users): retrain it in an empty --out")


def _train_ranker(prepared: Prepared, out: Path, seed: int, overrides: dict[str, Any],
                  root: Path | None, store_dir: Path | None) -> None:
    """Next item and purchase, on the events before the cut (validation: its last days);
    ``overrides``: run-config keys over these defaults (``config``: a TOML/JSON file)."""
    file = overrides.pop("config", None)
    config = load_run_config(file, **{
        "data.dataset": prepared.dataset, "model.tasks": ["next_item", "purchase"],
        "model.item.use_text": bool(any(prepared.catalog.texts)),
        "model.task_options.next_item_loss": "sampled",
        "train.metric": "next_item/ndcg@10", "train.patience": 10, "train.seed": seed,
        **overrides})
    print(f"training the ranking model at the cut into {out}", file=sys.stderr, flush=True)
    train_run(config, out, root=root, store_dir=store_dir, prepared=prepared)


def train(dataset: str, out: Path, seed: int = 0, iterations: int = 60,
          root: Path | None = None, store_dir: Path | None = None,
          protocol: PolicyProtocol | None = None, ranker: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """``protocol``: default the dataset's in :data:`PROTOCOLS` (else a 30-day horizon)."""
    started = time.perf_counter()
    protocol = protocol or PROTOCOLS.get(dataset, PolicyProtocol())
    world, rec = _world(dataset, out, protocol, root, store_dir, seed, ranker)
    sim_config, policy_config = SimulatorConfig(), PolicyConfig(iterations=iterations)
    trained, sim, _ = fit_policy(world, seed, sim_config, policy_config)
    data = world.prepared.interactions
    end = world.cut + protocol.horizon_days * DAY
    users = world.pool.take(world.pool.users.searchsorted(sim.users))
    default = BASELINES["retrieval order (next item)"](users)
    validation = {"calibration": calibration(sim, data, world.cut, end, seed),
                  "returns": return_check(sim, users, default, world.episode, data,
                                          protocol.return_days, seed)}
    high = np.hstack([state_features(sim.start).max(0), [1.0]])  # (+ the day's share)
    meta = {**describe(world, sim_config, policy_config), "seed": seed,
            "user_high": high.round(4).tolist(),
            "curve": trained.curve, "best_iteration": trained.best_iteration,
            "weights": trained.policy.describe(), "simulator_validation": validation,
            "train_seconds": round(trained.seconds, 1)}
    save_policy(out, trained.policy, popularity_before(rec, world.cut), meta)
    return {"bundle": str(out), "dataset": dataset, "cut": world.cut,
            "best_iteration": trained.best_iteration, "weights": meta["weights"],
            "valid_reward": max(r["valid_reward"] for r in trained.curve
                                if r["valid_reward"] == r["valid_reward"]),
            "simulator_validation": validation,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def evaluate(bundle: Path, seeds: tuple[int, ...], out: Path | None = None,
             root: Path | None = None, store_dir: Path | None = None,
             sim_users: int | None = None, iterations: int | None = None) -> dict[str, Any]:
    """The protocol over ``seeds`` for the policy trained into ``bundle``."""
    _, _, info = load_policy(bundle)  # (refuses a bundle without a policy)
    protocol = PolicyProtocol(**{**info["protocol"],
                                 "return_days": tuple(info["protocol"]["return_days"])})
    if sim_users:
        protocol = replace(protocol, sim_users=sim_users)
    world, _ = _world(info["dataset"], bundle, protocol, root, store_dir, 0)
    if world.cut != info["cut"]:
        raise ValueError(f"{bundle}: the data's cut moved ({world.cut}, the policy's was "
                         f"{info['cut']}): the dataset changed since `mtrec policy train`")
    sim_config = SimulatorConfig(**info["simulator"])
    policy_config = PolicyConfig(**info["policy"])
    if iterations:
        policy_config = replace(policy_config, iterations=iterations)
    ranker = hashlib.sha256((bundle / "model.safetensors").read_bytes()).hexdigest()[:16]
    cache = (out or bundle / "policy" / "eval.json").with_suffix(".seeds")
    cache.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        file = cache / f"seed-{seed}.json"
        key = {"protocol": asdict(protocol), "policy": asdict(policy_config),
               "simulator": asdict(sim_config), "ranker": ranker, "code": CODE}
        if file.is_file() and json.loads(file.read_text()).get("key") == key:
            runs.append(json.loads(file.read_text())["run"])
            continue
        print(f"seed {seed}: training a policy and judging it", file=sys.stderr, flush=True)
        run = run_seed(world, seed, sim_config, policy_config)
        file.write_text(json.dumps({"key": key, "run": run}, default=float))
        runs.append(run)
    result = {**describe(world, sim_config, policy_config), "seeds": list(seeds),
              "summary": summarize(runs), "runs": runs, "learned": LEARNED}
    target = out or bundle / "policy" / "eval.json"
    target.write_text(json.dumps(result, indent=1, default=float))
    return result
