"""Users' histories while serving: the bundle's, extended by the events posted since.

Events extend a user's sequence in memory once the API layer has stored them durably.  A
known user whose history is still the bundle's is served from a precomputed tower state
(``serve/user_states.py``) when there is one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mtrec.data.schema import BEHAVIORS
from mtrec.rank.base import Step
from mtrec.recommender import Recommender
from mtrec.serve.records import Event


class Histories:
    def __init__(self, rec: Recommender) -> None:
        self.rec = rec
        self.online: dict[str, list[Step]] = defaultdict(list)
        d = rec.batcher.data
        # What a session item or an event without a scenario looks like: the commonest kind
        # of training interaction (a rating-only dataset never saw a bare "view").
        self.session_bits = int(np.bincount(d.behaviors).argmax()) if len(d.item) else 1

    def knows(self, user: str) -> bool:
        return self.rec.knows_user(user) or user in self.online

    def in_bundle(self, user: str) -> int | None:
        """The user's bundle code, or None for a user the bundle does not know."""
        return self.rec._user_code.get(user)

    def changed(self, user: str) -> bool:
        """Whether events were posted for ``user`` since the bundle."""
        return bool(self.online.get(user))

    def of(self, user: str) -> list[Step]:
        """The user's interactions, oldest first: the bundle's, then those posted since."""
        base = self.rec.steps(user) if self.rec.knows_user(user) else []
        return base + self.online.get(user, [])

    def session(self, codes: Sequence[int], scenario: int) -> list[Step]:
        """An anonymous session of items, as the commonest kind of training interaction."""
        return [Step(int(c), self.session_bits, scenario) for c in codes]

    def add(self, event: Event, code: int, scenario: int) -> None:
        bits = 1 << BEHAVIORS.index(event.behavior)
        ts = int(event.ts) if event.ts is not None else int(time.time())
        self.online[event.user_id].append(Step(code, bits, scenario, ts))
