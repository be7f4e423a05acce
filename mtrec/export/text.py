"""The text encoder as an ONNX graph (token ids -> mean-pooled vectors), optionally with
dynamic int8 quantisation (per-channel weights), and the runtime that encodes with it.

Exported with ``torch.onnx.export`` (the TorchScript exporter) and quantised with
``onnxruntime.quantization``; ``optimum`` is not used (it downgrades transformers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.text.encoder import TextEncoder, mean_pool

MODEL_FILE = "text_encoder.onnx"
TOKENIZER_DIR = "tokenizer"
# Texts per ONNX run. The int8 graph is fastest on small batches run side by side, one
# thread each: on Beauty's catalog texts (2 cores) 801 titles/s for batches of 16 on two
# threads against 488 for batches of 128 on a two-thread session (benchmarks/export_costs
# before and after; in one-off trials 32 and 64 were slower, 8 about the same).
ONNX_BATCH = 16
EMBEDDINGS = ("int8", "int4")  # how --int8 stores the token-embedding table
EMBEDDING_BLOCK = 32  # int4: values sharing one scale


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


def export_text_encoder(encoder: TextEncoder, out_dir: Path, int8: bool,
                        embeddings: str = "int8") -> Path:
    """Write ``out_dir/text_encoder.onnx`` (int8 when asked; its token embeddings in int8 or
    int4 blocks) and the tokenizer beside it."""
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
            _quantize(plain, target, embeddings, Path(tmp))
        else:
            plain.replace(target)
    encoder.tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
    return target


def _quantize(plain: Path, target: Path, embeddings: str, tmp: Path) -> None:
    """Dynamic per-channel int8 for the matrix products; the embedding lookups (Gather) in
    int8 too (23 MB instead of 57 MB with MatMul only, at the same speed) or, for "int4",
    in blocks of 32 four-bit values with one scale each (18 MB; Beauty's catalog texts:
    mean cosine to float32 0.988 against 0.992)."""
    with _quiet_root_logger():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        source, ops = plain, ["MatMul", "Gather"]
        if embeddings == "int4":
            source, ops = tmp / "int4-embeddings.onnx", ["MatMul"]
            _int4_embeddings(plain, source)
        quantize_dynamic(str(source), str(target), per_channel=True,
                         weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                         extra_options={"DefaultTensorType": 1})  # float, where unknown


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantisers log to the root logger (advice to pre-process, every node),
    and importing the 4-bit one configures it (a handler at INFO): both undone on exit."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _int4_embeddings(plain: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    logging.getLogger().setLevel(logging.ERROR)  # its import set the root logger to INFO

    ops, axes = ("Gather",), (("Gather", 1),)  # blocks along each token's vector
    algo = nbits.DefaultWeightOnlyQuantConfig(block_size=EMBEDDING_BLOCK, is_symmetric=True,
                                              bits=4, op_types_to_quantize=ops,
                                              quant_axes=axes)
    quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(plain)), bits=4,
                                           block_size=EMBEDDING_BLOCK, is_symmetric=True,
                                           op_types_to_quantize=ops, quant_axes=axes,
                                           algo_config=algo)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out))


class OnnxTextEncoder:
    """Encodes text as :class:`TextEncoder` does, with an exported ONNX graph: batches of
    ``batch_size`` texts of similar length, up to ``threads`` of them at once (one thread
    each; 0: one per CPU)."""

    def __init__(self, folder: Path, max_length: int, batch_size: int, key: str,
                 threads: int = 0) -> None:
        from transformers import AutoTokenizer

        tokenizer_dir = folder / TOKENIZER_DIR
        self.session = onnx_session(folder / MODEL_FILE, threads=1)
        if not tokenizer_dir.exists():
            raise ExportError(f"{tokenizer_dir}: missing from the exported bundle; export it "
                              "again with `mtrec export`")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir),
                                                           local_files_only=True)
        except Exception as exc:
            raise ExportError(f"{tokenizer_dir}: cannot be loaded ({exc})") from exc
        self.max_length, self.batch_size, self.model_key = max_length, batch_size, key
        self.threads = threads if threads > 0 else max(1, os.cpu_count() or 1)
        self.dim = int(self.encode(["probe"]).shape[1])

    def _run(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding="longest", truncation=True,
                               max_length=self.max_length, return_tensors="np")
        return self.session.run(None, {  # onnxruntime releases the GIL while it runs
            "input_ids": batch["input_ids"].astype(np.int64),
            "attention_mask": batch["attention_mask"].astype(np.int64)})[0]

    def encode(self, texts: Sequence[str], batch_size: int | None = None,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Float32 vectors ``[N, dim]`` in input order."""
        texts = list(texts)
        size = batch_size or self.batch_size
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [order[start : start + size] for start in range(0, len(order), size)]
        batches = [[texts[i] for i in rows] for rows in chunks]
        if not chunks:
            return np.zeros((0, getattr(self, "dim", 0)), np.float32)
        workers = min(self.threads, len(chunks))
        with ThreadPoolExecutor(workers) if workers > 1 else _Inline() as pool:
            out: np.ndarray | None = None
            for rows, vectors in zip(chunks, pool.map(self._run, batches), strict=True):
                if out is None:
                    out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
                out[rows] = vectors
                if progress is not None:
                    progress(len(rows))
        assert out is not None
        return out


class _Inline:
    """The executor interface, running in the calling thread (one batch, or one thread)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn: Callable[[list[str]], np.ndarray], items: list[list[str]]
            ) -> Iterator[np.ndarray]:
        return map(fn, items)
