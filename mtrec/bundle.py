"""The bundle directory a training run writes, and reading it back without pickle.

Files: ``config.json`` (the resolved run config and the catalog it was trained on),
``model.safetensors`` (weights, including the cached text vectors), ``item_embeddings
.safetensors`` (final item vectors), ``catalog.json`` (item ids, texts, user ids,
scenarios), ``interactions.safetensors`` (the users' histories, for recommending),
``metrics.json`` and the training ``history.csv``.  The trainer also leaves
``checkpoint/{best,last}`` (the selection's) and, with ``train.refit``, ``refit/`` (the refit's
``history.csv`` and checkpoints): what ``--resume`` continues from, not needed to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtrec.data.interactions import Catalog, Interactions, Prepared
from mtrec.models.model import MultiTaskRecommender
from mtrec.tensor_files import load_weights, save_weights

if TYPE_CHECKING:
    from mtrec.run_config import RunConfig
    from mtrec.text.encoder import TextEncoder, TextEncoderConfig

FORMAT = 1
# a bundle's own text encoder (Hugging Face format): a distilled student or a fine-tuned one
TEXT_MODEL_DIR = "text_model"
_ARRAYS = ("user", "item", "behaviors", "scenario", "rating", "ts", "part", "offsets")


class BundleError(ValueError):
    """A bundle is missing, incomplete, or used with data it was not trained on."""


def save(out_dir: Path, config: RunConfig, prepared: Prepared, model: MultiTaskRecommender,
         metrics: dict[str, Any], store: Path | None = None,
         text_encoder: TextEncoder | None = None, extra: dict[str, Any] | None = None
         ) -> Path:
    """Write the bundle; ``store``: the store file it was trained from (evaluation finds
    it there when the dataset is not under the store directory it is given);
    ``text_encoder``: a fine-tuned encoder, saved as the bundle's own (``TEXT_MODEL_DIR``);
    ``extra``: more entries for ``config.json`` (e.g. what a pre-training ran on)."""
    from mtrec.config import to_dict

    cat = prepared.catalog
    tuned = None
    if text_encoder is not None:
        text_encoder.save_tuned(out_dir / TEXT_MODEL_DIR)
        tuned = {"mode": text_encoder.config.mode, "dir": TEXT_MODEL_DIR}
    meta = {"format": FORMAT, "run": to_dict(config), "dataset": prepared.dataset,
            "text_tuned": tuned,
            "protocol": prepared.protocol, "causal_parts": prepared.causal_parts,
            "n_items": cat.n_items,
            "n_scenarios": len(cat.scenarios), "fingerprint": cat.fingerprint(),
            "text_dim": int(model.item_tower.text_vectors.shape[1]),
            "store": str(store) if store is not None else None, **(extra or {})}
    _write_json(out_dir / "config.json", meta)
    save_weights(out_dir / "model.safetensors", model.state_dict())
    model.eval()
    with torch.no_grad():
        save_weights(out_dir / "item_embeddings.safetensors", {"items": model.item_tower()})
    _write_json(out_dir / "catalog.json", {
        "item_ids": [str(i) for i in cat.item_ids], "texts": cat.texts,
        "user_ids": [str(u) for u in cat.user_ids], "scenarios": list(cat.scenarios),
        "categories": cat.categories, "item_scenarios": cat.item_scenarios.tolist()})
    inter = prepared.interactions
    save_weights(out_dir / "interactions.safetensors",
                 {k: torch.from_numpy(np.ascontiguousarray(getattr(inter, k)))
                  for k in _ARRAYS})
    _write_json(out_dir / "metrics.json", metrics)
    return out_dir


def read_meta(path: Path) -> dict[str, Any]:
    file = path / "config.json"
    if not file.is_file():
        raise BundleError(f"{path}: not a bundle (no config.json); train one with `mtrec train`")
    meta: dict[str, Any] = json.loads(file.read_text())
    if meta.get("format") != FORMAT:
        raise BundleError(f"{file}: bundle format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def read_catalog(path: Path) -> Catalog:
    data = json.loads((path / "catalog.json").read_text())
    return Catalog(np.array(data["item_ids"], dtype=object), list(data["texts"]),
                   np.array(data["user_ids"], dtype=object), tuple(data["scenarios"]),
                   list(data.get("categories", [])),
                   np.asarray(data.get("item_scenarios", []), dtype=np.int64))


def read_interactions(path: Path) -> Interactions:
    """The bundle's interactions, integer arrays in int64 (``part`` int8, ``rating``
    float32) whatever width they were stored in (an exported bundle stores the narrowest
    that holds them)."""
    arrays = load_weights(path / "interactions.safetensors")
    return Interactions(**{k: _widened(k, arrays[k].numpy()) for k in _ARRAYS})


def _widened(name: str, values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float16:
        return values.astype(np.float32)
    if values.dtype.kind != "i":
        return values
    wide = {"part": np.int8, "rating": np.float32}.get(name, np.int64)
    return values.astype(wide, copy=False)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model's weights in float32 (an exported bundle's compressed tables restored;
    bundles from before the task registry read under today's keys)."""
    from mtrec.export.tables import restore

    return MultiTaskRecommender.upgrade_state_dict(
        restore(load_weights(path / "model.safetensors")))


def encoder_config(path: Path, meta: dict[str, Any]) -> TextEncoderConfig | None:
    """How to build the text encoder that serves ``path`` (frozen), or None when the bundle
    has none to serve with: a distilled bundle's student and a fine-tuned encoder are the
    bundle's own ``TEXT_MODEL_DIR`` (bundles fine-tuned before it was saved have none)."""
    from dataclasses import replace

    from mtrec.config import from_dict
    from mtrec.run_config import RunConfig

    if not meta.get("text_dim"):
        return None
    text = from_dict(RunConfig, meta["run"], f"{path / 'config.json'}: run").model.text
    if meta.get("distill") or meta.get("text_tuned"):
        own = path / TEXT_MODEL_DIR
        if not own.is_dir():
            raise BundleError(f"{own}: the bundle's own text encoder is missing; train or "
                              "distil the bundle again")
        return replace(text, model=str(own.resolve()), mode="frozen")
    return replace(text, mode="frozen") if text.mode == "frozen" else None


def check_fits(meta: dict[str, Any], catalog: Catalog, where: str) -> None:
    """Refuse to use a bundle with a catalog other than the one it was trained on."""
    if catalog.fingerprint() != meta["fingerprint"] or catalog.n_items != meta["n_items"]:
        raise BundleError(
            f"the bundle was trained on {meta['dataset']!r} ({meta['n_items']} items, "
            f"catalog {meta['fingerprint']}); {where} has {catalog.n_items} items "
            f"(catalog {catalog.fingerprint()})")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
