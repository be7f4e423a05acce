"""Compressed item tables for an exported bundle: float16, or int8 with one scale per row.

A table is a float tensor ``[rows, dim]`` in the model's weights (the cached text vectors,
the item ID embeddings).  Compressed, it is stored as ``KEY`` (float16 or int8) plus, for
int8, ``KEY@scale`` (float32 ``[rows]``); :func:`restore` turns a stored dict back into
float32 weights, so the model loads as any bundle's.

>>> import torch
>>> w = {"t": torch.tensor([[254.0, -128.0], [0.0, 0.0]])}
>>> packed = compress(w, ("t",), "int8")
>>> packed["t"].tolist(), packed["t@scale"].tolist()
([[127, -64], [0, 0]], [2.0, 0.0])
>>> restore(packed)["t"].tolist()
[[254.0, -128.0], [0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
import torch

SCALE = "@scale"
KINDS = ("float32", "float16", "int8")
#: the weights that are per-item tables (rows grow with the catalog)
TABLE_KEYS = ("item_tower.text_vectors", "item_tower.ids.weight")


def compress(weights: dict[str, torch.Tensor], keys: tuple[str, ...], kind: str
             ) -> dict[str, torch.Tensor]:
    """``weights`` with the tables ``keys`` stored as ``kind``; the rest unchanged."""
    if kind not in KINDS:
        raise ValueError(f"table precision {kind!r}: expected one of {', '.join(KINDS)}")
    out = dict(weights)
    for key in keys:
        table = weights.get(key)
        if table is None or kind == "float32" or not table.numel():
            continue  # (an ID-only model's text table is [N + 1, 0]: nothing to pack)
        if kind == "float16":
            out[key] = table.to(torch.float16)
            continue
        scale = table.abs().amax(dim=1).float() / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        out[key] = torch.round(table.float() / safe[:, None]).clamp(-127, 127).to(torch.int8)
        out[key + SCALE] = scale
    return out


def restore(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 weights from :func:`compress`'s output (uncompressed dicts pass through)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in stored.items():
        if key.endswith(SCALE):
            continue
        scale = stored.get(key + SCALE)
        if scale is not None:
            out[key] = tensor.float() * scale[:, None]
        elif tensor.dtype == torch.float16:
            out[key] = tensor.float()
        else:
            out[key] = tensor
    return out


def table_error(original: torch.Tensor, restored: torch.Tensor) -> dict[str, float]:
    """Worst-row cosine and largest absolute error of a restored table."""
    a, b = original.float(), restored.float()
    live = a.norm(dim=1) > 0
    cos = torch.nn.functional.cosine_similarity(a[live], b[live], dim=1)
    return {"min_cosine": float(cos.min()) if live.any() else 1.0,
            "max_abs_error": float((a - b).abs().max()) if a.numel() else 0.0}


def narrowest(values: torch.Tensor) -> torch.Tensor:
    """The narrowest type that holds every value exactly: a signed integer type for whole
    numbers, float16 for other floats it holds (half stars; nan, a missing rating), else
    unchanged.  For the bundle's interaction arrays (codes, bitmasks and offsets in int64,
    ratings in float32); reading widens them back (``mtrec.bundle.read_interactions``).

    >>> narrowest(torch.tensor([0, 300, -2])).dtype, narrowest(torch.tensor([1.0, 5.0])).dtype
    (torch.int16, torch.int8)
    >>> [narrowest(torch.tensor([v])).dtype for v in (1.5, float("nan"), 0.1)]
    [torch.float16, torch.float16, torch.float32]
    """
    if values.dtype == torch.bool or not values.numel():
        return values
    if values.is_floating_point() and not bool(
            (torch.isfinite(values) & (values == values.round())).all()):
        half = values.to(torch.float16)  # e.g. half stars, or no ratings at all (nan)
        same = (half.float() == values) | (values.isnan() & half.isnan())
        return half if bool(same.all()) else values
    lo, hi = int(values.min()), int(values.max())
    for dtype in (torch.int8, torch.int16, torch.int32):
        info = np.iinfo(str(dtype).removeprefix("torch."))
        if info.min <= lo and hi <= info.max:
            return values.to(dtype)
    return values
