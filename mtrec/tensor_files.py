"""Tensors to and from safetensors files (no pickle), written atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor


def save_weights(
    path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` to a safetensors file; tensors that share memory are stored as copies."""
    path = Path(path)
    seen: set[tuple[str, int]] = set()
    prepared: dict[str, Tensor] = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        storage = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if tensor.numel() and storage in seen:
            tensor = tensor.clone()
        seen.add(storage)
        prepared[key] = tensor.contiguous()
    partial = path.with_name(f"{path.name}.partial")
    save_file(prepared, str(partial), metadata=metadata)
    fsync(partial)
    os.replace(partial, path)


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """Read every tensor of a safetensors file (tied tensors come back as separate keys)."""
    return load_file(str(path))


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError) if path.is_dir() else contextlib.nullcontext():
            os.fsync(fd)  # some platforms cannot fsync a directory
    finally:
        os.close(fd)
