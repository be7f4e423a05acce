"""``policy``: the ranking policy trained for long-term value re-orders the candidates.

Not a configured stage: a bundle with a trained policy (``mtrec policy train``) runs it when
a request asks for it (``RankRequest.policy``; ``"policy": true`` on ``/v1/recommend``),
after the configured stages that select and blend and before ``explain``.  It reads the
same features as in the simulator it was trained in (:mod:`mtrec.policy.features`); the
"shown before" feature is 0 online (the service does not log impressions).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch

from mtrec.policy.agent import SlatePolicy
from mtrec.policy.features import FEATURES, candidate_features, check_tasks, state_from_steps
from mtrec.policy.simulator import STATE, state_features
from mtrec.rank.base import Candidates, RankContext, RankRequest


class PolicyStage:
    name: ClassVar[str] = "policy"

    def __init__(self, policy: SlatePolicy, popularity: np.ndarray,
                 info: dict[str, Any] | None = None) -> None:
        """``info``: the policy's ``policy.json``; its ``user_high`` (the user inputs' upper
        bounds in training) and ``candidates`` (the retrieval depth it was trained on) clip
        what it reads online, so a live request never feeds it values it never saw."""
        self.policy, self.popularity = policy, popularity
        info = info or {}
        self.user_high = np.asarray(info.get("user_high", [np.inf] * (len(STATE) + 1)))
        depth = info.get("protocol", {}).get("candidates")
        self.rank_high = np.log1p(depth - 1) if depth else np.inf

    def scores(self, request: RankRequest, candidates: Candidates,
               now: float | None = None) -> np.ndarray:
        """The policy's score of each candidate for ``request``'s user at ``now``."""
        feats = candidate_features(candidates.scores, self.popularity, candidates.codes)
        rank = FEATURES.index("retrieval_rank_log")
        feats[:, rank] = np.minimum(feats[:, rank], self.rank_high)
        items = np.concatenate([feats, np.zeros((len(feats), 1), np.float32)], 1)
        steps = list(request.history)
        stamps = [s.ts for s in steps if s.ts >= 0]
        clock = max([time.time() if now is None else now, *stamps])
        raw = state_from_steps(steps, clock)
        user = np.minimum(np.hstack([state_features(raw), np.zeros((1, 1))]),
                          self.user_high).astype(np.float32)
        with torch.no_grad():
            s = self.policy.scores(torch.from_numpy(items)[None], torch.from_numpy(user),
                                   torch.ones(1, len(items), dtype=torch.bool))
        return s[0].numpy().astype(np.float64)

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        if candidates.cold_start or not len(candidates):
            return candidates  # trending answers: nothing the policy can read
        check_tasks(context.tasks)
        total = self.scores(request, candidates)
        order = np.argsort(-total, kind="stable")
        return replace(candidates, total=total).take(order)
