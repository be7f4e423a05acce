"""Checkpoints: resume equivalence, RNG restore, crash safety, mismatches, and no pickle."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from mtrec.train.checkpoint import (
    CheckpointError,
    has_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)

VOCAB, DIM = 13, 8


class TinyModel(nn.Module):
    """Embedding + Linear with the output head tied to the embedding, plus extra state."""

    def __init__(self, vocab: int = VOCAB, dim: int = DIM) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.hidden = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.calls: list[tuple[int, str]] = []

    def forward(self, ids: Tensor) -> Tensor:
        self.calls.append((len(self.calls), "forward"))
        return self.head(self.dropout(torch.tanh(self.hidden(self.embed(ids)))))

    def get_extra_state(self) -> Any:
        return {"calls": self.calls}

    def set_extra_state(self, state: Any) -> None:
        self.calls = list(state["calls"])


def warmup(step: int) -> float:
    return min(1.0, (step + 1) / 3)


def lambda_lr(optimizer: torch.optim.Optimizer) -> LRScheduler:
    return LambdaLR(optimizer, warmup)


def one_cycle(optimizer: torch.optim.Optimizer) -> LRScheduler:
    return OneCycleLR(optimizer, max_lr=0.05, total_steps=20)


def make(
    seed: int, schedule: Callable[[torch.optim.Optimizer], LRScheduler] = lambda_lr
) -> tuple[TinyModel, torch.optim.Optimizer, LRScheduler]:
    torch.manual_seed(seed)
    model = TinyModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    return model, optimizer, schedule(optimizer)


def train_step(model: TinyModel, optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> None:
    ids = torch.randint(0, VOCAB, (4, 5), generator=torch.Generator().manual_seed(7))
    logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def trained(path: Path, steps: int = 3, **kwargs: Any) -> tuple[TinyModel, Any, LRScheduler]:
    model, optimizer, scheduler = make(0, **kwargs)
    for _ in range(steps):
        train_step(model, optimizer, scheduler)
    save_checkpoint(path, model, optimizer, scheduler, {"epoch": steps})
    return model, optimizer, scheduler


@pytest.mark.parametrize("schedule", [lambda_lr, one_cycle])
def test_resume_gives_the_same_next_step(
    tmp_path: Path, schedule: Callable[[torch.optim.Optimizer], LRScheduler]
) -> None:
    model, optimizer, scheduler = trained(tmp_path / "ckpt", schedule=schedule)
    train_step(model, optimizer, scheduler)  # consumes dropout randomness after the save
    fresh, fresh_optimizer, fresh_scheduler = make(1, schedule)
    state = load_checkpoint(tmp_path / "ckpt", fresh, fresh_optimizer, fresh_scheduler)
    assert state == {"epoch": 3}
    assert fresh.head.weight is fresh.embed.weight
    train_step(fresh, fresh_optimizer, fresh_scheduler)
    resumed = fresh.state_dict()
    for name, expected in model.state_dict().items():
        if isinstance(expected, Tensor):
            assert torch.equal(expected, resumed[name]), name
    assert fresh.calls == model.calls
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    groups = optimizer.state_dict()["param_groups"]
    assert fresh_optimizer.state_dict()["param_groups"] == groups
    assert isinstance(fresh_optimizer.param_groups[0]["betas"], tuple)


def test_rng_restore_repeats_the_draws(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "ckpt", nn.Linear(2, 2))
    draws = (torch.rand(5), np.random.rand(5), random.random(), np.random.standard_normal())
    load_checkpoint(tmp_path / "ckpt", nn.Linear(2, 2))
    again = (torch.rand(5), np.random.rand(5), random.random(), np.random.standard_normal())
    assert torch.equal(draws[0], again[0])
    np.testing.assert_array_equal(draws[1], again[1])
    assert draws[2:] == again[2:]
    load_checkpoint(tmp_path / "ckpt", nn.Linear(2, 2), restore_rng=False)
    assert not torch.equal(torch.rand(5), draws[0])


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    state = {
        "epoch": 4,
        "best": float("inf"),
        "patience": 2,
        "history": [{"epoch": 1, "loss": 0.5, "pair": (1, "a")}],
        "by_step": {3: np.float32(0.25)},
    }
    save_checkpoint(tmp_path / "ckpt", nn.Linear(2, 2), state=state)
    loaded = load_checkpoint(tmp_path / "ckpt", nn.Linear(2, 2))
    assert loaded == {**state, "by_step": {3: 0.25}}
    assert isinstance(loaded["history"][0]["pair"], tuple)


def test_tied_weights_keep_every_key(tmp_path: Path) -> None:
    model, _, _ = trained(tmp_path / "ckpt", steps=1)
    weights = load_weights(tmp_path / "ckpt" / "model.safetensors")
    assert {"embed.weight", "head.weight"} <= weights.keys()
    assert torch.equal(weights["head.weight"], model.embed.weight)
    optimizer_keys = load_weights(tmp_path / "ckpt" / "optimizer.safetensors").keys()
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= optimizer_keys


def test_save_and_load_weights_helpers(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"a": base, "b": base, "t": base.t(), "row": base[1]}
    save_weights(tmp_path / "w.safetensors", tensors, metadata={"kind": "bundle"})
    loaded = load_weights(tmp_path / "w.safetensors")
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[key], value) for key, value in tensors.items())
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"kind": "bundle"}
    assert [path.name for path in tmp_path.iterdir()] == ["w.safetensors"]


def test_missing_or_incomplete_checkpoint_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    assert not has_checkpoint(path)
    with pytest.raises(CheckpointError, match=str(path)) as error:
        load_checkpoint(path, TinyModel())
    assert isinstance(error.value, FileNotFoundError)
    trained(path, steps=1)
    (path / "COMPLETE").unlink()
    assert not has_checkpoint(path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path, TinyModel())


def test_leftover_temp_directory_is_not_loaded(tmp_path: Path) -> None:
    trained(tmp_path / "scratch", steps=1)
    (tmp_path / "scratch").rename(tmp_path / ".ckpt.tmp")  # killed just before the swap
    assert not has_checkpoint(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=str(tmp_path / "ckpt")):
        load_checkpoint(tmp_path / "ckpt", TinyModel())
    trained(tmp_path / "ckpt", steps=2)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ckpt"]


def test_kill_between_renames_falls_back_to_the_old_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    trained(path, steps=1)
    trained(tmp_path / "scratch", steps=2)
    path.rename(tmp_path / ".ckpt.old")
    (tmp_path / "scratch").rename(tmp_path / ".ckpt.tmp")
    assert has_checkpoint(path)
    assert load_checkpoint(path, TinyModel()) == {"epoch": 1}
    trained(path, steps=3)
    assert load_checkpoint(path, TinyModel()) == {"epoch": 3}
    assert sorted(child.name for child in tmp_path.iterdir()) == ["ckpt"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    save_checkpoint(path, TinyModel(), state={"epoch": 1})
    with pytest.raises(TypeError, match="history"):
        save_checkpoint(path, TinyModel(), state={"epoch": 2, "history": [object()]})
    assert load_checkpoint(path, TinyModel()) == {"epoch": 1}
    assert sorted(child.name for child in tmp_path.iterdir()) == ["ckpt"]


def test_overwrite_replaces_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "ckpt"
    trained(path, steps=1)
    model, _, _ = trained(path, steps=2)
    fresh, fresh_optimizer, _ = make(5)
    assert load_checkpoint(path, fresh, fresh_optimizer) == {"epoch": 2}
    assert torch.equal(fresh.hidden.weight, model.hidden.weight)
    assert [child.name for child in path.parent.iterdir()] == ["ckpt"]


def test_mismatched_model_names_the_key_and_shapes(tmp_path: Path) -> None:
    trained(tmp_path / "ckpt", steps=1)
    with pytest.raises(
        CheckpointError, match=r"embed\.weight: checkpoint \(13, 8\) vs model \(9, 8\)"
    ):
        load_checkpoint(tmp_path / "ckpt", TinyModel(vocab=9))
    bigger = TinyModel()
    bigger.extra = nn.Linear(2, 2)
    with pytest.raises(
        CheckpointError, match=r"missing keys, first \['extra\.weight', 'extra\.bias'\]"
    ):
        load_checkpoint(tmp_path / "ckpt", bigger)


def test_missing_optimizer_state_is_an_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ckpt", TinyModel())
    model, optimizer, _ = make(0)
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint(tmp_path / "ckpt", model, optimizer)


def test_no_file_is_a_pickle(tmp_path: Path) -> None:
    trained(tmp_path / "ckpt", steps=2)
    names = sorted(path.name for path in (tmp_path / "ckpt").iterdir())
    assert names == [
        "COMPLETE",
        "model.json",
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
        "rng.json",
        "rng.safetensors",
        "scheduler.json",
        "state.json",
    ]
    for path in (tmp_path / "ckpt").iterdir():
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", path.name  # pickle protocol / torch zip
