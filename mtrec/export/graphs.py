"""The user tower and the task heads as ONNX graphs (opset 17, TorchScript exporter),
checked against the model at export, and the runtime that runs them with numpy inputs.

``user_tower.onnx`` is :meth:`MultiTaskRecommender.encode` at the state after each row's
whole history, the time to the next interaction unknown (as when serving): ``items``,
``behaviors``, ``scenarios``, ``gaps`` int64 ``[B, L]`` as ``eval_batch`` builds them (column
0 the begin token ``-1``, ``0`` right padding), ``scenario`` int64 ``[B]``, ``vectors``
``[B, L, dim]`` (the item-tower rows of ``items``) and, only with the text match on, ``text``
``[B, L, text_dim]`` (their raw text rows) -> ``h`` ``[B, dim]``, ``query`` ``[B, D]``.  It
holds no item table (the caller gathers the history's rows), so it stays right as items are
added to a live catalog.  ``heads.onnx`` is :meth:`MultiTaskRecommender.heads` then each
pointwise task's ``predict``: ``h``, ``v`` ``[N, dim]``, ``scenario`` ``[N]`` -> one output
``[N]`` per task, named after it.  The next-item score (``query`` times the catalog rows)
needs no graph.  Nothing falls back to TorchScript, with one workaround: traced as is,
``nn.MultiheadAttention``'s packed in-projection bakes the traced history length into its
key/value reshapes (pytorch/pytorch#110347, #117209), so the export splits the projection
with ``chunk`` instead (:func:`_traceable_attention`); the checks use other lengths.
"""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import patch

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtrec.export.text import onnx_session
from mtrec.models.model import Batch, ItemTables, MultiTaskRecommender, UserStates
from mtrec.models.text_match import TextMatch

if TYPE_CHECKING:
    from mtrec.recommender import Recommender

USER_TOWER_FILE, HEADS_FILE = "user_tower.onnx", "heads.onnx"
HISTORY_PART = 3  # every split part is history, as when serving
SEQUENCE = ("items", "behaviors", "scenarios", "gaps")
CANDIDATES = 100  # items each sampled user's task scores are checked on


def _slots(items: torch.Tensor) -> torch.Tensor:
    """Real positions' rows ``1..B*L`` in a table of the batch's own vectors (begin token and
    padding kept); no shape arithmetic, so batch and length stay dynamic in the graph."""
    return torch.where(items > 0, torch.ones_like(items).flatten().cumsum(0).reshape_as(items),
                       items)


def _table(rows: torch.Tensor) -> torch.Tensor:
    """``[B, L, d]`` -> ``[1 + B*L, d]`` with a zero row 0 (padding, as a catalog's)."""
    flat = rows.flatten(0, 1)
    return torch.cat([torch.zeros_like(flat[:1]), flat])


def last_state_batch(items: torch.Tensor, behaviors: torch.Tensor, scenarios: torch.Tensor,
                     gaps: torch.Tensor, scenario: torch.Tensor) -> Batch:
    """One example per row: the state after the row's whole (right-padded) history."""
    return Batch(items=items, behaviors=behaviors, scenarios=scenarios,
                 rows=torch.ones_like(scenario).cumsum(0) - 1, cols=(items != 0).sum(1) - 1,
                 target=torch.zeros_like(scenario), target_scenario=scenario,
                 next_item=torch.zeros_like(scenario, dtype=torch.bool), gaps=gaps)


class _Part(nn.Module):
    def __init__(self, model: MultiTaskRecommender) -> None:  # the model's own methods only
        super().__init__()
        self.model = model


class _UserTower(_Part):
    """``model.encode`` over a table made of the batch's own item (and text) vectors."""

    def forward(self, items: torch.Tensor, behaviors: torch.Tensor, scenarios: torch.Tensor,
                gaps: torch.Tensor, scenario: torch.Tensor, vectors: torch.Tensor,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        table = _table(vectors)
        unit = TextMatch.unit(_table(text)) if text is not None else None
        batch = last_state_batch(_slots(items), behaviors, scenarios, gaps, scenario)
        states = self.model.encode(batch, ItemTables(table, table, unit))
        return states.h, states.query


class _Heads(_Part):
    """``model.heads`` then each pointwise task's served score, as ``task_scores``."""

    def forward(self, h: torch.Tensor, v: torch.Tensor,
                scenario: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.model.heads(h, v, scenario)
        return tuple(t.predict(heads).float() for t in self.model.pointwise_tasks().values())


def _traceable_attention() -> AbstractContextManager[Any]:
    """Self-attention's packed in-projection as ``linear(...).chunk(3)`` (the same numbers)
    while tracing, so the exported reshapes read the history length from the graph."""
    original = F._in_projection_packed  # type: ignore[attr-defined]

    def packed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor,
               b: torch.Tensor | None = None) -> list[torch.Tensor]:
        if q is k and k is v:
            return [t.contiguous() for t in F.linear(q, w, b).chunk(3, dim=-1)]
        return original(q, k, v, w, b)

    return patch.object(F, "_in_projection_packed", packed)


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], target: Path,
            inputs: list[str], outputs: list[str], axes: dict[str, dict[int, str]]) -> Path:
    # grad stays on: in no-grad eval the transformer layers take a fused fast path
    # (``_transformer_encoder_layer_fwd``) that has no ONNX export
    with warnings.catch_warnings(), _traceable_attention():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        torch.onnx.export(module.eval(), args, str(target), input_names=inputs,
                          output_names=outputs, dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    return target


def export_user_tower(model: MultiTaskRecommender, tables: ItemTables, batch: Batch,
                      out: Path) -> Path:
    """Write ``out/user_tower.onnx``, traced on ``batch`` (:func:`sample_batches`)."""
    codes = batch.items.clamp(min=0)
    assert batch.gaps is not None
    feeds = {"items": batch.items, "behaviors": batch.behaviors, "scenarios": batch.scenarios,
             "gaps": batch.gaps, "scenario": batch.target_scenario,
             "vectors": tables.vectors[codes]}
    if model.text_match is not None and model.text_match.active:
        feeds["text"] = model.item_tower.text_vectors[codes].float()
    axes = {k: {0: "batch", 1: "history"} for k in feeds if k != "scenario"}
    axes.update({k: {0: "batch"} for k in ("scenario", "h", "query")})
    return _export(_UserTower(model), tuple(feeds.values()), out / USER_TOWER_FILE,
                   list(feeds), ["h", "query"], axes)


def export_heads(model: MultiTaskRecommender, out: Path) -> Path | None:
    """Write ``out/heads.onnx`` (None, and no file, when the model has no pointwise task)."""
    if model.mtl is None or not model.pointwise_tasks():  # (star / pepnet: next-item only)
        return None
    dim = model.item_tower.config.dim
    rows = torch.linspace(-1.0, 1.0, 3 * dim).reshape(3, dim)
    names = list(model.pointwise_tasks())
    return _export(_Heads(model), (rows, rows.flip(0), torch.tensor([1, 0, 1])),
                   out / HEADS_FILE, ["h", "v", "scenario"], names,
                   {k: {0: "rows"} for k in ["h", "v", "scenario", *names]})


class _Graph:
    """An exported graph, loaded at once: a missing or corrupt file is an ExportError."""

    def __init__(self, file: Path, threads: int = 0) -> None:
        self.session = onnx_session(file, threads)
        self.file = file
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs}))


class OnnxUserTower(_Graph):
    """The exported user tower: histories -> (``h``, ``query``), as ``model.encode``."""

    @property
    def needs_text(self) -> bool:
        return "text" in self.inputs

    def encode(self, sequence: dict[str, np.ndarray], scenario: np.ndarray,
               item_vectors: np.ndarray, text_vectors: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """States after each row of ``sequence`` (``items``, ``behaviors``, ``scenarios``,
        ``gaps``: int ``[B, L]``) in ``scenario`` ``[B]``; ``item_vectors`` ``[N + 1, dim]``
        and ``text_vectors`` (raw; when :attr:`needs_text`) are the catalog's, of any size."""
        codes = np.clip(sequence["items"], 0, None)
        feeds = {k: np.asarray(sequence[k], dtype=np.int64) for k in SEQUENCE}
        feeds["scenario"] = np.asarray(scenario, dtype=np.int64)
        feeds["vectors"] = np.asarray(item_vectors, dtype=np.float32)[codes]
        if self.needs_text:
            if text_vectors is None:
                raise ValueError(f"{self.file}: this user tower reads the text vectors of the "
                                 "history (text match); pass text_vectors")
            feeds["text"] = np.asarray(text_vectors, dtype=np.float32)[codes]
        h, query = self._run(feeds)
        return h, query


class OnnxHeads(_Graph):
    """The exported task heads: (``h``, ``v``, ``scenario``) -> served score per task."""

    def scores(self, h: np.ndarray, v: np.ndarray, scenario: np.ndarray
               ) -> dict[str, np.ndarray]:
        out = self._run({"h": h.astype(np.float32), "v": v.astype(np.float32),
                         "scenario": scenario.astype(np.int64)})
        return dict(zip(self.outputs, out, strict=True))


def exported_graphs(path: Path, meta: dict[str, Any], threads: int = 0
                    ) -> tuple[OnnxUserTower | None, OnnxHeads | None]:
    """The user tower and heads graphs an exported bundle records (None where it has none)."""
    graphs = (meta.get("export") or {}).get("graphs") or {}
    tower, heads = graphs.get("user_tower"), graphs.get("heads")
    return (OnnxUserTower(path / tower, threads) if tower else None,
            OnnxHeads(path / heads, threads) if heads else None)


# ---------------------------------------------------------------------- checks
def sample_batches(rec: Recommender, users: int, chunks: int = 1, seed: int = 0
                   ) -> list[Batch]:
    """Histories of up to ``users`` of the bundle's users (every interaction it knows) in
    ``chunks`` batches of similar length (so of different padded lengths), each user scored
    in the scenario of their latest interaction."""
    offsets, batches = rec.batcher.data.offsets, []
    chosen = np.random.default_rng(seed).permutation(np.arange(1, len(offsets) - 1))[:users]
    by_length = chosen[np.argsort(np.diff(offsets)[chosen], kind="stable")]
    for part in np.array_split(by_length, max(1, min(chunks, len(chosen)))):
        seq, _ = rec.batcher.eval_batch(part, HISTORY_PART)
        assert seq.gaps is not None  # eval batches carry their gaps
        scenario = seq.scenarios[torch.arange(len(part)), (seq.items != 0).sum(1) - 1]
        scenario[scenario <= 0] = rec.default_scenario  # no history: the default scenario
        batches.append(last_state_batch(seq.items, seq.behaviors, seq.scenarios, seq.gaps,
                                        scenario))
    return batches


def row_figures(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Row cosine (mean, worst) and the largest absolute error of ``got`` against ``ref``."""
    cos = (ref * got).sum(1) / np.maximum(
        np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "max_abs_error": float(np.abs(ref - got).max())}


def topk_agreement(ref: np.ndarray, got: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` highest scores that ``ref`` and ``got`` agree on."""
    k = min(k, ref.shape[1])
    if k < 1 or not len(ref):
        return 1.0
    tops = [np.argsort(-m, axis=1, kind="stable")[:, :k] for m in (ref, got)]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(*tops, strict=True)]))


@torch.no_grad()
def check_user_tower(rec: Recommender, graph: OnnxUserTower, batches: list[Batch]
                     ) -> tuple[dict[str, float], UserStates]:
    """The graph's states against ``model.encode`` (and the catalog's next-item top 10 from
    them); the reference states."""
    model, tables = rec.model, rec.tables
    refs = [model.encode(batch, tables) for batch in batches]
    ref = UserStates(*(torch.cat([getattr(r, k) for r in refs])
                       for k in ("h", "query", "scenario")))
    text = model.item_tower.text_vectors.float().numpy() if graph.needs_text else None
    got = [graph.encode({k: getattr(b, k).numpy() for k in SEQUENCE},
                        b.target_scenario.numpy(), tables.vectors.numpy(), text)
           for b in batches]
    h, query = (np.concatenate([g[i] for g in got]) for i in (0, 1))
    figures: dict[str, float] = {
        **row_figures(torch.cat([ref.h, ref.query], 1).numpy(), np.concatenate([h, query], 1)),
        "users": len(h), "lengths": len({b.items.shape[1] for b in batches})}
    if model.retrieval_task is not None:
        mine = UserStates(torch.from_numpy(h), torch.from_numpy(query), ref.scenario)
        figures["top10_agreement"] = topk_agreement(
            model.catalog_logits(ref, tables).numpy(), model.catalog_logits(mine, tables).numpy())
    return figures, ref


@torch.no_grad()
def check_heads(rec: Recommender, graph: OnnxHeads, states: UserStates, seed: int = 0
                ) -> dict[str, Any]:
    """The graph's task scores against ``model.task_scores`` on ``CANDIDATES`` random items
    per user (each task's figures; the worst over tasks on top)."""
    model, tables = rec.model, rec.tables
    rng, items = np.random.default_rng(seed), len(tables.vectors) - 1
    codes = 1 + np.stack([rng.choice(items, min(items, CANDIDATES), replace=False)
                          for _ in range(len(states.h))])
    scores = model.task_scores(states, tables, torch.from_numpy(codes))
    t, n = codes.shape
    got = graph.scores(np.repeat(states.h.numpy(), n, 0), tables.vectors.numpy()[codes.ravel()],
                       np.repeat(states.scenario.numpy(), n))
    tasks = {}
    for name in model.pointwise_tasks():
        ref, mine = scores[name].numpy(), got[name].reshape(t, n)
        tasks[name] = {**row_figures(ref, mine), "top10_agreement": topk_agreement(ref, mine)}
    worst = {k: min(f[k] for f in tasks.values())
             for k in ("min_cosine", "mean_cosine", "top10_agreement")}
    return {**worst, "max_abs_error": max(f["max_abs_error"] for f in tasks.values()),
            "users": t, "items_per_user": n, "tasks": tasks}
