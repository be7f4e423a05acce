"""Pickle-free training checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint directory holds the parts ``model``, ``optimizer``, ``scheduler``, ``rng`` and
``state``, each a nested structure in ``<part>.json`` whose tensors sit in ``<part>.safetensors``
under dotted keys (``model.safetensors`` keeps every ``state_dict`` key, tied ones included;
``optimizer.safetensors`` has keys like ``state.0.exp_avg``); a ``COMPLETE`` marker comes last.

Saving fills a sibling ``.<name>.tmp``, renames the old checkpoint to ``.<name>.old``, renames the
new one into place and deletes the old one. A kill at any moment leaves a complete checkpoint at
``<name>`` or, between the renames, at ``.<name>.old``, which loading falls back to. Temporary
directories are never loaded; one without ``COMPLETE`` counts as absent. One writer at a time.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtrec.tensor_files import fsync as _fsync
from mtrec.tensor_files import load_weights, save_weights

COMPLETE = "COMPLETE"
_MARKERS = frozenset({"__tensor__", "__tuple__", "__items__"})
_NUMPY_FIELDS = ("name", "keys", "pos", "has_gauss", "cached_gaussian")


class CheckpointError(FileNotFoundError):
    """A checkpoint is missing, incomplete, or does not fit the objects it is loaded into."""


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` (or the backup an interrupted swap left) is a complete checkpoint."""
    return _resolve(Path(directory)) is not None


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Atomically write model, optimizer, scheduler, RNG and ``state`` into ``directory``."""
    directory = Path(directory)
    tmp, old = _siblings(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove(tmp)
    tmp.mkdir()
    try:
        _write_part(tmp, "model", model.state_dict(), always_tensors=True)
        if optimizer is not None:
            _write_part(tmp, "optimizer", optimizer.state_dict(), always_tensors=True)
        if scheduler is not None:
            _write_part(tmp, "scheduler", scheduler.state_dict())
        _write_part(tmp, "rng", _rng_state(), always_tensors=True)
        _write_part(tmp, "state", dict(state or {}))
        _write_json(tmp / COMPLETE, {"format": 1})
        _fsync(tmp)
    except BaseException:
        _remove(tmp)
        raise
    if directory.exists():
        if _complete(directory):
            _remove(old)  # a stale backup whose deletion was interrupted
            directory.rename(old)
        else:
            _remove(directory)  # never a finished checkpoint; a complete backup stays the fallback
    tmp.rename(directory)
    _fsync(directory.parent)
    _remove(old)
    return directory


def load_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the given objects; return the state dict."""
    found = _resolve(Path(directory))
    if found is None:
        raise CheckpointError(
            f"no complete checkpoint at {directory} (missing, or without its {COMPLETE} marker)"
        )
    weights = _read_part(found, "model")
    _check_model(found, model, weights)
    model.load_state_dict(weights, strict=True)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(_read_part(found, "optimizer"))
        except ValueError as error:
            raise CheckpointError(f"optimizer state in {found} does not fit: {error}") from error
    if scheduler is not None:
        scheduler.load_state_dict(_read_part(found, "scheduler"))
    if restore_rng:
        _set_rng_state(_read_part(found, "rng"))
    return dict(_read_part(found, "state"))


def _check_model(directory: Path, model: nn.Module, weights: dict[str, Any]) -> None:
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    shapes = [
        f"{key}: checkpoint {tuple(weights[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if isinstance(value, Tensor)
        and isinstance(weights.get(key), Tensor)
        and weights[key].shape != value.shape
    ]
    named = (("missing keys", missing), ("unexpected keys", unexpected), ("shapes", shapes))
    problems = "; ".join(f"{len(got)} {what}, first {got[:5]}" for what, got in named if got)
    if problems:
        raise CheckpointError(f"checkpoint {directory} does not fit the model: {problems}")


def _rng_state() -> dict[str, Any]:
    numpy = dict(zip(_NUMPY_FIELDS, np.random.get_state(legacy=True), strict=True))
    numpy["keys"] = torch.from_numpy(np.array(numpy["keys"], dtype=np.uint32))
    state = {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = {**state["numpy"], "keys": state["numpy"]["keys"].numpy()}
    legacy: Any = tuple(numpy[field] for field in _NUMPY_FIELDS)
    np.random.set_state(legacy)
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _write_part(directory: Path, name: str, obj: Any, always_tensors: bool = False) -> None:
    tensors: dict[str, Tensor] = {}
    _write_json(directory / f"{name}.json", _encode(obj, "", tensors))
    if tensors or always_tensors:
        save_weights(directory / f"{name}.safetensors", tensors)


def _read_part(directory: Path, name: str) -> Any:
    path = directory / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {directory} holds no {name} state ({path.name})")
    weights = directory / f"{name}.safetensors"
    tensors = load_weights(weights) if weights.is_file() else {}
    return _decode(json.loads(path.read_text(encoding="utf-8")), tensors)


def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-able form of ``obj``; tensors go to ``tensors`` under their dotted path."""
    if isinstance(obj, Tensor):
        key = path or "tensor"
        while key in tensors:
            key += "_"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, tuple | list):
        items = [_encode(value, _join(path, i), tensors) for i, value in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        items = [(key, _encode(value, _join(path, key), tensors)) for key, value in obj.items()]
        if all(isinstance(key, str) for key in obj) and not _MARKERS & obj.keys():
            return dict(items)  # otherwise keys that JSON cannot hold (ints) go in a pair list
        return {"__items__": [[_encode(key, path, tensors), value] for key, value in items]}
    raise TypeError(f"cannot store a {type(obj).__name__} at {path!r} without pickle")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(value, tensors) for value in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.keys() == {"__tensor__"}:
        return tensors[obj["__tensor__"]]
    if obj.keys() == {"__tuple__"}:
        return tuple(_decode(value, tensors) for value in obj["__tuple__"])
    if obj.keys() == {"__items__"}:
        return {_decode(key, tensors): _decode(value, tensors) for key, value in obj["__items__"]}
    return {key: _decode(value, tensors) for key, value in obj.items()}


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _write_json(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def _siblings(directory: Path) -> tuple[Path, Path]:
    name = directory.name
    return directory.with_name(f".{name}.tmp"), directory.with_name(f".{name}.old")


def _complete(directory: Path) -> bool:
    return (directory / COMPLETE).is_file()


def _resolve(directory: Path) -> Path | None:
    if _complete(directory):
        return directory
    old = _siblings(directory)[1]
    return old if _complete(old) else None


def _remove(directory: Path) -> None:
    """Delete a checkpoint, its marker first so that a partial deletion never looks complete."""
    if directory.exists():
        (directory / COMPLETE).unlink(missing_ok=True)
        shutil.rmtree(directory)
