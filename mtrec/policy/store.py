"""A trained policy inside a bundle: ``policy/policy.safetensors`` (its weights and the item
popularity it reads) and ``policy/policy.json`` (feature names, how it was trained and
checked: the protocol, the training curve, the simulator's validation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from mtrec.policy.agent import SlatePolicy
from mtrec.policy.env import DYNAMIC
from mtrec.tensor_files import load_weights, save_weights

FOLDER = "policy"
FORMAT = 1


class PolicyError(ValueError):
    """A bundle has no policy, or its policy files are unreadable."""


def has_policy(bundle: Path) -> bool:
    return (Path(bundle) / FOLDER / "policy.json").is_file()


def save_policy(bundle: Path, policy: SlatePolicy, popularity: np.ndarray,
                meta: dict[str, Any]) -> Path:
    folder = Path(bundle) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in policy.state_dict().items()}
    tensors["popularity"] = torch.from_numpy(np.asarray(popularity, np.float64))
    save_weights(folder / "policy.safetensors", tensors)
    static = [n for n in policy.item_names if n not in DYNAMIC]
    info = {"format": FORMAT, "item_features": static, **meta}
    (folder / "policy.json").write_text(json.dumps(info, indent=2, default=float))
    return folder


def load_policy(bundle: Path) -> tuple[SlatePolicy, np.ndarray, dict[str, Any]]:
    """The bundle's policy, the popularity it reads, and its ``policy.json``."""
    folder = Path(bundle) / FOLDER
    info_file, weights_file = folder / "policy.json", folder / "policy.safetensors"
    if not info_file.is_file():
        raise PolicyError(f"{bundle}: the bundle has no ranking policy ({info_file} is "
                          "missing); train one with `mtrec policy train`")
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{info_file}: unreadable ({exc})") from exc
    try:
        tensors = load_weights(weights_file)
    except (OSError, ValueError, SafetensorError) as exc:
        raise PolicyError(f"{weights_file}: unreadable policy weights ({exc})") from exc
    if info.get("format") != FORMAT:
        raise PolicyError(f"{info_file}: policy format {info.get('format')!r}, expected "
                          f"{FORMAT}")
    names = tuple(info["item_features"])
    width = len(names) + len(DYNAMIC)
    policy = SlatePolicy(names, np.zeros(width), np.ones(width))
    if "popularity" not in tensors:
        raise PolicyError(f"{weights_file}: no 'popularity' tensor (not a policy file)")
    popularity = tensors.pop("popularity").numpy()
    try:
        policy.load_state_dict(tensors)
    except RuntimeError as exc:
        raise PolicyError(f"{weights_file}: does not fit the features in {info_file}: "
                          f"{exc}") from exc
    return policy.eval(), popularity, info
