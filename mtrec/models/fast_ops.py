"""Two training kernels that were a third of a CPU step (profiled on Amazon Beauty).

- :class:`FastDropout`: ``nn.Dropout``'s ``bernoulli_`` draws one random number per element;
  here one 64-bit draw gives seven random bytes, each compared with ``round(p * 256)``.
  About 4 times faster on CPU; the drop rate is ``p`` rounded to 1/256 and the kept values are
  scaled by ``1 / (1 - p')`` so the expectation is unchanged.
- :func:`full_softmax_loss`: cross-entropy over the whole catalog without materialising the
  ``[T, N]`` log-softmax (and its bf16→fp32 copy and zero-filled NLL gradient): rows are
  processed in cache-sized chunks and the logits recomputed in the backward pass (a bf16
  matmul is cheap next to the elementwise passes it replaces).  About 2.8 times faster than
  ``F.cross_entropy`` on Beauty's shapes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

_BYTES = 7  # random bytes per int64 draw (``random_`` fills bits 0..62; the top byte is 7-bit)
_CHUNK = 128  # rows per chunk of the softmax loss (~6 MB of fp32 logits on a 12k catalog)


def dropout_keep(shape: torch.Size, p: float, device: torch.device | None = None
                 ) -> tuple[torch.Tensor, float]:
    """A bool ``shape`` tensor of the elements kept, each with probability ``1 - p'`` where
    ``p' = round(p * 256) / 256`` is the drop rate actually used, and ``1 / (1 - p')``, the
    scale of the kept elements.

    >>> keep, scale = dropout_keep(torch.Size([4, 1000]), 0.25)
    >>> keep.dtype, round(scale, 4), abs(float((~keep).float().mean()) - 0.25) < 0.03
    (torch.bool, 1.3333, True)
    """
    threshold = _threshold(p)
    n = shape.numel()
    words = torch.empty((n + _BYTES - 1) // _BYTES, dtype=torch.int64, device=device).random_()
    rand = words.view(torch.uint8).view(-1, 8)[:, :_BYTES].reshape(-1)[:n]
    return (rand >= threshold).view(shape), 256.0 / (256 - threshold)


def _threshold(p: float) -> int:
    threshold = round(p * 256)
    if not 0.0 <= p < 1.0 or threshold >= 256:
        raise ValueError(f"dropout probability must be in [0, 255.5/256) (rounded to 1/256 it "
                         f"must stay below 1), got {p}")
    return threshold


class FastDropout(nn.Module):
    """Drop-in for ``nn.Dropout`` (same ``p``, no parameters, identity in eval mode)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _threshold(p)  # checked here, not at the first forward
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or round(self.p * 256) == 0:
            return x
        keep, scale = dropout_keep(x.shape, self.p, x.device)
        # the scale multiplies x itself, so in bf16 each kept value is rounded once and the
        # expectation is not biased by a rounded scale
        return (x * keep).mul_(scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


M = TypeVar("M", bound=nn.Module)


def fast_dropouts(module: M) -> M:
    """Replace every ``nn.Dropout`` submodule of ``module`` by a :class:`FastDropout` of the
    same rate (in place; parameter names are unchanged); returns ``module``."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Dropout:
            setattr(module, name, FastDropout(child.p))
        else:
            fast_dropouts(child)
    return module


def full_softmax_loss(query: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                      scope: torch.Tensor | None = None,
                      scenario: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``query @ items.T`` (``[T, N]`` logits) against ``targets``
    (column indices), as ``F.cross_entropy`` computes it.  Under CPU/GPU autocast the matmuls
    run in the autocast dtype, the softmax in fp32.  With ``scope`` (``[N]``, each item's
    scenario, 0 = every one) and ``scenario`` (``[T]``), a row's softmax runs over the items
    of its scenario only.

    >>> q, it = torch.randn(5, 3), torch.randn(7, 3)
    >>> t = torch.tensor([0, 6, 2, 2, 1])
    >>> ref = torch.nn.functional.cross_entropy(q @ it.T, t)
    >>> bool(torch.isclose(full_softmax_loss(q, it, t), ref, atol=1e-5))
    True
    """
    if query.ndim != 2 or items.ndim != 2 or query.shape[1] != items.shape[1]:
        raise ValueError(f"query [T, d] and items [N, d] must share d, got "
                         f"{tuple(query.shape)} and {tuple(items.shape)}")
    if targets.shape != (query.shape[0],):
        raise ValueError(f"targets must be [T] = [{query.shape[0]}], got {tuple(targets.shape)}")
    device = query.device.type
    dtype = torch.promote_types(query.dtype, items.dtype)
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    with torch.autocast(device, enabled=False):
        loss: torch.Tensor = _FullSoftmax.apply(query.to(dtype), items.to(dtype), targets,
                                                scope, scenario)
    return loss


def out_of_scope(scope: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
    """``[T, N]``: which items (``scope`` ``[N]``, 0 = every scenario) lie outside the
    scenario of each row (``scenario`` ``[T]``).

    >>> out_of_scope(torch.tensor([0, 1, 2]), torch.tensor([1, 2])).tolist()
    [[False, False, True], [False, True, False]]
    """
    return (scope[None, :] != 0) & (scope[None, :] != scenario[:, None])


def _masked(logits: torch.Tensor, scope: torch.Tensor | None,
            scenario: torch.Tensor | None) -> torch.Tensor:
    """``logits`` with the items outside each row's scenario at -inf (in place)."""
    if scope is None or scenario is None:
        return logits
    return logits.masked_fill_(out_of_scope(scope, scenario), float("-inf"))


class _FullSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, query: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                scope: torch.Tensor | None, scenario: torch.Tensor | None) -> torch.Tensor:
        acc = torch.promote_types(query.dtype, torch.float32)
        lse = torch.empty(len(query), dtype=acc, device=query.device)
        picked = torch.empty_like(lse)
        for s in range(0, len(query), _CHUNK):
            logits = (query[s:s + _CHUNK] @ items.T).to(acc)
            picked[s:s + _CHUNK] = logits.gather(1, targets[s:s + _CHUNK, None]).squeeze(1)
            rows = None if scenario is None else scenario[s:s + _CHUNK]
            lse[s:s + _CHUNK] = torch.logsumexp(_masked(logits, scope, rows), 1)
        ctx.save_for_backward(query, items, targets, lse)
        ctx.scope, ctx.scenario = scope, scenario
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        query, items, targets, lse = ctx.saved_tensors
        rows = len(query)
        probs = torch.empty(rows, len(items), dtype=query.dtype, device=query.device)
        scale = grad.to(lse.dtype) / max(rows, 1)
        for s in range(0, rows, _CHUNK):
            p = (query[s:s + _CHUNK] @ items.T).to(lse.dtype)
            scen = None if ctx.scenario is None else ctx.scenario[s:s + _CHUNK]
            _masked(p, ctx.scope, scen).sub_(lse[s:s + _CHUNK, None]).exp_()
            p[torch.arange(len(p), device=p.device), targets[s:s + _CHUNK]] -= 1.0
            probs[s:s + _CHUNK] = p.mul_(scale)
        return probs @ items, probs.T @ query, None, None, None
