"""Evaluate a model on a split part: full-ranking next-item metrics and pointwise task metrics.

Next-item: every catalog item is ranked for each user, with the items of the user's visible
history (all earlier parts) masked; a target already in that history counts as a miss.
Cold subset: targets whose item has at most ``cold_max`` training interactions, reported
with the prefix ``cold_``.  Pointwise tasks: every interaction of the part that the task
can label, scored causally as in training, from the state after the user's earlier parts and
the earlier interactions of this part (observed behaviour, never labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mtrec.data.split import TRAIN
from mtrec.eval.metrics import ranking_metrics, target_ranks_torch
from mtrec.models.batches import SequenceBatcher
from mtrec.models.fast_ops import out_of_scope
from mtrec.models.model import Batch, ItemTables, MultiTaskRecommender, UserStates
from mtrec.tasks import main_metric

COLD_MAX = 5
MISS = 1 << 40  # the rank of a masked target: beyond every k


def item_train_counts(batcher: SequenceBatcher, n_items: int) -> np.ndarray:
    d = batcher.data
    return np.bincount(d.item[d.part == TRAIN], minlength=n_items + 1)


@dataclass
class Collected:
    """What evaluating a part produced, per example: next-item ranks with their target item
    and scenario; per pointwise task, ``(labels, scores, users, scenarios)`` chunks."""

    ranks: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    scenarios: list[np.ndarray] = field(default_factory=list)
    n_items: int = 0
    points: dict[str, list[tuple[np.ndarray, ...]]] = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: MultiTaskRecommender, batcher: SequenceBatcher, part: int,
             batch_size: int = 512, cold_max: int = COLD_MAX,
             autocast: bool = False, rolling: bool = True) -> dict[str, float]:
    """Metrics named ``task/metric`` (e.g. ``next_item/ndcg@10``, ``like/auc``).

    ``rolling=False`` scores every pointwise example from the earlier parts only (for
    protocols whose held-out interactions have no order among themselves: pair, cold-*).
    """
    got = collect(model, batcher, part, rolling, batch_size, autocast)
    return summarize(model, got, item_train_counts(batcher, got.n_items), cold_max)


@torch.no_grad()
def collect(model: MultiTaskRecommender, batcher: SequenceBatcher, part: int,
            rolling: bool = True, batch_size: int = 512, autocast: bool = False) -> Collected:
    """The one evaluation loop: every example of ``part`` scored through the model's
    scoring path (``encode`` -> ``catalog_logits`` / heads), no loss computed."""
    was_training = model.training
    model.eval()
    users = batcher.eval_users(part)
    tables = model.item_tables()
    got = Collected(points={name: [] for name in model.pointwise_tasks()},
                    n_items=len(tables.vectors) - 1)
    ranked = model.retrieval_task is not None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for start in range(0, len(users) if ranked or not rolling else 0, batch_size):
            chunk = users[start:start + batch_size]
            batch, history = batcher.eval_batch(chunk, part)
            states = model.encode(batch, tables)
            if not rolling:
                _points(model, batch, states, tables, chunk[batch.rows.numpy()], got)
            if ranked:
                sel = batch.next_item
                chosen = UserStates(states.h[sel], states.query[sel], states.scenario[sel])
                with torch.autocast("cpu", enabled=False):  # fp32: bf16 scores tie a lot
                    scores = model.catalog_logits(chosen, tables)
                got.ranks.append(masked_ranks(scores, batch.target[sel] - 1, history))
                got.targets.append(batch.target[sel].numpy())
                got.scenarios.append(batch.target_scenario[sel].numpy())
        step = max(1, batch_size // 4)  # rows per user can be many (windows of long parts)
        for start in range(0, len(users) if got.points and rolling else 0, step):
            batch, owners = batcher.rolling_batch(users[start:start + step], part)
            _points(model, batch, model.encode(batch, tables), tables,
                    owners[batch.rows.numpy()], got)
    model.train(was_training)
    return got


def summarize(model: MultiTaskRecommender, got: Collected, train_counts: np.ndarray,
              cold_max: int = COLD_MAX, scenario: int | None = None) -> dict[str, float]:
    """Metrics of the examples in ``got`` whose target is in ``scenario`` (None: all)."""
    metrics: dict[str, float] = {}
    if got.ranks:
        ranks, targets = np.concatenate(got.ranks), np.concatenate(got.targets)
        keep = (np.ones(len(ranks), bool) if scenario is None
                else np.concatenate(got.scenarios) == scenario)
        if keep.any():
            metrics.update(next_item_summary(ranks[keep], targets[keep], train_counts,
                                             cold_max))
    for name, parts in got.points.items():
        if not parts:
            continue
        labels, preds, who, scen = (np.concatenate([p[i] for p in parts]) for i in range(4))
        keep = np.ones(len(labels), bool) if scenario is None else scen == scenario
        if not keep.any():
            continue
        found = model.pointwise_tasks()[name].metrics(labels[keep], preds[keep], who[keep])
        metrics.update({f"{name}/{k}": v for k, v in found.items()})
        metrics[f"{name}/examples"] = float(keep.sum())
    return metrics


def next_item_summary(ranks: np.ndarray, targets: np.ndarray, train_counts: np.ndarray,
                      cold_max: int = COLD_MAX) -> dict[str, float]:
    """``next_item/*`` metrics of target ``ranks``, with the ``cold_`` subset (targets whose
    item has at most ``cold_max`` training interactions), its share and the user count."""
    metrics = {f"next_item/{k}": v for k, v in ranking_metrics(ranks).items()}
    cold = train_counts[targets] <= cold_max
    if cold.any():
        metrics.update({f"next_item/cold_{k}": v for k, v in ranking_metrics(ranks[cold]).items()})
    metrics["next_item/cold_share"] = float(cold.mean())
    metrics["next_item/users"] = float(len(ranks))
    return metrics


def evaluate_scorer(score: Callable[[list[np.ndarray]], torch.Tensor],
                    batcher: SequenceBatcher, part: int, n_items: int,
                    batch_size: int = 1024, cold_max: int = COLD_MAX,
                    scope: np.ndarray | None = None,
                    scenario: int | None = None) -> dict[str, float]:
    """Next-item metrics of any scorer on ``part``, ranked exactly as :func:`evaluate` ranks
    the model: ``score(histories)`` returns ``[B, N]`` scores of item codes ``1..N`` for
    each user's whole visible history, which is then masked.  ``scope`` (``[N + 1]``, each
    item's scenario, 0 = every one; a multi-scenario catalog): each target is ranked among
    its scenario's items only, as the model ranks it; ``scenario``: only the targets in it."""
    _, histories, targets, scenarios = batcher.next_item_queries(part)
    if scenario is not None:
        keep = np.flatnonzero(scenarios == scenario)
        histories, targets, scenarios = [histories[k] for k in keep], targets[keep], scenarios[keep]
    ranks = []
    for start in range(0, len(targets), batch_size):
        chunk = histories[start:start + batch_size]
        scores = score(chunk)
        if scope is not None and scope.any():
            rows = torch.from_numpy(scenarios[start:start + batch_size])
            scores = scores.masked_fill(out_of_scope(torch.from_numpy(scope[1:]), rows),
                                        float("-inf"))
        ranks.append(masked_ranks(scores, torch.from_numpy(targets[start:start + batch_size] - 1),
                                  chunk))
    return next_item_summary(np.concatenate(ranks), targets,
                             item_train_counts(batcher, n_items), cold_max)


def masked_ranks(scores: torch.Tensor, targets: torch.Tensor,
                 history: list[np.ndarray]) -> np.ndarray:
    """0-based ranks of ``targets`` (columns) with each row's ``history`` items (codes)
    masked; a masked target gets ``MISS``.

    >>> masked_ranks(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([2]), [np.array([2])])
    array([0])
    """
    n = scores.shape[1]
    exclude = torch.zeros(scores.shape, dtype=torch.bool)
    if history:
        lengths = np.fromiter((len(h) for h in history), np.int64, len(history))
        cols = np.concatenate(history).astype(np.int64) - 1
        if len(cols) and (cols.min() < 0 or cols.max() >= n):
            raise ValueError(f"history item codes must lie in [1, {n}], got range "
                             f"[{cols.min() + 1}, {cols.max() + 1}]")
        flat = np.repeat(np.arange(len(history), dtype=np.int64), lengths) * n
        exclude.view(-1)[torch.from_numpy(flat + cols)] = True
    rank = target_ranks_torch(scores, targets, exclude).numpy()
    # A masked target comes back as rank N, a hit at any k > N on a tiny catalog.
    return np.where(rank >= scores.shape[1], MISS, rank)


def _points(model: MultiTaskRecommender, batch: Batch, states: UserStates, tables: ItemTables,
            example_users: np.ndarray, into: Collected) -> None:
    heads = model.heads(states.h, tables.vectors[batch.target], states.scenario)
    for name, task in model.pointwise_tasks().items():
        mask = batch.label_mask[name]
        preds = task.eval_scores(heads)[mask].float().numpy()
        into.points[name].append((batch.labels[name][mask].numpy(), preds,
                                  example_users[mask.numpy()],
                                  batch.target_scenario[mask].numpy()))



def task_skill(metric: str, value: float) -> float:
    """How good a task's main metric is, on a scale where 0 is worthless: AUC above chance,
    the inverse of an error, a ranking metric as it is.

    >>> task_skill("like/auc", 0.75), task_skill("rating/rmse", 0.5), task_skill("x/ndcg@10", .1)
    (0.25, 2.0, 0.1)
    """
    if metric.endswith("auc"):
        return value - 0.5
    if lower_is_better(metric):
        return 1.0 / value if value > 0 else float("inf")
    return value


def mean_best_share(epoch: dict[str, float], history: list[dict[str, float]],
                    tasks: tuple[str, ...]) -> float:
    """Multi-task selection score of ``epoch``: the mean over tasks of its skill as a share of
    the task's best skill over ``history`` (all epochs validated so far), so every task
    counts the same however far its metric moves.

    >>> h = [{"like/auc": 0.70, "next_item/ndcg@10": 0.10},
    ...      {"like/auc": 0.60, "next_item/ndcg@10": 0.20}]
    >>> tasks = ("like", "next_item")
    >>> mean_best_share(h[0], h, tasks), mean_best_share(h[1], h, tasks)
    (0.75, 0.75)
    """
    shares = []
    for task in tasks:
        name = main_metric(task)
        if name not in epoch:
            continue
        best = max(task_skill(name, past[name]) for past in history if name in past)
        if best > 0 and np.isfinite(best):
            shares.append(task_skill(name, epoch[name]) / best)
    return float(np.mean(shares)) if shares else float("nan")


def lower_is_better(metric: str) -> bool:
    """``True`` for losses and errors (``rmse``, ``mae``, ``logloss``, ``loss``).

    >>> lower_is_better("rating/rmse"), lower_is_better("next_item/ndcg@10")
    (True, False)
    """
    name = metric.rsplit("/", 1)[-1]
    return any(name.endswith(s) for s in ("rmse", "mae", "logloss", "loss"))
