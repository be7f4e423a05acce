"""Tests for multi-task loss weighting, each against a planted, known answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtrec.train.weighting import (
    DWAWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    WeightingConfig,
    build_weighting,
)


def test_fixed_is_weighted_sum() -> None:
    config = WeightingConfig(kind="fixed", weights=(("ctr", 2.0), ("cvr", 0.5)))
    weighting = build_weighting(config, ["ctr", "cvr", "rating"])
    losses = {"ctr": torch.tensor(1.5), "cvr": torch.tensor(4.0), "rating": torch.tensor(0.25)}
    total = weighting.combine(losses)
    assert total.shape == ()
    assert total.item() == pytest.approx(2.0 * 1.5 + 0.5 * 4.0 + 1.0 * 0.25)
    assert weighting.current_weights() == {"ctr": 2.0, "cvr": 0.5, "rating": 1.0}
    assert list(weighting.parameters()) == []


def test_unknown_task_in_weights() -> None:
    config = WeightingConfig(weights=(("ctr", 2.0), ("typo", 1.0)))
    with pytest.raises(ValueError, match=r"typo.*known tasks.*ctr"):
        build_weighting(config, ["ctr", "cvr"])


def test_bad_kind() -> None:
    with pytest.raises(ValueError, match=r"'magic'.*fixed.*uncertainty.*gradnorm.*dwa"):
        WeightingConfig(kind="magic")


def test_losses_must_match_tasks() -> None:
    weighting = build_weighting(WeightingConfig(), ["a", "b"])
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        weighting.combine({"a": torch.tensor(1.0)})


def test_uncertainty_learns_noise_variances() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=gen)
    coef = torch.tensor([[1.0], [-2.0], [0.5]])
    noise_std = {"quiet": 0.1, "noisy": 1.0}
    targets = {t: x @ coef + s * torch.randn(256, 1, generator=gen) for t, s in noise_std.items()}
    torch.manual_seed(0)
    heads = nn.ModuleDict({t: nn.Linear(3, 1) for t in noise_std})
    weighting = build_weighting(WeightingConfig(kind="uncertainty"), list(noise_std))
    assert isinstance(weighting, UncertaintyWeighting)
    assert weighting.current_weights() == {"quiet": 1.0, "noisy": 1.0}
    params = [*heads.parameters(), *weighting.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.1)
    for _ in range(250):
        optimizer.zero_grad()
        losses = {t: ((heads[t](x) - targets[t]) ** 2).mean() for t in noise_std}
        weighting.combine(losses).backward()
        optimizer.step()
    variances = {t: 1.0 / w for t, w in weighting.current_weights().items()}
    assert variances["noisy"] / variances["quiet"] > 10
    for task, std in noise_std.items():
        mse = ((heads[task](x) - targets[task]) ** 2).mean().item()
        assert mse == pytest.approx(std**2, rel=0.3)
        assert mse / 1.5 < variances[task] < mse * 1.5


def test_gradnorm_single_step_gradient() -> None:
    """At the first call r_i = 1, so d loss / d w_i = sign(G_i - mean G) * ||grad L_i||."""
    shared = nn.Parameter(torch.tensor([1.0, 2.0]))
    losses = {"a": (shared * torch.tensor([3.0, 0.0])).sum(), "b": (shared**2).sum()}
    weighting = build_weighting(WeightingConfig(kind="gradnorm"), ["a", "b"])
    assert isinstance(weighting, GradNormWeighting)
    total = weighting.combine(losses, shared=[shared])
    assert total.item() == pytest.approx(3.0 + 5.0)
    grad = weighting.weights.grad
    assert grad is not None
    # ||grad L_a|| = 3, ||grad L_b|| = ||(2, 4)|| = sqrt(20) > 3
    assert grad.tolist() == pytest.approx([-3.0, math.sqrt(20.0)])
    total.backward()  # the model's backward does not touch the weights' gradient
    assert grad is weighting.weights.grad
    assert grad.tolist() == pytest.approx([-3.0, math.sqrt(20.0)])
    assert shared.grad is not None
    assert shared.grad.tolist() == pytest.approx([3.0 + 2.0, 4.0])


def test_gradnorm_downweights_large_loss() -> None:
    """Two identical tasks, B's loss scaled by 10: balanced gradients need w_b ~ w_a / 10."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    target = x.sum(dim=1, keepdim=True)
    trunk = nn.Linear(4, 8)
    heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in ("a", "b")})
    heads["b"].load_state_dict(heads["a"].state_dict())
    weighting = build_weighting(WeightingConfig(kind="gradnorm"), ["a", "b"])
    optimizer = torch.optim.Adam(
        [
            {"params": [*trunk.parameters(), *heads.parameters()], "lr": 0.01},
            {"params": list(weighting.parameters()), "lr": 0.025},
        ]
    )
    scale = {"a": 1.0, "b": 10.0}
    for _ in range(80):
        optimizer.zero_grad()
        hidden = torch.relu(trunk(x))
        losses = {t: scale[t] * ((heads[t](hidden) - target) ** 2).mean() for t in scale}
        weighting.combine(losses, shared=list(trunk.parameters())).backward()
        optimizer.step()
        weighting.after_step()
    weights = weighting.current_weights()
    assert 0.04 < weights["b"] / weights["a"] < 0.25
    assert min(weights.values()) > 0
    assert sum(weights.values()) == pytest.approx(2.0)


def test_gradnorm_needs_shared() -> None:
    weighting = build_weighting(WeightingConfig(kind="gradnorm"), ["a", "b"])
    param = nn.Parameter(torch.ones(()))
    with pytest.raises(ValueError, match="shared parameters"):
        weighting.combine({"a": param * 2, "b": param * 3})
    with torch.no_grad():  # validation needs no shared parameters
        total = weighting.combine({"a": param * 2, "b": param * 3})
    assert total.item() == pytest.approx(5.0)


def test_gradnorm_uses_config_weights_as_init() -> None:
    config = WeightingConfig(kind="gradnorm", weights=(("a", 0.5),))
    weighting = build_weighting(config, ["a", "b"])
    assert weighting.current_weights() == {"a": 0.5, "b": 1.0}


def test_dwa_favours_stalling_task() -> None:
    weighting = build_weighting(WeightingConfig(kind="dwa", dwa_temperature=2.0), ["stall", "fast"])
    assert isinstance(weighting, DWAWeighting)
    epochs = [
        {"stall": 1.0, "fast": 1.0},
        {"stall": 0.99, "fast": 0.5},
        {"stall": 0.98, "fast": 0.2},
    ]
    assert weighting.current_weights() == {"stall": 1.0, "fast": 1.0}
    weighting.end_epoch(epochs[0])
    assert weighting.current_weights() == {"stall": 1.0, "fast": 1.0}
    weighting.end_epoch(epochs[1])
    weights = weighting.current_weights()
    # r = (0.99, 0.5); w = 2 * softmax(r / 2)
    expected_stall = 2.0 / (1.0 + math.exp((0.5 - 0.99) / 2.0))
    assert weights["stall"] == pytest.approx(expected_stall)
    assert weights["stall"] > weights["fast"]
    assert sum(weights.values()) == pytest.approx(2.0)
    total = weighting.combine({"stall": torch.tensor(2.0), "fast": torch.tensor(3.0)})
    assert total.item() == pytest.approx(2.0 * weights["stall"] + 3.0 * weights["fast"])
    weighting.end_epoch(epochs[2])  # now r = (0.98 / 0.99, 0.2 / 0.5)
    expected_stall = 2.0 / (1.0 + math.exp((0.4 - 0.98 / 0.99) / 2.0))
    assert weighting.current_weights()["stall"] == pytest.approx(expected_stall)


def test_dwa_state_round_trips() -> None:
    tasks = ["a", "b"]
    source = build_weighting(WeightingConfig(kind="dwa"), tasks)
    source.end_epoch({"a": 1.0, "b": 1.0})
    source.end_epoch({"a": 1.0, "b": 0.1})
    restored = build_weighting(WeightingConfig(kind="dwa"), tasks)
    restored.load_state_dict(source.state_dict())
    assert restored.current_weights() == source.current_weights()
    restored.end_epoch({"a": 1.0, "b": 0.1})
    assert restored.current_weights()["a"] == pytest.approx(1.0)
