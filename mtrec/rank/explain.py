"""``explain``: for each of the top ``k``, the history items most like it ("because you
...": cosine of item-tower vectors over the latest 50 distinct history items)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.rank.base import Candidates, RankContext, RankRequest, read_options


class Explain:
    name: ClassVar[str] = "explain"

    def __init__(self, options: Mapping[str, float]) -> None:
        self.options = read_options(self.name, options, {"top": 3, "recent": 50})

    def rank(self, request: RankRequest, candidates: Candidates,
             context: RankContext) -> Candidates:
        shown = candidates.codes[:request.k].tolist()
        history = [s.code for s in request.history]
        recent = list(dict.fromkeys(reversed(history)))[:int(self.options["recent"])]
        if not recent or not shown:
            return replace(candidates, because=((),) * len(candidates))
        vectors = F.normalize(context.vectors[torch.tensor([*shown, *recent])].float(),
                              dim=-1, eps=1e-8).numpy()
        sims = vectors[:len(shown)] @ vectors[len(shown):].T  # [shown, recent]
        order = np.argsort(-sims, axis=1, kind="stable")[:, :int(self.options["top"])]
        codes = np.asarray(recent)[order].tolist()
        values = np.take_along_axis(sims, order, 1).tolist()
        because = tuple(tuple(zip(c, v, strict=True)) for c, v in zip(codes, values, strict=True))
        return replace(candidates, because=because + ((),) * (len(candidates) - len(shown)))
