"""mtrec.eval.metrics against brute-force pure-Python references."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtrec.eval import metrics as M

FAST = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------- pure-Python references


def ref_target_rank(row: list[float], target: int, excluded: list[bool]) -> int:
    """Sort the non-excluded items; among equal scores the target goes last (pessimistic)."""
    if excluded[target] or math.isnan(row[target]):
        return len(row)
    items = [(i, s) for i, s in enumerate(row) if not excluded[i] and not math.isnan(s)]
    items.sort(key=lambda p: (-p[1], p[0] == target))
    return [i for i, _ in items].index(target)


def ref_auc(labels: list[int], scores: list[float]) -> float:
    pos = [s for y, s in zip(labels, scores, strict=True) if y == 1]
    neg = [s for y, s in zip(labels, scores, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def ref_gauc(labels: list[int], scores: list[float], groups: list[Any]) -> float | None:
    num = den = 0.0
    for g in set(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        ys = [labels[i] for i in idx]
        if 0 < sum(ys) < len(ys):
            num += len(idx) * ref_auc(ys, [scores[i] for i in idx])
            den += len(idx)
    return num / den if den else None


def ref_log_loss(labels: list[int], probs: list[float], eps: float = 1e-7) -> float:
    total = 0.0
    for y, p in zip(labels, probs, strict=True):
        p = min(max(p, eps), 1 - eps)
        total -= math.log(p) if y == 1 else math.log(1 - p)
    return total / len(labels)


# ---------------------------------------------------------------- strategies


@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Small integer-valued scores (many ties), random targets and an optional exclusion mask."""
    b = draw(st.integers(1, 6))
    n = draw(st.integers(1, 8))
    levels = draw(st.integers(1, 4))
    cells = st.integers(0, levels - 1)
    scores = np.array(draw(st.lists(cells, min_size=b * n, max_size=b * n)), dtype=np.float64)
    targets = np.array(draw(st.lists(st.integers(0, n - 1), min_size=b, max_size=b)))
    exclude = None
    if draw(st.booleans()):
        flags = draw(st.lists(st.booleans(), min_size=b * n, max_size=b * n))
        exclude = np.array(flags).reshape(b, n)
    return scores.reshape(b, n), targets, exclude


@st.composite
def binary_case(draw: st.DrawFn) -> tuple[list[int], list[float], list[int]]:
    size = draw(st.integers(1, 30))
    labels = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    scores = draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]),
                           min_size=size, max_size=size))
    groups = draw(st.lists(st.integers(0, 4), min_size=size, max_size=size))
    return labels, scores, groups


# ---------------------------------------------------------------- target ranks


def _ref_ranks(scores: np.ndarray, targets: np.ndarray, exclude: np.ndarray | None) -> list[int]:
    ex = np.zeros(scores.shape, dtype=bool) if exclude is None else exclude
    return [ref_target_rank(scores[i].tolist(), int(targets[i]), ex[i].tolist())
            for i in range(len(targets))]


@FAST
@given(ranking_case())
def test_target_ranks_matches_reference_and_torch(
        case: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> None:
    scores, targets, exclude = case
    expected = _ref_ranks(scores, targets, exclude)
    got = M.target_ranks(scores, targets, exclude)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    t_ex = None if exclude is None else torch.from_numpy(exclude)
    got_t = M.target_ranks_torch(torch.from_numpy(scores), torch.from_numpy(targets), t_ex)
    assert got_t.dtype == torch.int64
    assert got_t.tolist() == expected


def test_target_ranks_random_float32_batch_torch_agrees() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, size=(64, 300)).astype(np.float32)
    targets = rng.integers(0, 300, size=64)
    exclude = rng.random((64, 300)) < 0.2
    expected = _ref_ranks(scores, targets, exclude)
    assert M.target_ranks(scores, targets, exclude).tolist() == expected
    got = M.target_ranks_torch(torch.from_numpy(scores), torch.from_numpy(targets),
                               torch.from_numpy(exclude))
    assert got.tolist() == expected
    # numpy entry point accepts tensors too
    assert M.target_ranks(torch.from_numpy(scores), torch.from_numpy(targets)).tolist() == \
        _ref_ranks(scores, targets, None)


def test_target_ranks_constant_scorer_is_worst_and_excluded_target_misses() -> None:
    scores = np.zeros((3, 5))
    targets = np.array([0, 2, 4])
    assert M.target_ranks(scores, targets).tolist() == [4, 4, 4]
    exclude = np.zeros((3, 5), dtype=bool)
    exclude[0, 1:3] = True  # two others excluded -> rank 2
    exclude[1, 2] = True  # target excluded -> rank N
    assert M.target_ranks(scores, targets, exclude).tolist() == [2, 5, 4]
    assert M.target_ranks_torch(torch.zeros(3, 5), torch.tensor([0, 2, 4]),
                                torch.from_numpy(exclude)).tolist() == [2, 5, 4]
    ranks = M.target_ranks(scores, targets, exclude)
    assert M.hit_rate_at_k(ranks, 5) == pytest.approx(2 / 3)  # excluded target misses at k=N


def test_target_ranks_nan_scores() -> None:
    scores = np.array([[np.nan, 1.0, 2.0], [0.5, np.nan, 0.1]])
    targets = np.array([0, 2])
    expected = [3, 1]  # NaN target misses; NaN other never outranks
    assert _ref_ranks(scores, targets, None) == expected
    assert M.target_ranks(scores, targets).tolist() == expected
    assert M.target_ranks_torch(torch.from_numpy(scores), torch.tensor([0, 2])).tolist() == \
        expected


@pytest.mark.parametrize(
    ("scores", "targets", "exclude", "message"),
    [
        (np.zeros(3), np.array([0]), None, "scores must be 2-D"),
        (np.zeros((2, 3)), np.array([0]), None, "targets shape (1,) does not match"),
        (np.zeros((2, 3)), np.array([0, 3]), None, "targets must lie in [0, 3)"),
        (np.zeros((2, 3)), np.array([0, -1]), None, "targets must lie in [0, 3)"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), None, "must be integer"),
        (np.zeros((2, 3)), np.array([0, 1]), np.zeros((2, 2), bool), "exclude shape (2, 2)"),
    ],
)
def test_target_ranks_errors(scores: np.ndarray, targets: np.ndarray,
                             exclude: np.ndarray | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        M.target_ranks(scores, targets, exclude)
    t_ex = None if exclude is None else torch.from_numpy(exclude)
    with pytest.raises(ValueError, match=re.escape(message)):
        M.target_ranks_torch(torch.from_numpy(scores), torch.from_numpy(targets), t_ex)


# ---------------------------------------------------------------- ranking metrics


@FAST
@given(st.lists(st.integers(0, 30), min_size=1, max_size=40), st.integers(1, 25))
def test_ranking_metrics_match_reference(ranks: list[int], k: int) -> None:
    r = np.array(ranks)
    hr = sum(1 for x in ranks if x < k) / len(ranks)
    ndcg = sum(1 / math.log2(x + 2) for x in ranks if x < k) / len(ranks)
    mrr = sum(1 / (x + 1) for x in ranks if x < k) / len(ranks)
    assert M.hit_rate_at_k(r, k) == pytest.approx(hr)
    assert M.recall_at_k(r, k) == pytest.approx(hr)
    assert M.ndcg_at_k(r, k) == pytest.approx(ndcg)
    assert M.mrr_at_k(r, k) == pytest.approx(mrr)
    got = M.ranking_metrics(r, ks=(k, k + 1))
    assert set(got) == {f"{m}@{kk}" for m in ("recall", "ndcg", "mrr", "hr") for kk in (k, k + 1)}
    assert got[f"hr@{k}"] == got[f"recall@{k}"] == pytest.approx(hr)
    assert got[f"ndcg@{k}"] == pytest.approx(ndcg)
    assert got[f"mrr@{k}"] == pytest.approx(mrr)
    assert all(isinstance(v, float) for v in got.values())


def test_ranking_metrics_default_ks_and_tensor_input() -> None:
    got = M.ranking_metrics(torch.tensor([0, 9, 19, 50]))
    assert sorted(got) == sorted(f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hr")
                                 for k in (5, 10, 20))
    assert got["recall@5"] == 0.25 and got["recall@10"] == 0.5 and got["recall@20"] == 0.75
    assert got["mrr@10"] == pytest.approx((1 + 1 / 10) / 4)


@pytest.mark.parametrize("fn", [M.hit_rate_at_k, M.recall_at_k, M.ndcg_at_k, M.mrr_at_k])
def test_ranking_metric_errors(fn: Any) -> None:
    with pytest.raises(ValueError, match="ranks is empty"):
        fn(np.array([], dtype=np.int64), 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        fn(np.array([1, 2]), 0)
    with pytest.raises(ValueError, match="non-negative"):
        fn(np.array([1, -2]), 3)
    with pytest.raises(ValueError, match="ranks is empty"):
        M.ranking_metrics(np.array([]))


# ---------------------------------------------------------------- binary / regression


@FAST
@given(binary_case())
def test_auc_gauc_logloss_match_reference(case: tuple[list[int], list[float], list[int]]) -> None:
    labels, scores, groups = case
    y, s = np.array(labels), np.array(scores)
    both = 0 < sum(labels) < len(labels)
    if both:
        assert M.auc(y, s) == pytest.approx(ref_auc(labels, scores))
    else:
        with pytest.raises(ValueError, match="only one class"):
            M.auc(y, s)
    expected_gauc = ref_gauc(labels, scores, groups)
    if expected_gauc is not None:
        assert M.gauc(y, s, np.array(groups)) == pytest.approx(expected_gauc)
    else:
        with pytest.raises(ValueError, match="no group contains both classes"):
            M.gauc(y, s, np.array(groups))
    assert M.log_loss(y, s) == pytest.approx(ref_log_loss(labels, scores))
    out = M.binary_metrics(y, s, np.array(groups))
    assert out["logloss"] == pytest.approx(ref_log_loss(labels, scores))
    assert ("auc" in out) == both
    assert ("gauc" in out) == (expected_gauc is not None)
    if both:
        assert out["auc"] == pytest.approx(ref_auc(labels, scores))
    if expected_gauc is not None:
        assert out["gauc"] == pytest.approx(expected_gauc)


def test_auc_basic_values_and_string_groups() -> None:
    assert M.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert M.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert M.auc(torch.tensor([True, False]), torch.tensor([0.7, 0.2])) == 1.0
    labels, scores = [1, 0, 1, 0, 1], [0.9, 0.1, 0.2, 0.8, 0.3]
    groups = ["u1", "u1", "u2", "u2", "u3"]  # u3 has one class only and is skipped
    assert M.gauc(labels, scores, groups) == pytest.approx(ref_gauc(labels, scores, groups))
    assert M.gauc(labels, scores, groups) == pytest.approx(0.5)


def test_against_sklearn_if_installed() -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.uniform(0.01, 0.99, 500), 2)  # rounding creates ties
    assert M.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
    assert M.log_loss(y, p) == pytest.approx(skm.log_loss(y, p))
    t, q = rng.normal(size=200), rng.normal(size=200)
    assert M.rmse(t, q) == pytest.approx(math.sqrt(skm.mean_squared_error(t, q)))
    assert M.mae(t, q) == pytest.approx(skm.mean_absolute_error(t, q))


@FAST
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=1, max_size=30))
def test_regression_match_reference(pairs: list[tuple[float, float]]) -> None:
    y = np.array([a for a, _ in pairs])
    pred = np.array([b for _, b in pairs])
    ref_rmse = math.sqrt(sum((a - b) ** 2 for a, b in pairs) / len(pairs))
    ref_mae = sum(abs(a - b) for a, b in pairs) / len(pairs)
    assert M.rmse(y, pred) == pytest.approx(ref_rmse)
    assert M.mae(y, pred) == pytest.approx(ref_mae)
    assert M.regression_metrics(y, pred) == pytest.approx({"rmse": ref_rmse, "mae": ref_mae})


def test_log_loss_clips_extreme_probs() -> None:
    assert M.log_loss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7))
    assert M.log_loss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-7))
    assert M.log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_binary_metrics_one_class_does_not_crash() -> None:
    out = M.binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]), groups=np.arange(4))
    assert set(out) == {"logloss"}
    assert out["logloss"] == pytest.approx(ref_log_loss([0] * 4, [0.1, 0.2, 0.3, 0.4]))
    out = M.binary_metrics([0, 1], [0.2, 0.8])
    assert out == pytest.approx({"auc": 1.0, "logloss": -math.log(0.8)})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: M.auc([0, 1, 1], [0.1, 0.2]), "labels shape (3,) does not match scores shape"),
        (lambda: M.auc([1, 1], [0.1, 0.2]), "only one class"),
        (lambda: M.auc([], []), "labels is empty"),
        (lambda: M.auc([0, 2], [0.1, 0.2]), "labels must be 0/1"),
        (lambda: M.auc([0, 1], [0.1, np.nan]), "scores contain NaN"),
        (lambda: M.gauc([0, 1], [0.1, 0.2], [0, 1]), "no group contains both classes"),
        (lambda: M.gauc([0, 1], [0.1, 0.2], [0]), "labels shape (2,) does not match groups shape"),
        (lambda: M.log_loss([0, 1], [0.1]), "labels shape (2,) does not match probs shape (1,)"),
        (lambda: M.log_loss([0, 1], [0.1, 1.2]), "probs must lie in [0, 1]"),
        (lambda: M.log_loss([0, 1], [0.1, 0.2], eps=0.0), "eps must lie in (0, 0.5)"),
        (lambda: M.rmse([1.0, 2.0], [1.0]), "y shape (2,) does not match pred shape (1,)"),
        (lambda: M.mae([], []), "y is empty"),
        (lambda: M.binary_metrics([0, 1], [0.5]), "labels shape (2,) does not match probs shape"),
        (lambda: M.binary_metrics([0, 1], [0.5, 0.5], [1]), "does not match groups shape (1,)"),
        (lambda: M.regression_metrics([1.0], [1.0, 2.0]), "y shape (1,) does not match pred"),
    ],
)
def test_binary_and_regression_errors(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def _cindex_brute(t, s, e):
    num = den = 0.0
    for i in range(len(t)):
        for j in range(len(t)):
            if e[i] and t[i] < t[j]:
                den += 1
                num += 1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0
    return num / den


@pytest.mark.parametrize("seed", range(5))
def test_concordance_index_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 60
    t = rng.integers(0, 15, n).astype(float)  # tied times
    s = rng.integers(0, 8, n).astype(float)  # tied scores
    e = rng.random(n) < 0.6
    assert M.concordance_index(t, s, e) == pytest.approx(_cindex_brute(t, s, e))
    assert M.concordance_index(t, -t, np.ones(n, bool)) == 1.0  # sooner = riskier: perfect
