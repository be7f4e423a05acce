"""Pure evaluation metrics: ranking (one target per user), binary classification and regression.

Every function takes numpy arrays (torch tensors are converted) and returns a float, an array or
a dict of floats.  Nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

ArrayIn = npt.ArrayLike | torch.Tensor


def _np(x: ArrayIn) -> np.ndarray:
    """Convert a numpy array, a sequence or a (possibly GPU, possibly bf16) tensor to numpy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def _check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} shape {a.shape} does not match {name_b} shape {b.shape}")


def _check_ranking_inputs(scores_shape: Sequence[int], targets_shape: Sequence[int],
                          exclude_shape: Sequence[int] | None) -> None:
    if len(scores_shape) != 2:
        raise ValueError(f"scores must be 2-D [B, N], got shape {tuple(scores_shape)}")
    if tuple(targets_shape) != (scores_shape[0],):
        raise ValueError(f"targets shape {tuple(targets_shape)} does not match "
                         f"scores shape {tuple(scores_shape)}: expected ({scores_shape[0]},)")
    if exclude_shape is not None and tuple(exclude_shape) != tuple(scores_shape):
        raise ValueError(f"exclude shape {tuple(exclude_shape)} does not match "
                         f"scores shape {tuple(scores_shape)}")


def target_ranks(scores: ArrayIn, targets: ArrayIn, exclude: ArrayIn | None = None) -> np.ndarray:
    """0-based rank of each row's target among its non-excluded items (pessimistic ties).

    rank = #non-excluded items scoring strictly higher + #non-excluded other items scoring
    equal.  An excluded target, or a NaN target score, gets rank N (a miss at every k); NaN
    scores of other items never outrank the target.

    >>> scores = np.array([[0.1, 0.9, 0.5], [1.0, 1.0, 1.0]])
    >>> target_ranks(scores, np.array([2, 0]))
    array([1, 2])
    >>> target_ranks(scores, np.array([2, 0]), np.array([[0, 1, 0], [0, 0, 1]], dtype=bool))
    array([0, 1])
    """
    s, t = _np(scores), _np(targets)
    ex = None if exclude is None else _np(exclude).astype(bool, copy=False)
    _check_ranking_inputs(s.shape, t.shape, None if ex is None else ex.shape)
    b, n = s.shape
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be integer column indices, got dtype {t.dtype}")
    if b and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"targets must lie in [0, {n}), got range [{t.min()}, {t.max()}]")
    rows = np.arange(b)
    target_score = s[rows, t]
    ahead = s >= target_score[:, None]
    ahead[rows, t] = False
    if ex is not None:
        ahead &= ~ex
    ranks = ahead.sum(axis=1, dtype=np.int64)
    miss = np.isnan(target_score)
    if ex is not None:
        miss |= ex[rows, t]
    ranks[miss] = n
    return ranks


def target_ranks_torch(scores: torch.Tensor, targets: torch.Tensor,
                       exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Same as :func:`target_ranks` on tensors (any device); returns int64 [B] on that device.

    One comparison against the gathered target score, no sorting.

    >>> scores = torch.tensor([[0.1, 0.9, 0.5], [1.0, 1.0, 1.0]])
    >>> target_ranks_torch(scores, torch.tensor([2, 0]))
    tensor([1, 2])
    >>> target_ranks_torch(scores, torch.tensor([2, 0]), torch.tensor([[0, 0, 1], [0, 0, 1]]) > 0)
    tensor([3, 1])
    """
    _check_ranking_inputs(scores.shape, targets.shape,
                          None if exclude is None else exclude.shape)
    b, n = scores.shape
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer column indices, got dtype {targets.dtype}")
    if b and (int(targets.min()) < 0 or int(targets.max()) >= n):
        raise ValueError(f"targets must lie in [0, {n}), "
                         f"got range [{int(targets.min())}, {int(targets.max())}]")
    with torch.no_grad():
        idx = targets.long().unsqueeze(1)
        target_score = scores.gather(1, idx)
        ahead = scores >= target_score
        ahead.scatter_(1, idx, False)
        miss = target_score.squeeze(1).isnan()
        if exclude is not None:
            ex = exclude.bool()
            ahead.masked_fill_(ex, False)
            miss |= ex.gather(1, idx).squeeze(1)
        # Summing the bool as uint8 into int32 is ~8x faster on CPU than a bool -> int64 sum.
        ranks = ahead.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()
        return ranks.masked_fill_(miss, n)


def _ranks_1d(ranks: ArrayIn, k: int) -> np.ndarray:
    r = _np(ranks)
    if r.size == 0:
        raise ValueError("ranks is empty: cannot average a ranking metric over zero users")
    if r.ndim != 1:
        raise ValueError(f"ranks must be 1-D, got shape {r.shape}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if r.min() < 0:
        raise ValueError(f"ranks must be non-negative 0-based ranks, got minimum {r.min()}")
    return r


def hit_rate_at_k(ranks: ArrayIn, k: int) -> float:
    """Fraction of users whose target rank is < k (= Recall@k with one target per user).

    >>> hit_rate_at_k(np.array([0, 3, 10, 1]), 2)
    0.5
    """
    return float(np.mean(_ranks_1d(ranks, k) < k))


def recall_at_k(ranks: ArrayIn, k: int) -> float:
    """Recall@k with one target per user: identical to :func:`hit_rate_at_k`.

    >>> recall_at_k(np.array([0, 3, 10, 1]), 5)
    0.75
    """
    return hit_rate_at_k(ranks, k)


def ndcg_at_k(ranks: ArrayIn, k: int) -> float:
    """Mean of 1/log2(rank + 2) over users with rank < k (0 for the others).

    >>> ndcg_at_k(np.array([0, 1, 5]), 5)
    0.5436432511904858
    """
    r = _ranks_1d(ranks, k)
    gain = np.zeros(r.shape, dtype=np.float64)
    hit = r < k
    gain[hit] = 1.0 / np.log2(r[hit] + 2.0)
    return float(gain.mean())


def mrr_at_k(ranks: ArrayIn, k: int) -> float:
    """Mean of 1/(rank + 1) over users with rank < k (0 for the others).

    >>> mrr_at_k(np.array([0, 1, 5]), 5)
    0.5
    """
    r = _ranks_1d(ranks, k)
    rr = np.zeros(r.shape, dtype=np.float64)
    hit = r < k
    rr[hit] = 1.0 / (r[hit] + 1.0)
    return float(rr.mean())


def ranking_metrics(ranks: ArrayIn, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """recall@k, ndcg@k, mrr@k and hr@k for every k in ``ks``.

    >>> m = ranking_metrics(np.array([0, 1, 5]), ks=(1, 10))
    >>> m["recall@1"], m["hr@10"], m["mrr@1"]
    (0.3333333333333333, 1.0, 0.3333333333333333)
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
        out[f"mrr@{k}"] = mrr_at_k(ranks, k)
        out[f"hr@{k}"] = hit_rate_at_k(ranks, k)
    return out


def _binary_inputs(labels: ArrayIn, scores: ArrayIn, scores_name: str) -> tuple[
        np.ndarray, np.ndarray]:
    y, s = _np(labels), _np(scores)
    _check_same_shape("labels", y, scores_name, s)
    if y.size == 0:
        raise ValueError("labels is empty: the metric is undefined for zero examples")
    y, s = y.ravel(), s.ravel().astype(np.float64)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 (or bool)")
    if not np.isfinite(s).all():
        raise ValueError(f"{scores_name} contain NaN or infinite values")
    return y.astype(np.float64), s


def _group_aucs(y: np.ndarray, s: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney AUC (average ranks for ties) of every group id in ``g`` (0..G-1), vectorised.

    Returns (auc per group, NaN where the group lacks a class; number of examples per group).
    """
    order = np.lexsort((s, g))
    gs, ss, ys = g[order], s[order], y[order]
    n = len(gs)
    new_group = np.r_[True, gs[1:] != gs[:-1]]
    new_run = new_group | np.r_[True, ss[1:] != ss[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[run_start, n])
    group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
    # 1-based average rank within the group
    rank = run_start[run_id] + (run_len[run_id] + 1) / 2.0 - group_start
    count = np.bincount(gs).astype(np.float64)
    n_pos = np.bincount(gs, weights=ys, minlength=len(count))
    n_neg = count - n_pos
    rank_sum = np.bincount(gs, weights=rank * ys, minlength=len(count))
    with np.errstate(divide="ignore", invalid="ignore"):
        aucs = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    aucs[(n_pos == 0) | (n_neg == 0)] = np.nan
    return aucs, count


def auc(labels: ArrayIn, scores: ArrayIn) -> float:
    """ROC AUC via Mann-Whitney U with average ranks for tied scores.

    >>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> auc(np.array([0, 1]), np.array([0.5, 0.5]))
    0.5
    """
    y, s = _binary_inputs(labels, scores, "scores")
    value = _group_aucs(y, s, np.zeros(len(y), dtype=np.int64))[0][0]
    if np.isnan(value):
        raise ValueError("AUC is undefined: only one class is present in labels")
    return float(value)


def _gauc_or_none(y: np.ndarray, s: np.ndarray, labels: ArrayIn,
                  groups: ArrayIn) -> float | None:
    grp = _np(groups)
    _check_same_shape("labels", _np(labels), "groups", grp)
    aucs, count = _group_aucs(y, s, np.unique(grp.ravel(), return_inverse=True)[1].ravel())
    ok = ~np.isnan(aucs)
    if not ok.any():
        return None
    return float(np.sum(aucs[ok] * count[ok]) / np.sum(count[ok]))


def gauc(labels: ArrayIn, scores: ArrayIn, groups: ArrayIn) -> float:
    """Group AUC: per-group AUC weighted by group size, over groups containing both classes.

    >>> gauc([1, 0, 1, 0, 1, 1], [0.9, 0.1, 0.2, 0.8, 0.5, 0.6], [0, 0, 1, 1, 2, 2])
    0.5
    """
    y, s = _binary_inputs(labels, scores, "scores")
    value = _gauc_or_none(y, s, labels, groups)
    if value is None:
        raise ValueError("GAUC is undefined: no group contains both classes")
    return value


def log_loss(labels: ArrayIn, probs: ArrayIn, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities are clipped to [eps, 1 - eps].

    >>> round(log_loss([1, 0], [0.8, 0.4]), 6)
    0.366985
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    y, p = _binary_inputs(labels, probs, "probs")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def _regression_inputs(y: ArrayIn, pred: ArrayIn) -> np.ndarray:
    a, b = _np(y), _np(pred)
    _check_same_shape("y", a, "pred", b)
    if a.size == 0:
        raise ValueError("y is empty: the metric is undefined for zero examples")
    return a.astype(np.float64).ravel() - b.astype(np.float64).ravel()


def rmse(y: ArrayIn, pred: ArrayIn) -> float:
    """Root mean squared error.

    >>> rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    1.1547005383792515
    """
    return float(np.sqrt(np.mean(_regression_inputs(y, pred) ** 2)))


def mae(y: ArrayIn, pred: ArrayIn) -> float:
    """Mean absolute error.

    >>> mae([1.0, 2.0, 3.0], [1.0, 2.5, 5.0])
    0.8333333333333334
    """
    return float(np.mean(np.abs(_regression_inputs(y, pred))))


def binary_metrics(labels: ArrayIn, probs: ArrayIn,
                   groups: ArrayIn | None = None) -> dict[str, float]:
    """``auc``, ``logloss`` and (with groups) ``gauc``; undefined metrics are left out.

    >>> {k: round(v, 4) for k, v in binary_metrics([1, 1], [0.9, 0.6]).items()}
    {'logloss': 0.3081}
    """
    out: dict[str, float] = {}
    y, p = _binary_inputs(labels, probs, "probs")
    if 0.0 < y.sum() < len(y):
        out["auc"] = auc(y, p)
    out["logloss"] = log_loss(y, p)
    if groups is not None:
        value = _gauc_or_none(y, p, labels, groups)
        if value is not None:
            out["gauc"] = value
    return out


def regression_metrics(y: ArrayIn, pred: ArrayIn) -> dict[str, float]:
    """``rmse`` and ``mae``.

    >>> regression_metrics([0.0, 2.0], [1.0, 1.0])
    {'rmse': 1.0, 'mae': 1.0}
    """
    return {"rmse": rmse(y, pred), "mae": mae(y, pred)}


def concordance_index(times: ArrayIn, scores: ArrayIn, observed: ArrayIn) -> float:
    """Harrell's C for right-censored times: over the pairs whose shorter time is observed
    (``t_i < t_j``, ``i`` observed), the share where ``i`` has the higher risk ``score``
    (ties in score count a half).  Higher scores mean sooner events; 0.5 is chance.

    >>> concordance_index([1, 2, 3], [3.0, 2.0, 1.0], [True, True, False])
    1.0
    >>> concordance_index([1, 2, 3], [1.0, 1.0, 1.0], [True, True, True])
    0.5
    >>> concordance_index([1, 2], [0.0, 1.0], [False, True])  # no comparable pair
    Traceback (most recent call last):
    ...
    ValueError: the concordance index is undefined: no comparable pair (every shorter time censored)
    """
    t, s, e = _np(times).astype(np.float64).ravel(), _np(scores), _np(observed)
    _check_same_shape("times", _np(times), "scores", s)
    _check_same_shape("times", _np(times), "observed", e)
    s, e = s.astype(np.float64).ravel(), e.astype(bool).ravel()
    if not (np.isfinite(t).all() and np.isfinite(s).all()):
        raise ValueError("times and scores must be finite")
    # Score ranks (ties share a rank); then, in increasing time, each observed i is compared
    # with every j of a strictly later time: count those with a lower / equal score.
    ranks = np.unique(s, return_inverse=True)[1].ravel()
    later = np.zeros(int(ranks.max()) + 2, np.int64)  # Fenwick tree over score ranks
    concordant = tied = pairs = 0.0
    order = np.argsort(-t, kind="stable")
    i = 0
    while i < len(order):  # groups of equal time, latest first
        j = i
        while j < len(order) and t[order[j]] == t[order[i]]:
            j += 1
        group = order[i:j]
        total = _fenwick_sum(later, len(later) - 2)
        for k in group[e[group]]:
            below = _fenwick_sum(later, int(ranks[k]) - 1)
            equal = _fenwick_sum(later, int(ranks[k])) - below
            concordant += below
            tied += equal
            pairs += total
        for k in group:
            _fenwick_add(later, int(ranks[k]))
        i = j
    if pairs == 0:
        raise ValueError("the concordance index is undefined: no comparable pair "
                         "(every shorter time censored)")
    return float((concordant + 0.5 * tied) / pairs)


def _fenwick_add(tree: np.ndarray, rank: int) -> None:
    k = rank + 1
    while k < len(tree):
        tree[k] += 1
        k += k & -k


def _fenwick_sum(tree: np.ndarray, rank: int) -> int:
    """How many added ranks are <= ``rank``."""
    k, out = rank + 1, 0
    while k > 0:
        out += int(tree[k])
        k -= k & -k
    return out
