"""The policy protocol end to end: a ranking model at a time cut, two simulators on disjoint
users, a policy trained in one and judged in the other against the baselines, and the same
policies judged on the logs (immediate metrics, off-policy estimates).

Per seed the users active before the cut are split in two halves: the training simulator is
fitted on one (80 % of it trains the policy, 20 % picks its iteration), the evaluation
simulator on the other, so the policy never meets the users, nor the model of them, it is
judged on.  The ranking model (the bundle) is trained once on every event before the cut.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtrec.data.imports import find_store
from mtrec.data.interactions import Prepared, prepare
from mtrec.data.split import DROPPED, TEST, TRAIN, VALID, SplitConfig, SplitError
from mtrec.data.store import Store
from mtrec.policy.agent import PolicyConfig, TrainedPolicy, train_policy
from mtrec.policy.env import EpisodeConfig, Pool
from mtrec.policy.evaluate import (
    BASELINES,
    calibration,
    immediate,
    interval,
    logged_targets,
    policy_scorer,
    return_check,
    simulate,
)
from mtrec.policy.labels import DAY, EngagementError, data_end, timed_events
from mtrec.policy.offpolicy import off_policy
from mtrec.policy.pool import candidate_pool, popularity_before
from mtrec.policy.simulator import SimulatorConfig, UserSimulator, fit_simulator
from mtrec.recommender import Recommender

LEARNED = "RL policy (REINFORCE)"


@dataclass(frozen=True)
class PolicyProtocol:
    horizon_days: int = 30  # the episode; the cut is the end of the data minus it
    return_days: tuple[int, ...] = (7, 30)  # simulated vs real return checks
    candidates: int = 100  # retrieved candidates the policy re-orders
    valid_days: float = 14.0  # the ranking model's validation window before the cut
    sim_users: int = 1000  # users simulated per evaluation (drawn with replacement)

    def __post_init__(self) -> None:
        if self.horizon_days < 1 or self.candidates < 10 or self.sim_users < 1:
            raise ValueError("horizon_days >= 1, candidates >= 10 and sim_users >= 1")
        if max(self.return_days) > self.horizon_days:
            raise ValueError(f"return_days {self.return_days} exceed the {self.horizon_days}"
                             "-day horizon")


PROTOCOLS = {
    "retailrocket": PolicyProtocol(),
    "taobao-ub": PolicyProtocol(horizon_days=3, return_days=(1, 3), valid_days=1.0),
}


def policy_cut(prepared: Prepared, protocol: PolicyProtocol) -> int:
    """The end of the data minus the horizon; an error when that leaves no history."""
    data = prepared.interactions
    idx = timed_events(data)
    end = data_end(data)
    cut = end - protocol.horizon_days * DAY
    if cut - protocol.valid_days * DAY <= int(data.ts[idx].min()):
        raise EngagementError(
            f"a {protocol.horizon_days}-day horizon and {protocol.valid_days} validation "
            f"days leave no training history (the data spans "
            f"{(end - data.ts[idx].min()) / DAY:.1f} days)")
    return cut


def prepare_policy(dataset: str, protocol: PolicyProtocol, root: Path | None = None,
                   store_dir: Path | None = None) -> tuple[Prepared, int]:
    """``dataset`` with no merged funnel spanning the cut, and the cut."""
    with Store.open(find_store(dataset, store_dir, root)) as store:
        split = SplitConfig("source")  # (keeps a shipped held-out part out of the way)
        try:
            first = prepare(store, dataset, split)
        except SplitError:  # no split of its own: every event, by time
            split = SplitConfig("temporal", 0.0, 0.0)
            try:
                first = prepare(store, dataset, split)
            except SplitError as exc:
                raise EngagementError(f"{dataset}: a policy needs event timestamps (column "
                                      f"'ts'): {exc}") from exc
        cut = policy_cut(first, protocol)
        valid = int(cut - protocol.valid_days * DAY)
        prepared = prepare(store, dataset, split, breaks=(valid, cut))
    return ranker_parts(prepared, cut, valid), cut


def ranker_parts(prepared: Prepared, cut: int, valid: int) -> Prepared:
    """Train before ``valid``, validation up to ``cut``, test after it; events without a
    timestamp dropped."""
    d = prepared.interactions
    keep = (d.part != DROPPED) & (d.ts >= 0)
    part = np.full(len(d), DROPPED, np.int8)
    part[keep & (d.ts < valid)] = TRAIN
    part[keep & (d.ts >= valid) & (d.ts < cut)] = VALID
    part[keep & (d.ts >= cut)] = TEST
    return replace(prepared, interactions=replace(d, part=part), protocol="policy-cut")


@dataclass
class World:
    """What every seed shares: the data, the cut, the ranking model's candidates."""

    prepared: Prepared
    cut: int
    protocol: PolicyProtocol
    pool: Pool  # every user active before the cut (sorted codes)

    @classmethod
    def build(cls, rec: Recommender, prepared: Prepared, cut: int,
              protocol: PolicyProtocol, cache: Path | None = None) -> World:
        """``cache``: an ``.npz`` file that keeps the candidates for the same users, cut
        and size (retrieving them is the slow part of a run)."""
        d = prepared.interactions
        users = np.unique(d.user[(d.ts >= 0) & (d.ts < cut) & (d.part != DROPPED)])
        key = np.array([cut, protocol.candidates, len(users), int(users.sum())])
        if cache is not None and cache.is_file():
            with np.load(cache) as z:
                if np.array_equal(z["key"], key):
                    return cls(prepared, cut, protocol, Pool(
                        users, z["codes"], z["features"], tuple(str(n) for n in z["names"])))
        pool = candidate_pool(rec, users, cut, protocol.candidates,
                              popularity_before(rec, cut))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, key=key, codes=pool.codes, features=pool.features,
                     names=np.array(pool.names))
        return cls(prepared, cut, protocol, pool)

    @property
    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(horizon=self.protocol.horizon_days)


def split_groups(users: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``users``: policy training, policy validation (both in the training
    simulator) and evaluation (its own simulator)."""
    perm = np.random.default_rng(seed).permutation(len(users))
    half = len(users) // 2
    train_sim, evaluation = perm[:half], perm[half:]
    n_valid = max(1, len(train_sim) // 5)
    return np.sort(train_sim[n_valid:]), np.sort(train_sim[:n_valid]), np.sort(evaluation)


def fit_policy(world: World, seed: int, sim_config: SimulatorConfig,
               policy_config: PolicyConfig) -> tuple[TrainedPolicy, UserSimulator, np.ndarray]:
    """The training simulator and the policy trained in it; and the evaluation rows."""
    tr, va, ev = split_groups(world.pool.users, seed)
    data = world.prepared.interactions
    sim = fit_simulator(data, world.pool.users[np.concatenate([tr, va])], world.cut,
                        replace(sim_config, seed=seed))
    # validation: the held-out training-simulator users, drawn up to the evaluation's
    # size (with replacement) so that picking the iteration is not decided by noise
    drawn = np.random.default_rng(seed + 1).choice(va, max(len(va), world.protocol.sim_users))
    trained = train_policy(sim, world.pool.take(tr), world.pool.take(np.sort(drawn)),
                           world.episode, replace(policy_config, seed=seed))
    return trained, sim, ev


def run_seed(world: World, seed: int, sim_config: SimulatorConfig,
             policy_config: PolicyConfig) -> dict[str, Any]:
    """One seed: train in one simulator, judge every policy in the other and on the logs."""
    started = time.perf_counter()
    trained, train_sim, ev = fit_policy(world, seed, sim_config, policy_config)
    data, episode = world.prepared.interactions, world.episode
    group = world.pool.take(ev)
    sim = fit_simulator(data, group.users, world.cut, replace(sim_config, seed=seed + 100))
    rng = np.random.default_rng(seed)
    drawn = group.take(np.sort(rng.choice(len(group.users), max(
        world.protocol.sim_users, len(group.users)), replace=True)))
    end = world.cut + world.protocol.horizon_days * DAY
    targets = logged_targets(data, group.users, world.cut, end)
    scorers = {LEARNED: policy_scorer(trained.policy),
               **{name: build(group) for name, build in BASELINES.items()}}
    policies = {}
    for name, scorer in scorers.items():
        policies[name] = {**simulate(sim, drawn, scorer, episode, seed=seed),
                          **immediate(sim, group, scorer, episode, targets)}
    default = scorers["retrieval order (next item)"]
    return {
        "seed": seed, "policies": policies,
        "off_policy": off_policy(sim, group, scorers, data, world.cut, episode, seed),
        "training": {"curve": trained.curve, "best_iteration": trained.best_iteration,
                     "seconds": round(trained.seconds, 1),
                     "weights": trained.policy.describe()},
        "simulator": {
            "calibration": calibration(sim, data, world.cut, end, seed),
            "returns": return_check(sim, group, default, episode, data,
                                    world.protocol.return_days, seed),
            "return_model": sim.returns.coef.round(4).tolist()},
        "users": {"train_simulator": len(train_sim.users),
                  "evaluation": len(group.users), "simulated": len(drawn.users)},
        "wall_seconds": round(time.perf_counter() - started, 1)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per policy and figure: mean and 95 % interval over seeds; and the learned policy's
    paired difference from greedy (same seed, same users, same random numbers)."""
    names = list(runs[0]["policies"])
    out: dict[str, Any] = {}
    for name in names:
        figures = runs[0]["policies"][name]
        out[name] = {f: interval([r["policies"][name][f] for r in runs]) for f in figures
                     if not f.startswith("users_")}
    greedy = "greedy (purchase)"
    gain = [r["policies"][LEARNED]["reward"] / r["policies"][greedy]["reward"] - 1
            for r in runs]
    ndcg = [r["policies"][LEARNED]["ndcg@10"] / r["policies"][greedy]["ndcg@10"] - 1
            for r in runs]
    return {"policies": out, "reward_gain_vs_greedy": interval(gain),
            "ndcg_change_vs_greedy": interval(ndcg)}


def describe(world: World, sim_config: SimulatorConfig, policy_config: PolicyConfig
             ) -> dict[str, Any]:
    return {"dataset": world.prepared.dataset, "cut": world.cut,
            "protocol": asdict(world.protocol), "episode": asdict(world.episode),
            "simulator": asdict(sim_config), "policy": asdict(policy_config),
            "users_before_cut": len(world.pool.users)}
