"""A RecBole fit killed mid-way resumes where it stopped (benchmarks/peers/recbole_runner.py).

RecBole itself lives in its own virtualenv; ``fit`` only drives a trainer through RecBole's
``fit`` contract, so a small trainer with RecBole's loop (the same start epoch, patience
counter, best checkpoint and callback) stands in for it here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.peers.recbole_runner import fit


class Killed(Exception):
    """The process dying in the middle of an epoch."""


class _Model(nn.Linear):
    def other_parameter(self) -> None:
        return None

    def load_other_parameter(self, value: Any) -> None:
        assert value is None


class Loader:
    """A training loader with its own shuffling generator, as RecBole's have."""

    def __init__(self) -> None:
        self.generator = torch.Generator()
        self.generator.manual_seed(0)


class FakeTrainer:
    """RecBole's Trainer.fit loop, reduced: random batches (from the global RNGs and the
    loader's generator, so their states matter), a validation score, ``early_stopping`` with
    ``stopping_step``, the best checkpoint written by ``_save_checkpoint``."""

    def __init__(self, folder: Path, epochs: int, stopping_step: int,
                 kill_in_epoch: int | None = None) -> None:
        torch.manual_seed(0)
        np.random.seed(0)
        self.model = _Model(4, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.epochs, self.stopping_step, self.kill_in_epoch = epochs, stopping_step, kill_in_epoch
        self.start_epoch, self.cur_step, self.best_valid_score = 0, 0, -np.inf
        self.best_valid_result: dict[str, float] | None = None
        self.saved_model_file = str(folder / "best.pth")
        self.target = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.best_weights: dict[int, torch.Tensor] = {}

    def _save_checkpoint(self, epoch: int, verbose: bool = True) -> None:
        torch.save({"state_dict": self.model.state_dict(), "epoch": epoch},
                   self.saved_model_file)

    def _train_epoch(self, train_data: Any, epoch: int, show_progress: bool = False) -> float:
        if epoch == self.kill_in_epoch:
            raise Killed
        order = torch.randperm(32, generator=train_data.generator)
        x = torch.randn(32, 4)[order]
        noise = float(np.random.normal()) * 0.1 + float(order[0]) * 0.01
        loss = ((self.model(x) - x @ self.target - noise) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _valid(self) -> float:
        # the fit approaches the target; a penalty growing with the epochs makes the score
        # fall in the end, so early stopping (not the epoch cap) ends the fit
        with torch.no_grad():
            gap = float((self.model.weight - self.target.T).norm())
        return -gap - 0.01 * len(self.seen) ** 2

    def fit(self, train_data: Any, valid_data: Any, verbose: bool, saved: bool,
            show_progress: bool, callback_fn: Any) -> None:
        for epoch in range(self.start_epoch, self.epochs):
            self._train_epoch(train_data, epoch)
            self.seen = list(range(epoch + 1))
            score = self._valid()
            if score > self.best_valid_score:
                self.best_valid_score, self.cur_step = score, 0
                self.best_valid_result = {"score": score}
                self._save_checkpoint(epoch)
                self.best_weights[epoch + 1] = self.model.weight.detach().clone()
            else:
                self.cur_step += 1
            callback_fn(epoch, score)
            if self.cur_step > self.stopping_step:
                break


def _run(folder: Path, kill_in_epoch: int | None = None, resume: bool = True,
         max_seconds: float = 0.0) -> tuple[FakeTrainer, dict[str, Any]]:
    trainer = FakeTrainer(folder, epochs=12, stopping_step=2, kill_in_epoch=kill_in_epoch)
    return trainer, fit(trainer, Loader(), None, max_seconds, folder if resume else None)


def test_a_killed_fit_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight, expected = _run(tmp_path / "straight")
    assert 4 < expected["epochs"] < 12  # stopped early, after the epoch the kill hits
    with pytest.raises(Killed):
        _run(tmp_path / "killed", kill_in_epoch=4)
    resumed, got = _run(tmp_path / "killed")
    assert got["resumed_after"] == [4]
    assert got["valid_epochs"] == expected["valid_epochs"]
    assert got["valid_scores"] == pytest.approx(expected["valid_scores"])
    assert got["best_epoch"] == expected["best_epoch"] and got["epochs"] == expected["epochs"]
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert got["best_valid"] == pytest.approx(expected["best_valid"])
    # the best checkpoint RecBole loads for testing holds the best epoch's weights
    best = torch.load(resumed.saved_model_file)["state_dict"]["weight"]
    assert torch.equal(best, straight.best_weights[expected["best_epoch"]])
    # the curve's seconds continue from where the killed fit was, not from zero
    assert got["valid_seconds"] == sorted(got["valid_seconds"])


def test_a_finished_fit_trains_no_further_when_run_again(tmp_path: Path) -> None:
    first, stats = _run(tmp_path)
    again, repeat = _run(tmp_path)
    assert repeat["epochs"] == stats["epochs"] and repeat["valid_scores"] == stats["valid_scores"]
    assert torch.equal(again.model.weight, first.model.weight)


def test_without_resume_nothing_is_saved_and_a_cap_stops_after_a_validation(
        tmp_path: Path) -> None:
    _, stats = _run(tmp_path, resume=False, max_seconds=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]  # RecBole's own, no state
    assert stats["capped"] and stats["epochs"] == 1 and len(stats["valid_scores"]) == 1


def test_a_lost_best_checkpoint_is_rewritten_and_a_partial_save_ignored(
        tmp_path: Path) -> None:
    """The best epoch (4) precedes the kill (epoch 6): its checkpoint file is deleted and a
    save torn by the kill left a partial file; the resumed fit still tests the best weights."""
    (tmp_path / "straight").mkdir()
    straight, expected = _run(tmp_path / "straight")
    killed = tmp_path / "killed"
    killed.mkdir()
    with pytest.raises(Killed):
        _run(killed, kill_in_epoch=5)
    (killed / "best.pth").unlink()
    (killed / "resume.pth.partial").write_bytes(b"torn")
    resumed, got = _run(killed)
    assert got["resumed_after"] == [5] and got["best_epoch"] == expected["best_epoch"] == 4
    best = torch.load(resumed.saved_model_file)["state_dict"]["weight"]
    assert torch.equal(best, straight.best_weights[4])
