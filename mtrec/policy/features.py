"""What a ranking policy reads, computed the same way in the simulator and online.

Per candidate (:data:`FEATURES`): the ranking model's next-item log-probability and purchase
logit, the item's log popularity before the policy was trained, and its log rank by the
next-item score (the retrieval order).  Per user (:data:`mtrec.policy.simulator.STATE`):
days since the last active day, active days, items taken and whether the last active day
reached cart or purchase, purchases, and days since the first event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mtrec.data.schema import BEHAVIORS
from mtrec.policy.labels import DAY
from mtrec.policy.simulator import DEEP, STATE
from mtrec.rank.base import Step

FEATURES = ("next_item_log", "purchase_logit", "popularity_log", "retrieval_rank_log")
#: The task scores the features read (a policy needs a bundle with both tasks).
NEEDED_TASKS = ("next_item", "purchase")


def candidate_features(scores: Mapping[str, np.ndarray], popularity: np.ndarray,
                       codes: np.ndarray) -> np.ndarray:
    """``[C, len(FEATURES)]`` for candidates ``codes``.

    >>> f = candidate_features({"next_item": np.array([0.25, 0.5]),
    ...                         "purchase": np.array([0.2, 0.5])}, np.array([0, 3, 1]),
    ...                        np.array([1, 2]))
    >>> f.astype(float).round(3).tolist()
    [[-1.386, -1.386, 1.386, 0.693], [-0.693, 0.0, 0.693, 0.0]]
    """
    nxt = np.asarray(scores["next_item"], np.float64)
    rank = np.empty(len(nxt))
    rank[np.argsort(-nxt, kind="stable")] = np.arange(len(nxt))
    p = np.clip(np.asarray(scores["purchase"], np.float64), 1e-6, 1 - 1e-6)
    codes = np.asarray(codes, np.int64)
    pop = np.zeros(len(codes))
    known = codes < len(popularity)  # an item added since (served live): no popularity yet
    pop[known] = popularity[codes[known]]
    return np.stack([np.log(np.maximum(nxt, 1e-12)), np.log(p / (1 - p)), np.log1p(pop),
                     np.log1p(rank)], 1).astype(np.float32)


def check_tasks(tasks: Sequence[str]) -> None:
    missing = [t for t in NEEDED_TASKS if t not in tasks]
    if missing:
        raise ValueError(f"a ranking policy reads the {' and '.join(NEEDED_TASKS)} scores; "
                         f"this bundle's model lacks {', '.join(missing)} (its tasks: "
                         f"{', '.join(tasks)})")


def state_from_steps(steps: Sequence[Step], now: float) -> np.ndarray:
    """``[1, len(STATE)]`` raw user state at ``now`` (unix seconds) from a history; steps
    without a timestamp count as one active day before ``now``.

    >>> s = [Step(1, 1, 1, 0), Step(2, 1 << BEHAVIORS.index("purchase"), 1, DAY + 5)]
    >>> state_from_steps(s, 3 * DAY).tolist()
    [[2.0, 2.0, 1.0, 1.0, 1.0, 3.0]]
    """
    if not steps:
        return np.zeros((1, len(STATE)))
    ts = np.array([s.ts for s in steps], np.float64)
    ts = np.where(ts >= 0, ts, now - DAY)
    day = np.floor(ts / DAY)
    last = day == day.max()
    bits = np.array([s.bits for s in steps], np.int64)
    deep = sum(1 << BEHAVIORS.index(b) for b in DEEP)
    bought = (bits & (1 << BEHAVIORS.index("purchase"))) != 0
    today = np.floor(now / DAY)
    return np.array([[max(1.0, today - day.max()), len(np.unique(day)), float(last.sum()),
                      float(((bits[last] & deep) != 0).any()), float(bought.sum()),
                      max(1.0, today - day.min())]])
