"""Multi-task loss weighting: fixed, uncertainty, GradNorm and DWA, chosen by config.

A :class:`TaskWeighting` turns a dict of scalar task losses into the scalar total that the trainer
calls ``backward`` on. The trainer's loop is expected to be::

    optimizer.zero_grad()
    total = weighting.combine(losses, shared=shared_params)
    total.backward()
    optimizer.step()
    weighting.after_step()
    ...  # at the end of every epoch:
    weighting.end_epoch(mean_losses)

Learnable weighting parameters are ``nn.Parameter`` s of the weighting module, so the optimizer
picks them up via ``weighting.parameters()``. All per-run state lives in the module (parameters,
buffers or extra state), so it is saved and restored with ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtrec.run_config import WeightingConfig


class TaskWeighting(nn.Module):
    """Base class: combines per-task scalar losses into one total loss."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks: tuple[str, ...] = tuple(tasks)

    def combine(
        self, losses: dict[str, Tensor], shared: Sequence[nn.Parameter] | None = None
    ) -> Tensor:
        """Return the scalar total loss; ``losses`` must hold one scalar per task."""
        raise NotImplementedError

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        """Called once per epoch with each task's mean training loss (no-op by default)."""

    def after_step(self) -> None:
        """Called after ``optimizer.step()`` (no-op by default)."""

    def current_weights(self) -> dict[str, float]:
        """The weight each task currently gets, for logging."""
        raise NotImplementedError

    def _ordered(self, losses: dict[str, Tensor]) -> list[Tensor]:
        """The losses in task order, after checking the names and that each is a scalar."""
        if set(losses) != set(self.tasks):
            missing = sorted(set(self.tasks) - set(losses))
            extra = sorted(set(losses) - set(self.tasks))
            raise ValueError(
                f"losses do not match tasks {self.tasks}: missing {missing}, unknown {extra}"
            )
        for name, loss in losses.items():
            if loss.numel() != 1:
                raise ValueError(f"loss of task {name!r} must be a scalar, got {tuple(loss.shape)}")
        return [losses[name].reshape(()) for name in self.tasks]


class FixedWeighting(TaskWeighting):
    """``sum_i w_i * L_i`` with constant weights."""

    def __init__(self, tasks: Sequence[str], weights: Sequence[float]) -> None:
        super().__init__(tasks)
        self.weights = tuple(float(w) for w in weights)

    def combine(
        self, losses: dict[str, Tensor], shared: Sequence[nn.Parameter] | None = None
    ) -> Tensor:
        ordered = self._ordered(losses)
        return torch.stack([w * loss for w, loss in zip(self.weights, ordered, strict=True)]).sum()

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights, strict=True))


class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Learns ``s_i = log sigma_i^2`` (initialised to 0) and returns ``sum_i exp(-s_i) L_i + s_i``.
    The paper uses ``1/(2 sigma^2) L + log sigma`` for regression and ``1/sigma^2 L + log sigma``
    for classification; we use the same form for every task, which only rescales ``sigma`` (by a
    constant factor per task) and has the same minimiser in the model parameters. At the optimum
    ``exp(s_i)`` equals the task's loss, so ``current_weights`` (``exp(-s_i)``) is its inverse.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def combine(
        self, losses: dict[str, Tensor], shared: Sequence[nn.Parameter] | None = None
    ) -> Tensor:
        ordered = self._ordered(losses)
        terms = [torch.exp(-s) * loss + s for s, loss in zip(self.log_vars, ordered, strict=True)]
        return torch.stack(terms).sum()

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach()).tolist(), strict=True))


class GradNormWeighting(TaskWeighting):
    """GradNorm (Chen et al., ICML 2018): learn weights that balance the tasks' gradient norms.

    ``combine`` sets ``weights.grad`` from the GradNorm loss ``sum_i |G_i - target_i|`` and returns
    ``sum_i w_i.detach() L_i``, so the model's backward leaves that gradient alone. ``G_i`` is
    ``w_i * ||grad_W L_i||`` over the shared parameters ``W``; ``target_i`` is
    ``mean(G) * r_i ** alpha`` (detached) with ``r_i`` the relative inverse training rate against
    the losses recorded at the first call (kept in the ``initial_losses`` buffer; all zeros means
    not yet recorded). ``after_step`` renormalises the weights to sum to the number of tasks.
    Under ``torch.no_grad()`` (e.g. validation) it just returns the weighted sum.
    """

    def __init__(self, tasks: Sequence[str], weights: Sequence[float], alpha: float) -> None:
        super().__init__(tasks)
        self.alpha = alpha
        self.weights = nn.Parameter(torch.tensor([float(w) for w in weights]))
        self.initial_losses: Tensor
        self.register_buffer("initial_losses", torch.zeros(len(self.tasks)))

    def combine(
        self, losses: dict[str, Tensor], shared: Sequence[nn.Parameter] | None = None
    ) -> Tensor:
        ordered = self._ordered(losses)
        weights = self.weights.to(ordered[0].device)
        total = torch.stack([w * loss for w, loss in zip(weights.detach(), ordered, strict=True)])
        if not torch.is_grad_enabled():
            return total.sum()
        if shared is None:
            raise ValueError(
                "GradNorm needs the shared parameters (the last shared layer) to "
                "measure each task's gradient norm; pass shared=[...] to combine"
            )
        params = [p for p in shared if p.requires_grad]
        norms = torch.stack([self._grad_norm(loss, params) for loss in ordered])
        detached = torch.stack(ordered).detach()
        initial = self.initial_losses
        if not bool(initial.any()):
            initial.copy_(detached.to(initial))
        ratios = detached / initial.to(detached).clamp_min(1e-12)
        inverse_rate = ratios / ratios.mean().clamp_min(1e-12)
        grad_norms = self.weights * norms.to(self.weights)
        target = (grad_norms.mean() * inverse_rate.to(grad_norms) ** self.alpha).detach()
        gradnorm_loss = (grad_norms - target).abs().sum()
        (self.weights.grad,) = torch.autograd.grad(gradnorm_loss, [self.weights])
        return total.sum()

    @staticmethod
    def _grad_norm(loss: Tensor, params: list[nn.Parameter]) -> Tensor:
        """``||grad_W loss||`` over ``params``, keeping the graph for the model's backward."""
        if not loss.requires_grad or not params:
            return torch.zeros((), device=loss.device)
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        squares = [g.detach().pow(2).sum() for g in grads if g is not None]
        if not squares:
            return torch.zeros((), device=loss.device)
        return torch.stack(squares).sum().sqrt()

    def after_step(self) -> None:
        with torch.no_grad():
            self.weights.clamp_(min=1e-3)
            self.weights.mul_(len(self.tasks) / self.weights.sum())

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights.detach().tolist(), strict=True))


class DWAWeighting(TaskWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    Weights are constant within an epoch. After two ``end_epoch`` calls, with
    ``r_i = L_i(t-1) / L_i(t-2)`` from the last two epochs' mean losses,
    ``w_i = K * softmax(r / T)_i``; before that every weight is 1.0. A task whose loss falls
    slowly gets a larger weight.
    """

    def __init__(self, tasks: Sequence[str], temperature: float) -> None:
        super().__init__(tasks)
        self.temperature = temperature
        self.history: list[list[float]] = []
        self.weights = [1.0] * len(self.tasks)

    def combine(
        self, losses: dict[str, Tensor], shared: Sequence[nn.Parameter] | None = None
    ) -> Tensor:
        ordered = self._ordered(losses)
        return torch.stack([w * loss for w, loss in zip(self.weights, ordered, strict=True)]).sum()

    def end_epoch(self, mean_losses: dict[str, float]) -> None:
        missing = sorted(set(self.tasks) - set(mean_losses))
        if missing:
            raise ValueError(f"end_epoch is missing the mean losses of tasks {missing}")
        self.history = [*self.history, [float(mean_losses[t]) for t in self.tasks]][-2:]
        if len(self.history) < 2:
            return
        previous, last = (torch.tensor(h, dtype=torch.float64) for h in self.history)
        ratios = last / previous.clamp_min(1e-12)
        weights = len(self.tasks) * torch.softmax(ratios / self.temperature, dim=0)
        self.weights = weights.tolist()

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.weights, strict=True))

    def get_extra_state(self) -> Any:
        return {"history": self.history, "weights": self.weights}

    def set_extra_state(self, state: Any) -> None:
        self.history = [list(h) for h in state["history"]]
        self.weights = list(state["weights"])


def build_weighting(config: WeightingConfig, tasks: Sequence[str]) -> TaskWeighting:
    """Build the weighting that ``config.kind`` names for ``tasks``."""
    tasks = tuple(tasks)
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be non-empty and distinct, got {tasks}")
    given = dict(config.weights)
    unknown = sorted(set(given) - set(tasks))
    if unknown:
        raise ValueError(f"weights name unknown tasks {unknown}; known tasks: {list(tasks)}")
    weights = [given.get(task, 1.0) for task in tasks]
    if config.kind == "fixed":
        return FixedWeighting(tasks, weights)
    if config.kind == "uncertainty":
        return UncertaintyWeighting(tasks)
    if config.kind == "gradnorm":
        if min(weights) <= 0:
            raise ValueError(f"GradNorm initial weights must be > 0, got {given}")
        return GradNormWeighting(tasks, weights, config.gradnorm_alpha)
    return DWAWeighting(tasks, config.dwa_temperature)
