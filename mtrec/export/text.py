"""The text encoder as an ONNX graph (token ids -> mean-pooled vectors), optionally with
dynamic int8 quantisation (per-channel weights), and the runtime that encodes with it.

Exported with ``torch.onnx.export`` (the TorchScript exporter) and quantised with
``onnxruntime.quantization``; ``optimum`` is not used (it downgrades transformers).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.text.encoder import TextEncoder, mean_pool

MODEL_FILE = "text_encoder.onnx"
TOKENIZER_DIR = "tokenizer"


class ExportError(ValueError):
    """An export failed its accuracy check, or an exported bundle cannot be used."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a dependency of mtrec
        raise ExportError("exported bundles need onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def onnx_session(file: Path, threads: int = 0) -> Any:
    """An onnxruntime session over ``file`` (``threads`` 0: its default), loaded now: a
    missing or corrupt file is an :class:`ExportError` naming it."""
    ort = _onnxruntime()
    if not file.is_file():
        raise ExportError(f"{file}: missing from the exported bundle; export it again with "
                          "`mtrec export`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for corrupt files
        raise ExportError(f"{file}: cannot be loaded ({exc})") from exc


class _Pooled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return mean_pool(out.last_hidden_state.float(), attention_mask)


def export_text_encoder(encoder: TextEncoder, out_dir: Path, int8: bool) -> Path:
    """Write ``out_dir/text_encoder.onnx`` (int8 when asked) and the tokenizer beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / MODEL_FILE
    sample = encoder.tokenize(["an example title", "a somewhat longer example item title"])
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "vectors": {0: "batch"}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        plain = Path(tmp) / "fp32.onnx"
        torch.onnx.export(_Pooled(encoder.model.eval()),
                          (sample["input_ids"], sample["attention_mask"]), str(plain),
                          input_names=["input_ids", "attention_mask"],
                          output_names=["vectors"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()  # its advice to pre-process goes to the root logger
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                # MatMul and the embedding lookups (Gather): 23 MB instead of 57 MB with
                # MatMul only, at the same speed (Beauty titles: worst cosine 0.980 vs 0.983)
                quantize_dynamic(str(plain), str(target), per_channel=True,
                                 weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
        else:
            plain.replace(target)
    encoder.tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
    return target


class OnnxTextEncoder:
    """Encodes text as :class:`TextEncoder` does, with an exported ONNX graph."""

    def __init__(self, folder: Path, max_length: int, batch_size: int, key: str,
                 threads: int = 0) -> None:
        from transformers import AutoTokenizer

        tokenizer_dir = folder / TOKENIZER_DIR
        self.session = onnx_session(folder / MODEL_FILE, threads)
        if not tokenizer_dir.exists():
            raise ExportError(f"{tokenizer_dir}: missing from the exported bundle; export it "
                              "again with `mtrec export`")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir),
                                                           local_files_only=True)
        except Exception as exc:
            raise ExportError(f"{tokenizer_dir}: cannot be loaded ({exc})") from exc
        self.max_length, self.batch_size, self.model_key = max_length, batch_size, key
        self.dim = int(self.encode(["probe"]).shape[1])

    def encode(self, texts: Sequence[str], batch_size: int | None = None,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Float32 vectors ``[N, dim]`` in input order (batches of similar length)."""
        texts = list(texts)
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            batch = self.tokenizer([texts[i] for i in rows], padding="longest",
                                   truncation=True, max_length=self.max_length,
                                   return_tensors="np")
            vectors = self.session.run(None, {
                "input_ids": batch["input_ids"].astype(np.int64),
                "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            if progress is not None:
                progress(len(rows))
        return out if out is not None else np.zeros((0, getattr(self, "dim", 0)), np.float32)
