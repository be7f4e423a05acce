"""``mtrec export``: a bundle made smaller and faster to serve, checked against the original.

The exported bundle is a bundle (``mtrec eval``, ``mtrec serve`` and ``Recommender.load``
read it as any other; it leaves out the training checkpoint, the TensorBoard logs and
``item_embeddings.safetensors``, which serving does not read) whose item tables are stored
in float16 or int8 with per-row scales and whose text encoder is an ONNX graph (int8 with
``int8``); the user tower and the task heads are written beside it as ONNX graphs
(:mod:`mtrec.export.graphs`; serving still runs them in PyTorch).  Every exported part is
compared with the original at export; the figures are saved in ``config.json`` under
``export.checks``, and a part below its threshold (or above its ceiling) stops the export
with the part and the figure named (nothing is written).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec import bundle
from mtrec.export.tables import TABLE_KEYS, compress, narrowest, restore, table_error
from mtrec.export.text import (
    EMBEDDINGS,
    ONNX_BATCH,
    ExportError,
    OnnxTextEncoder,
    export_text_encoder,
)
from mtrec.tensor_files import load_weights, save_weights

COPIED = ("catalog.json", "metrics.json", "history.csv")
INTERACTIONS = "interactions.safetensors"  # rewritten with narrow integer types


@dataclass(frozen=True)
class ExportConfig:
    """What to compress and how close to the original each part must stay."""

    int8: bool = False  # the text encoder's weights (dynamic int8, per channel)
    # its token-embedding table with --int8: int8 (per row) or int4 (blocks of 32 values)
    embeddings: str = "int8"
    tables: str = "float16"  # float32, float16 or int8 (per-row scales)
    min_text_cosine: float = 0.98  # mean over the sample's items
    floor_text_cosine: float = 0.95  # worst item of the sample
    min_table_cosine: float = 0.98  # worst row of each table
    min_topk_agreement: float = 0.8  # mean overlap of each sample item's 10 nearest items
    sample: int = 1000  # catalog texts the encoder is checked on
    # user tower and task heads (ONNX float32 against PyTorch, on real users' histories)
    min_graph_cosine: float = 0.9999  # worst user's state (h, query) / task-score row
    max_graph_error: float = 1e-3  # largest absolute difference of a state or a score
    min_graph_topk: float = 0.99  # top-10 agreement: catalog next-item scores, task scores
    graph_users: int = 256  # users whose histories the graphs are checked on

    def __post_init__(self) -> None:
        if self.tables not in ("float32", "float16", "int8"):
            raise ValueError(f"--tables must be float32, float16 or int8, got {self.tables!r}")
        if self.embeddings not in EMBEDDINGS:
            raise ValueError(f"--embeddings must be {' or '.join(EMBEDDINGS)}, got "
                             f"{self.embeddings!r}")
        if self.embeddings != "int8" and not self.int8:
            raise ValueError(f"--embeddings {self.embeddings} quantises the encoder: it "
                             "needs --int8")
        if self.graph_users < 1:
            raise ValueError(f"graph_users must be >= 1, got {self.graph_users}")


def neighbour_agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest rows (cosine, itself excluded) that ``a``
    and ``b`` agree on.

    >>> x = np.eye(4, dtype=np.float32) + 0.1
    >>> neighbour_agreement(x, x, k=2)
    1.0
    """
    def top(m: np.ndarray) -> np.ndarray:
        unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]
    k = min(k, len(a) - 1)
    if k < 1:
        return 1.0
    ta, tb = top(a), top(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]))


def _check(part: str, figures: dict[str, Any], floors: dict[str, float],
           ceilings: dict[str, float] | None = None) -> None:
    for name, floor in floors.items():
        if figures[name] < floor:
            raise ExportError(f"export check failed: {part} {name} {figures[name]:.6f} is "
                              f"below {floor} (nothing was written)")
    for name, ceiling in (ceilings or {}).items():
        if figures[name] > ceiling:
            raise ExportError(f"export check failed: {part} {name} {figures[name]:.6g} is "
                              f"above {ceiling} (nothing was written)")


def _tables(weights: dict[str, torch.Tensor], config: ExportConfig
            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    packed = compress(weights, TABLE_KEYS, config.tables)
    restored = restore(packed)
    checks: dict[str, Any] = {}
    for key in TABLE_KEYS:
        if key in weights and weights[key].numel():
            figures = table_error(weights[key], restored[key])
            figures["top10_agreement"] = neighbour_agreement(
                weights[key][1: config.sample + 1].float().numpy(),
                restored[key][1: config.sample + 1].float().numpy())
            _check(f"table {key}", figures, {"min_cosine": config.min_table_cosine,
                                              "top10_agreement": config.min_topk_agreement})
            checks[key] = figures
    return packed, checks


def _text(src: Path, meta: dict[str, Any], out: Path, config: ExportConfig
          ) -> dict[str, Any] | None:
    """Export and check the text encoder; None when the bundle serves without one."""
    text_config = bundle.encoder_config(src, meta)
    if text_config is None:
        return None
    from mtrec.text.encoder import TextEncoder

    encoder = TextEncoder.from_config(replace(text_config, bf16=False))  # the reference
    export_text_encoder(encoder, out, config.int8, config.embeddings)
    key = f"{encoder.model_key}+onnx{'-int8' if config.int8 else ''}"
    key += "-int4emb" if config.embeddings == "int4" else ""
    onnx = OnnxTextEncoder(out, text_config.max_length, ONNX_BATCH, key)
    texts = [t for t in bundle.read_catalog(src).texts[1:] if t][: config.sample]
    ref, got = encoder.encode(texts), onnx.encode(texts)
    cos = (ref * got).sum(1) / np.maximum(
        np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    figures = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
               "max_abs_error": float(np.abs(ref - got).max()),
               "top10_agreement": neighbour_agreement(ref, got), "texts": len(texts)}
    _check("text encoder", figures, {"mean_cosine": config.min_text_cosine,
                                     "min_cosine": config.floor_text_cosine,
                                     "top10_agreement": config.min_topk_agreement})
    return {"key": key, "int8": config.int8, "embeddings": config.embeddings,
            "max_length": text_config.max_length,
            "batch_size": ONNX_BATCH, "checks": figures}


def _graphs(src: Path, out: Path, config: ExportConfig) -> dict[str, Any]:
    """Export the user tower and the task heads to ONNX and check each against the model."""
    from mtrec.export import graphs
    from mtrec.recommender import Recommender

    rec = Recommender.load(src)
    # traced on a few long histories; checked on batches of other lengths and sizes too
    traced = graphs.sample_batches(rec, 8, chunks=2, seed=1)[-1]
    floors = {"min_cosine": config.min_graph_cosine, "mean_cosine": config.min_graph_cosine}
    ceilings = {"max_abs_error": config.max_graph_error}
    tower = graphs.OnnxUserTower(graphs.export_user_tower(rec.model, rec.tables, traced, out))
    tower_checks, states = graphs.check_user_tower(
        rec, tower, graphs.sample_batches(rec, config.graph_users, chunks=4))
    topk = {"top10_agreement": config.min_graph_topk} if "top10_agreement" in tower_checks \
        else {}
    _check("user tower", tower_checks, {**floors, **topk}, ceilings)
    heads_file = graphs.export_heads(rec.model, out)
    heads_checks = None
    if heads_file is not None:
        heads_checks = graphs.check_heads(rec, graphs.OnnxHeads(heads_file), states)
        _check("task heads", heads_checks,
               {**floors, "top10_agreement": config.min_graph_topk}, ceilings)
    return {"user_tower": tower.file.name, "heads": heads_file.name if heads_file else None,
            "text_input": tower.needs_text,
            "checks": {"user_tower": tower_checks, "heads": heads_checks}}


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh ``OUT.partial`` folder that replaces ``out`` when the block succeeds (and is
    removed when it fails: nothing half-written is left under ``out``)."""
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    stage.replace(out)


def copy_serving_files(src: Path, stage: Path) -> None:
    for name in COPIED:
        if (src / name).is_file():
            shutil.copy2(src / name, stage / name)
    if (src / INTERACTIONS).is_file():
        arrays = load_weights(src / INTERACTIONS)
        save_weights(stage / INTERACTIONS, {k: narrowest(v) for k, v in arrays.items()})


def export_bundle(src: Path, out: Path, config: ExportConfig) -> dict[str, Any]:
    """Write the exported bundle of ``src`` to ``out`` (replacing it); its export record."""
    meta = bundle.read_meta(src)
    if meta.get("export"):
        raise ExportError(f"{src} is already an exported bundle; export its source bundle "
                          f"({meta['export']['source']})")
    with staged(out) as stage:
        weights = bundle.read_weights(src)
        packed, table_checks = _tables(weights, config)
        text = _text(src, meta, stage, config)
        graphs = _graphs(src, stage, config)
        save_weights(stage / "model.safetensors", packed)
        copy_serving_files(src, stage)
        record = {"source": str(src), "config": asdict(config), "text": text,
                  "tables": config.tables,
                  "graphs": {k: v for k, v in graphs.items() if k != "checks"},
                  "checks": {"tables": table_checks, "text": text["checks"] if text else None,
                             **graphs["checks"]}}
        (stage / "config.json").write_text(json.dumps({**meta, "export": record}, indent=2))
    return record


def exported_encoder(path: Path, meta: dict[str, Any], threads: int = 0
                     ) -> OnnxTextEncoder | None:
    """The ONNX encoder of an exported bundle (None when it has none); a missing or corrupt
    file is an :class:`ExportError` naming it."""
    text = (meta.get("export") or {}).get("text")
    if not text:
        return None
    # (bundles exported before the side-by-side batches of 16 recorded 128)
    return OnnxTextEncoder(path, int(text["max_length"]),
                           min(int(text["batch_size"]), ONNX_BATCH),
                           str(text["key"]), threads)
