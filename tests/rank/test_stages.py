"""Ranking stages on small inputs with known answers, and the stage registry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtrec.rank import STAGES, RankConfig, build_stages
from mtrec.rank.base import Candidates, RankContext, RankRequest, Step
from mtrec.rank.diversity import Diversity, mmr_order
from mtrec.rank.pipeline import RankingPipeline

# items 1-4 point one way (category a), 5-6 another (category b)
VECTORS = torch.tensor([[0, 0], [1, 0], [1, .05], [1, .1], [1, .15], [0, 1], [.1, 1]],
                       dtype=torch.float32)
CATS = ["", "a", "a", "a", "a", "b", "b"]


def _context(trending: list[tuple[int, float]] | None = None) -> RankContext:
    return RankContext(VECTORS, CATS, lambda s, k: (trending or [])[:k], ("next_item", "like"))


def _candidates() -> Candidates:
    codes = np.array([1, 2, 3, 4, 5, 6])
    return Candidates(codes, {"next_item": np.array([.30, .25, .20, .15, .06, .04]),
                              "like": np.array([.1, .1, .1, .1, .9, .9])}, np.zeros(6))


def _request(**kw: object) -> RankRequest:
    return RankRequest(**{"history": [Step(2, 1, 1)], "k": 3, "scenario": 1, **kw})  # type: ignore[arg-type]


def _run(stages: tuple[str, ...], options: tuple[tuple[str, float], ...] = (),
         **kw: object) -> Candidates:
    pipeline = RankingPipeline(None, build_stages(RankConfig(stages, options=options)))  # type: ignore[arg-type]
    return pipeline.rank(_request(**kw), _candidates(), _context())


def test_blend_ranks_by_the_objective() -> None:
    assert _run(("blend",)).codes.tolist() == [1, 2, 3]
    liked = _run(("blend",), objective={"like": 1.0})
    assert liked.codes.tolist() == [5, 6, 1] and liked.total[0] == pytest.approx(0.9)
    mixed = _run(("blend",), objective={"next_item": 1.0, "like": 0.1})
    assert mixed.total.tolist() == pytest.approx([.31, .26, .21])
    with pytest.raises(ValueError, match="bogus"):
        _run(("blend",), objective={"bogus": 1.0})


def test_filter_drops_excluded_and_other_categories() -> None:
    out = _run(("filter", "blend"), exclude=np.array([1]), category="a")
    assert out.codes.tolist() == [2, 3, 4]
    assert out.scores["next_item"].tolist() == pytest.approx([.25, .20, .15])


def test_cold_start_uses_trending_when_there_is_no_history() -> None:
    pipeline = RankingPipeline(None, build_stages(RankConfig()))  # type: ignore[arg-type]
    context = _context([(6, 3.0), (2, 2.0), (5, 1.0)])
    out = pipeline.rank(_request(history=[], k=2), RankingPipeline.cold(), context)
    assert out.codes.tolist() == [6, 2] and out.cold_start and out.total.tolist() == [3.0, 2.0]
    assert out.because == ((), ())  # nothing to explain without history


def test_explain_names_the_closest_history_items() -> None:
    history = [Step(5, 1, 1), Step(1, 1, 1)]  # 1 is the latest
    out = _run(("blend", "explain"), (("explain.top", 1),), history=history, k=2)
    assert [[c for c, _ in b] for b in out.because[:2]] == [[1], [1]]
    assert out.because[0][0][1] == pytest.approx(1.0)


def _brute_mmr(rel: np.ndarray, vec: np.ndarray, k: int, w: float) -> list[int]:
    """Greedy MMR by definition, step by step over every remaining candidate."""
    picked: list[int] = []
    for _ in range(k):
        best, best_gain = -1, -np.inf
        for i in range(len(rel)):
            if i in picked:
                continue
            sim = max((float(vec[i] @ vec[j]) for j in picked), default=0.0)
            gain = (1 - w) * rel[i] - w * sim
            if gain > best_gain:
                best, best_gain = i, gain
        picked.append(best)
    return picked


@pytest.mark.parametrize("seed,weight", list(itertools.product(range(5), (0.0, 0.3, 0.7, 1.0))))
def test_mmr_matches_a_brute_force_reference(seed: int, weight: float) -> None:
    rng = np.random.default_rng(seed)
    vec = rng.normal(size=(20, 4))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    rel = rng.random(20)
    assert mmr_order(rel, vec, 8, weight).tolist() == _brute_mmr(rel, vec, 8, weight)


def test_diversity_mixes_categories_into_the_top() -> None:
    plain = _run(("blend",), k=3)
    diverse = _run(("blend", "diversity"), (("diversity.weight", 0.5),), k=3)
    assert {CATS[c] for c in plain.codes[:3]} == {"a"}
    assert {CATS[c] for c in diverse.codes[:3]} == {"a", "b"}
    assert diverse.codes[0] == plain.codes[0]  # the best item stays first
    assert len(diverse) == len(plain)  # reordered, nothing lost


def test_stage_registry_and_config_errors() -> None:
    assert set(STAGES) >= {"cold_start", "filter", "blend", "diversity", "explain"}
    with pytest.raises(ValueError, match="unknown rank stage 'rerank'"):
        build_stages(RankConfig(("blend", "rerank")))
    with pytest.raises(ValueError, match="no option 'lambda'"):
        build_stages(RankConfig(("diversity",), options=(("diversity.lambda", 1.0),)))
    with pytest.raises(ValueError, match=r"not in rank\.stages"):
        build_stages(RankConfig(("blend",), options=(("diversity.weight", 0.2),)))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        Diversity({"weight": 2.0})
    with pytest.raises(ValueError, match="twice"):
        RankConfig(("blend", "blend"))
