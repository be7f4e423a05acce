"""Distributed helpers: one code path for a single process and for ``torchrun``.

``torchrun --nproc_per_node 2 -m mtrec.cli train ...`` sets ``WORLD_SIZE``/``RANK``; the
process group uses gloo (training runs on the CPU; GPU placement is not built yet).  Each
global batch of users is split across ranks by striding (``batch[rank::world]``), so the
union of the ranks' batches is exactly the single-process batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mtrec.models.model import MultiTaskRecommender
from mtrec.train.loss import MultiTaskLoss


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def context() -> DistContext:
    """The current process group, initialised from torchrun's environment when present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group("gloo")  # the model stays on the CPU
    return DistContext(dist.get_rank(), dist.get_world_size())



def wrap(model: MultiTaskRecommender, ctx: DistContext,
         adversarial: tuple[float, float] | None = None,
         objective: nn.Module | None = None) -> nn.Module:
    """The module a training step calls: ``objective`` (a loss module around ``model``,
    e.g. pre-training's) or the model's task losses, in DDP when several processes run."""
    engine: nn.Module = objective if objective is not None else MultiTaskLoss(model, adversarial)
    if ctx.active:
        engine = nn.parallel.DistributedDataParallel(engine, find_unused_parameters=True)
    return engine


def sampler(users: np.ndarray, ctx: DistContext, seed: int, epoch: int, batch_size: int,
            lengths: np.ndarray | None = None, bucket: int = 50) -> list[np.ndarray]:
    """This rank's users for every step of ``epoch`` (the same plan on every rank).

    With ``lengths``, users are shuffled, then sorted by length within windows of
    ``bucket`` batches so that a batch pads little, and the batches are shuffled again.

    >>> [b.tolist() for b in sampler(np.arange(4), DistContext(0, 2), 0, 1, 4)]
    [[3, 2]]
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(users)
    batches = []
    window = batch_size * bucket if lengths is not None else len(order) or 1
    for w in range(0, len(order), window):
        chunk = order[w:w + window]
        if lengths is not None:
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return [b[ctx.rank::ctx.world] for b in batches if len(b) >= ctx.world]


def all_reduce_mean(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Average tensors (e.g. the weighting's gradients) over ranks, in place."""
    if ctx.active:
        for t in tensors:
            dist.all_reduce(t)
            t /= ctx.world


def broadcast_float(value: float, ctx: DistContext) -> float:
    if not ctx.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()
