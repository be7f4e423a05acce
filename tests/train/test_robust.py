"""The model-side defences: sequence augmentation and adversarial training (APR)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrec.config import ConfigError
from mtrec.data.split import TEST
from mtrec.models.batches import SequenceBatcher
from mtrec.run_config import RobustConfig, load_run_config
from mtrec.train.loss import MultiTaskLoss, task_losses
from mtrec.train.robust import SequenceAugmenter, perturbation
from mtrec.train.run import build, prepare_run, train_run
from tests.planted import fast_torch, planted, random_ndcg_at_10, tiny, write_store


@pytest.fixture(scope="module")
def fast() -> Iterator[None]:
    with fast_torch():
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(planted(), tmp_path_factory.mktemp("store"))


def _augment(config: RobustConfig, seqs: list[np.ndarray], seed: int = 0
             ) -> list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    augmenter = SequenceAugmenter(config, seed)
    return [augmenter(s) for s in seqs]


SEQS = [np.arange(100 * k, 100 * k + n) for k, n in enumerate(
    np.random.default_rng(0).integers(1, 30, 2000))]


def test_no_augmentation_is_the_plain_causal_sequence() -> None:
    for seq, (inputs, (targets, cols)) in zip(SEQS, _augment(RobustConfig(), SEQS),
                                              strict=True):
        assert np.array_equal(inputs, seq[:-1]) and np.array_equal(targets, seq)
        assert np.array_equal(cols, np.arange(len(seq)))


@pytest.mark.parametrize("config", [
    RobustConfig(crop_prob=0.5), RobustConfig(mask_prob=0.3), RobustConfig(reorder_prob=0.5),
    RobustConfig(crop_prob=0.3, mask_prob=0.2, reorder_prob=0.5, reorder_share=0.6)],
    ids=["crop", "mask", "reorder", "all"])
def test_augmentation_keeps_the_last_target_and_never_shows_the_future(
        config: RobustConfig) -> None:
    for seq, (inputs, (targets, cols)) in zip(SEQS, _augment(config, SEQS), strict=True):
        assert targets[-1] == seq[-1] and cols[-1] == len(inputs)  # last target, all inputs
        assert np.isin(inputs, seq).all() and len(np.unique(inputs)) == len(inputs)
        assert np.isin(targets, seq).all() and (np.diff(targets) > 0).all()
        for target, col in zip(targets, cols, strict=True):
            assert (inputs[:col] < target).all()  # only earlier interactions are seen
        if len(targets) < len(seq):  # a crop keeps a suffix
            assert set(seq) - set(targets) <= set(seq[:len(seq) - len(targets)]) or (
                config.reorder_prob > 0)


def test_augmentation_rates_match_the_config() -> None:
    long = [np.arange(20)] * 4000
    cropped = _augment(RobustConfig(crop_prob=0.3, crop_keep=0.5), long)
    lengths = np.array([len(t) for _, (t, _) in cropped])
    assert set(lengths) == {10, 20} and abs((lengths == 10).mean() - 0.3) < 0.03
    masked = _augment(RobustConfig(mask_prob=0.25), long)
    dropped = 1 - np.mean([len(i) for i, _ in masked]) / 19
    assert abs(dropped - 0.25) < 0.01
    assert all(len(t) == 20 for _, (t, _) in masked)  # masking keeps every target
    shuffled = _augment(RobustConfig(reorder_prob=0.4, reorder_share=0.5), long)
    moved = np.array([not np.array_equal(i, np.arange(19)) for i, _ in shuffled])
    assert abs(moved.mean() - 0.4) < 0.03  # (a shuffle that changes nothing is rare)
    assert all(len(t) == 20 - 9 for (i, (t, _)), m in zip(shuffled, moved, strict=True) if m)


def test_robust_config_is_checked_and_read_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "robust.toml"
    path.write_text('[train.robust]\nadversarial_eps = 0.5\nadversarial_weight = 1\n'
                    'mask_prob = 0.1\nuser_filter = "cohort"\n')
    robust = load_run_config(path).train.robust
    assert robust.adversarial and robust.augments and robust.user_filter == "cohort"
    assert not load_run_config().train.robust.adversarial  # off by default
    assert not load_run_config().train.robust.augments
    for bad in ("mask_prob = 1.0", "crop_keep = 0", 'user_filter = "magic"',
                "adversarial_eps = -1", "unknown = 1"):
        path.write_text(f"[train.robust]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_run_config(path)


def test_perturbation_has_norm_eps_and_raises_the_loss(store: Path, tmp_path: Path,
                                                       fast: None) -> None:
    config = load_run_config(None, **tiny(store))
    torch.manual_seed(0)
    model, batcher = build(config, prepare_run(config, store_dir=tmp_path), None)
    model.eval()  # no dropout: the same loss twice for the same vectors
    batch = batcher.train_batch(batcher.train_users()[:32])
    tables = model.item_tables()
    loss = task_losses(model, model(batch, tables), batch)["next_item"]
    delta = perturbation(loss, tables.vectors, eps=0.5)
    norms = delta.norm(dim=-1)
    assert torch.allclose(norms[1:], torch.full_like(norms[1:], 0.5), atol=1e-4)

    def moved_loss(step: torch.Tensor) -> float:
        moved = model.tables_for(tables.vectors + step, model.item_tower.text_vectors)
        return float(task_losses(model, model(batch, moved), batch)["next_item"].detach())

    noise = torch.nn.functional.normalize(torch.randn_like(delta), dim=-1) * 0.5
    assert moved_loss(delta) > moved_loss(noise)
    assert moved_loss(delta) > float(loss.detach()) + 0.01


def test_adversarial_loss_adds_the_weighted_adversarial_term(store: Path, tmp_path: Path,
                                                            fast: None) -> None:
    config = load_run_config(None, **tiny(store))
    torch.manual_seed(0)
    model, batcher = build(config, prepare_run(config, store_dir=tmp_path), None)
    batch = batcher.train_batch(batcher.train_users()[:32])
    model.eval()  # evaluation never pays for the adversarial pass
    assert torch.equal(MultiTaskLoss(model, (2.0, 1.0))(batch)["next_item"],
                       MultiTaskLoss(model)(batch)["next_item"])
    model.train()
    losses = {}
    for name, adversarial in (("plain", None), ("half", (2.0, 0.5)), ("full", (2.0, 1.0))):
        torch.manual_seed(1)  # the same dropout draws: the clean parts agree
        losses[name] = MultiTaskLoss(model, adversarial)(batch)["next_item"]
    adv_half = (losses["half"] - losses["plain"]) / 0.5
    adv_full = losses["full"] - losses["plain"]
    assert torch.isclose(adv_half, adv_full, rtol=1e-4)  # linear in the weight
    assert float(adv_full.detach()) > float(losses["plain"].detach())  # moved vectors score worse
    losses["full"].backward()
    assert model.item_tower.ids.weight.grad is not None  # type: ignore[union-attr]


def test_training_with_every_defence_still_learns_the_planted_answer(
        store: Path, tmp_path: Path, fast: None) -> None:
    defences = {"train.robust.adversarial_eps": 0.5, "train.robust.adversarial_weight": 1.0,
                "train.robust.crop_prob": 0.2, "train.robust.mask_prob": 0.1,
                "train.robust.reorder_prob": 0.2, "train.robust.user_filter": "cohort"}
    config = load_run_config(None, **tiny(store, **defences))
    result = train_run(config, tmp_path / "bundle", store_dir=tmp_path)
    chance = random_ndcg_at_10(prepare_run(config, store_dir=tmp_path), TEST)
    assert result["config"]["train"]["robust"]["adversarial_eps"] == 0.5
    ndcg = result["test"]["next_item/ndcg@10"]
    assert ndcg > 2.5 * chance and ndcg > chance + 0.08, (ndcg, chance)


def test_a_filtered_user_is_not_trained_on_but_still_evaluated(store: Path,
                                                              tmp_path: Path) -> None:
    config = load_run_config(None, **tiny(store))
    prepared = prepare_run(config, store_dir=tmp_path)
    exclude = np.zeros(len(prepared.catalog.user_ids), bool)
    exclude[:5] = True
    batcher = SequenceBatcher(prepared.interactions, 16, {}, exclude=exclude)
    plain = SequenceBatcher(prepared.interactions, 16, {})
    assert set(plain.train_users()) - set(batcher.train_users()) == set(
        np.intersect1d(plain.train_users(), np.arange(5)))
    assert np.array_equal(batcher.eval_users(TEST), plain.eval_users(TEST))
