"""Text-match channel: the fused score equals network + scale * recency-weighted cosine, and
the fusion weight chosen on validation follows whether the text predicts the next item."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrec.data.interactions import Interactions
from mtrec.data.split import TEST, TRAIN, VALID
from mtrec.models.batches import SequenceBatcher
from mtrec.models.item_tower import ItemTowerConfig
from mtrec.models.model import ModelConfig, MultiTaskRecommender, build_model
from mtrec.models.text_match import TextMatch, TextMatchConfig, recent_items
from mtrec.models.user_tower import UserTowerConfig
from mtrec.train.match import fit_text_match

N_ITEMS = 40  # items 2k+1 and 2k+2 are partners: same topic


def _text(anti: bool) -> torch.Tensor:
    """One topic direction per partner pair; ``anti``: odd items point the other way."""
    vectors = torch.zeros(N_ITEMS + 1, N_ITEMS // 2)
    for item in range(1, N_ITEMS + 1):
        sign = -1.0 if anti and item % 2 == 0 else 1.0
        vectors[item, (item - 1) // 2] = sign
    return vectors


def _data() -> Interactions:
    """Each user: one training item, then its partner (valid), then an unrelated item."""
    users, items, parts = [], [], []
    for u in range(N_ITEMS // 2):
        first = 2 * u + 1
        users += [u] * 3
        items += [first, first + 1, (first + 7) % N_ITEMS + 1]
        parts += [TRAIN, VALID, TEST]
    n = len(items)
    return Interactions(
        user=np.array(users, np.int64), item=np.array(items, np.int64),
        behaviors=np.zeros(n, np.int64), scenario=np.ones(n, np.int64),
        rating=np.full(n, np.nan, np.float32), ts=np.full(n, -1, np.int64),
        part=np.array(parts, np.int8), offsets=np.arange(0, n + 1, 3, dtype=np.int64))


def _model(text: torch.Tensor, scales: tuple[float, ...] = (0.0, 1.0, 4.0)
           ) -> MultiTaskRecommender:
    torch.manual_seed(0)
    config = ModelConfig(item=ItemTowerConfig(dim=8),
                         user=UserTowerConfig(max_len=16, layers=1, heads=2),
                         match=TextMatchConfig(lags=2, decay=0.5, scales=scales))
    return build_model(config, N_ITEMS, 2, text).eval()


def test_fused_scores_are_network_plus_weighted_cosines() -> None:
    text = torch.randn(N_ITEMS + 1, 6)
    text[0] = 0
    model = _model(text)
    batch, _ = SequenceBatcher(_data(), 5, {}).eval_batch(np.arange(4), TEST)
    with torch.no_grad():
        base = model(batch)
        assert base.query.shape[1] == 8  # inactive until a scale is set
        assert model.text_match is not None
        model.text_match.set_scale(3.0)
        fused = model(batch)
    unit = torch.nn.functional.normalize(text, dim=-1)
    recent = recent_items(batch.items, batch.rows, batch.cols, 2)
    cos = [(unit[recent[:, k].clamp(min=0)] @ unit[1:].T) * (recent[:, k:k + 1] > 0)
           for k in range(2)]
    expected = base.query @ base.item_table[1:].T + 3.0 * (cos[0] + 0.5 * cos[1])
    got = fused.query @ fused.retrieval_items[1:].T
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("anti", [False, True], ids=["informative", "misleading"])
def test_validation_picks_the_text_weight(anti: bool) -> None:
    model = _model(_text(anti))
    batcher = SequenceBatcher(_data(), 5, {})
    curve = fit_text_match(model, batcher, VALID)
    assert model.text_match is not None
    chosen = float(model.text_match.lag_weight[0])
    assert set(curve) == {0.0, 1.0, 4.0}
    if anti:  # the partner's text points away: any weight pushes the answer down
        assert chosen == 0.0 and not model.text_match.active
        assert curve[4.0] < curve[0.0]
    else:  # the partner is the only other item on the topic: the text alone finds it
        assert chosen == 4.0 and curve[chosen] == pytest.approx(1.0)  # largest of the ties
        assert curve[0.0] < 0.5


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="lags"):
        TextMatchConfig(lags=0)
    with pytest.raises(ValueError, match="decay"):
        TextMatchConfig(decay=0.0)
    with pytest.raises(ValueError, match="scales"):
        TextMatchConfig(scales=(-1.0,))


def test_unit_keeps_textless_rows_zero() -> None:
    unit = TextMatch.unit(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert torch.allclose(unit, torch.tensor([[0.0, 0.0], [0.6, 0.8]]))
