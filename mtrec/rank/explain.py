"""``explain``: for each of the top ``k``, the history items most like it ("because you
...": cosine of item-tower vectors over the latest 50 distinct history items)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import numpy as np

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


class Explain:
    name: ClassVar[str] = "explain"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {"top": 3, "recent": 50})

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        shown = candidates.codes[:request.k]
        history = [s.code for s in request.history]
        recent = np.fromiter(dict.fromkeys(reversed(history)), dtype=np.int64)
        recent = recent[:int(self.options["recent"])]
        if not len(recent) or not len(shown):
            return replace(candidates, because=((),) * len(candidates))
        rows = context.vectors.numpy()[np.concatenate([shown, recent])].astype(np.float32)
        rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-8)
        sims = rows[:len(shown)] @ rows[len(shown):].T  # [shown, recent]
        order = np.argsort(-sims, axis=1, kind="stable")[:, :int(self.options["top"])]
        codes = recent[order].tolist()
        values = sims[np.arange(len(shown))[:, None], order].tolist()
        because = tuple(tuple(zip(c, v, strict=True)) for c, v in zip(codes, values, strict=True))
        return replace(candidates, because=because + ((),) * (len(candidates) - len(shown)))
