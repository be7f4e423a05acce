"""Synthetic timestamped logs with a planted engagement answer.

Half the users are loyal (active on about 60 % of all days), half churn (active the same
way from their start until a churn day drawn uniformly over the span, then never again).
At a cut, a loyal user comes back within a week almost surely and a churned one never:
recency alone separates them, so a model that reads the history must rank returns well.
"""

from __future__ import annotations

import numpy as np

from mtrec.data.interactions import Catalog, Interactions, Prepared
from mtrec.data.schema import BEHAVIORS
from mtrec.data.split import TRAIN
from mtrec.policy.labels import DAY

START = 1_600_000_000


def engagement_logs(n_users: int = 200, n_items: int = 40, days: int = 60,
                    seed: int = 0) -> Prepared:
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, int, int]] = []  # user, item, ts, behaviour bits
    view, purchase = 1 << BEHAVIORS.index("view"), 1 << BEHAVIORS.index("purchase")
    for u in range(n_users):
        loyal = u % 2 == 0
        start = int(rng.integers(0, 10))
        stop = days if loyal else int(rng.integers(start + 3, days))
        taste = rng.integers(0, 4)
        for day in range(start, stop):
            if rng.random() > 0.6:
                continue
            for _ in range(int(rng.integers(1, 4))):
                item = 1 + int(taste * (n_items // 4) + rng.integers(0, n_items // 4))
                ts = START + day * DAY + int(rng.integers(0, DAY))
                rows.append((u, item, ts, view | (purchase if rng.random() < 0.2 else 0)))
    rows.sort(key=lambda r: (r[0], r[2]))
    arr = np.array(rows, dtype=np.int64)
    users = arr[:, 0]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
    data = Interactions(user=users, item=arr[:, 1], behaviors=arr[:, 3],
                        scenario=np.ones(len(arr), np.int64),
                        rating=np.full(len(arr), np.nan, np.float32), ts=arr[:, 2],
                        part=np.full(len(arr), TRAIN, np.int8), offsets=offsets.astype(np.int64))
    catalog = Catalog(np.array(["", *(f"i{k}" for k in range(1, n_items + 1))], dtype=object),
                      [""] * (n_items + 1), np.array([f"u{u}" for u in range(n_users)],
                                                     dtype=object), ("", "default"))
    return Prepared("engagement-logs", "temporal", catalog, data, {})
