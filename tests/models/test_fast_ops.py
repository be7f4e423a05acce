"""The training kernels of mtrec/models/fast_ops.py against torch's reference ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtrec.models import fast_ops
from mtrec.models.fast_ops import FastDropout, dropout_keep, fast_dropouts, full_softmax_loss


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_drops_p_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    x = torch.full((400, 1000), 2.0)
    y = FastDropout(p).train()(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.005  # 400k draws: sd ~ 0.0008
    assert abs(float(y.mean()) - 2.0) < 0.02
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 2.0 * 256 / (256 - round(p * 256))))


def test_dropout_random_bytes_are_uniform() -> None:
    """Every one of the seven bytes used per draw is uniform (the 8th, 7-bit one is not used):
    the drop rate holds at thresholds across the whole byte range."""
    torch.manual_seed(1)
    for p in (1 / 256, 0.5, 0.95):
        keep, _ = dropout_keep(torch.Size([700_001]), p)
        assert abs(float((~keep).float().mean()) - round(p * 256) / 256) < 0.003


def test_dropout_is_identity_in_eval_and_at_zero() -> None:
    x = torch.randn(3, 5)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_dropout_is_seeded_and_its_gradient_is_the_mask() -> None:
    x = torch.randn(50, 60, requires_grad=True)
    torch.manual_seed(3)
    y = FastDropout(0.4).train()(x)
    torch.manual_seed(3)
    again = FastDropout(0.4).train()(x)
    assert torch.equal(y, again)
    y.sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad * x.detach(), y.detach(), atol=1e-6)


@pytest.mark.parametrize("p", [1.0, 0.999, -0.1])
def test_dropout_rejects_a_bad_rate_when_built(p: float) -> None:
    """Regression (review): p = 0.999 rounds to a threshold of 256 and divided by zero at the
    first forward pass."""
    with pytest.raises(ValueError, match="dropout probability"):
        FastDropout(p)


def test_dropout_in_bf16_keeps_the_expectation() -> None:
    """Regression (review): a bf16 mask holding the rounded scale biased the mean (-0.33 % at
    p = 0.1); the scale now multiplies x, rounding each kept value once."""
    torch.manual_seed(0)
    x = (torch.rand(1000, 1000) + 1.0).bfloat16()  # varied mantissas, as activations have
    y = FastDropout(0.1).train()(x)
    assert y.dtype == torch.bfloat16
    assert abs(float(y.float().mean()) / float(x.float().mean()) - 1.0) < 0.001


def test_fast_dropouts_swaps_nested_dropouts_and_keeps_parameter_names() -> None:
    layer = nn.TransformerEncoderLayer(8, 2, 16, 0.2, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    keys = list(encoder.state_dict())
    fast_dropouts(encoder)
    assert not any(type(m) is nn.Dropout for m in encoder.modules())
    assert sum(isinstance(m, FastDropout) for m in encoder.modules()) == 6
    assert list(encoder.state_dict()) == keys


@pytest.mark.parametrize("rows", [1, 5, 2 * fast_ops._CHUNK + 3])  # the last: three chunks
def test_softmax_loss_matches_cross_entropy_value_and_gradients(rows: int) -> None:
    torch.manual_seed(rows)
    q = torch.randn(rows, 16, dtype=torch.float64, requires_grad=True)
    items = torch.randn(40, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 40, (rows,))
    ref = F.cross_entropy(q @ items.T, targets)
    ref_grads = torch.autograd.grad(ref, (q, items))
    ours = full_softmax_loss(q, items, targets)
    grads = torch.autograd.grad(ours * 1.0, (q, items))
    assert torch.allclose(ours, ref, atol=1e-12)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_softmax_loss_gradcheck() -> None:
    torch.manual_seed(0)
    q = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    items = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 5, 5, 2])
    assert torch.autograd.gradcheck(lambda a, b: full_softmax_loss(a, b, targets), (q, items))


def test_softmax_loss_under_bf16_autocast_is_the_reference_with_bf16_matmuls() -> None:
    torch.manual_seed(0)
    q = torch.randn(200, 32, requires_grad=True)
    items = torch.randn(500, 32, requires_grad=True)
    targets = torch.randint(0, 500, (200,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy((q @ items.T).float(), targets)
        ours = full_softmax_loss(q, items, targets)
    assert ours.dtype == torch.float32
    assert torch.isclose(ours, ref, rtol=1e-4)
    ref_grads = torch.autograd.grad(ref, (q, items))
    grads = torch.autograd.grad(ours, (q, items))
    for a, b in zip(grads, ref_grads, strict=True):
        assert float((a - b).norm() / b.norm()) < 0.02  # bf16 backward matmuls on both sides


def test_softmax_loss_names_bad_shapes() -> None:
    with pytest.raises(ValueError, match="share d"):
        full_softmax_loss(torch.zeros(2, 3), torch.zeros(4, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must be \[T\] = \[2\]"):
        full_softmax_loss(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
