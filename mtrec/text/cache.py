"""An on-disk cache of text embeddings, one safetensors file per encoder ``model_key``.

Each file holds ``keys`` (uint8 [M, 32], sha256 of ``model_key + "\\0" + text``) and
``vectors`` (float32 [M, H]). Only texts missing from the file are encoded; the file is
rewritten atomically (temporary file + ``os.replace``). The cache assumes the encoder's
weights do not change under one ``model_key``: use it with frozen encoders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

_DIGEST = 32


class SupportsEncode(Protocol):
    """What the cache needs from an encoder (``TextEncoder`` fits)."""

    @property
    def model_key(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray: ...


def text_digest(model_key: str, text: str) -> bytes:
    """The 32-byte cache key of ``text`` under ``model_key``."""
    data = f"{model_key}\0{text}".encode("utf-8", errors="surrogatepass")
    return hashlib.sha256(data).digest()


def cache_file_name(model_key: str) -> str:
    """A file-system-safe name for ``model_key`` (with a hash suffix if characters changed).

    >>> cache_file_name("all-MiniLM-L6-v2-abc-mean-64")
    'all-MiniLM-L6-v2-abc-mean-64.safetensors'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)[:120]
    if safe != model_key or not safe:
        safe = f"{safe}-{hashlib.sha256(model_key.encode()).hexdigest()[:8]}"
    return f"{safe}.safetensors"


class EmbeddingCache:
    """Embeddings of texts kept in ``directory``; see :meth:`get_or_compute`.

    After each call, ``last_computed`` is the number of distinct texts encoded and
    ``last_reused`` the number of input texts served from the file.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.last_computed = 0
        self.last_reused = 0

    def path_for(self, model_key: str) -> Path:
        return self.directory / cache_file_name(model_key)

    def get_or_compute(
        self,
        encoder: SupportsEncode,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors [len(texts), dim] in input order, encoding only texts not yet cached."""
        key, dim = encoder.model_key, int(encoder.dim)
        path = self.path_for(key)
        stored_keys, stored_vectors = self._load(path, key, dim)
        index = {bytes(row): i for i, row in enumerate(stored_keys)}
        digests = [text_digest(key, t) for t in texts]
        self.last_reused = sum(d in index for d in digests)
        missing: dict[bytes, str] = {}
        for digest, text in zip(digests, texts, strict=True):
            if digest not in index and digest not in missing:
                missing[digest] = text
        self.last_computed = len(missing)
        if missing:
            new = self._encode(encoder, list(missing.values()), dim, progress)
            new_keys = np.frombuffer(b"".join(missing), dtype=np.uint8).reshape(-1, _DIGEST)
            for offset, digest in enumerate(missing):
                index[digest] = len(stored_keys) + offset
            stored_keys = np.concatenate([stored_keys, new_keys])
            stored_vectors = np.concatenate([stored_vectors, new])
            self._save(path, key, stored_keys, stored_vectors)
        rows = np.fromiter((index[d] for d in digests), dtype=np.int64, count=len(digests))
        return np.ascontiguousarray(stored_vectors[rows], dtype=np.float32)

    @staticmethod
    def _encode(
        encoder: SupportsEncode,
        texts: list[str],
        dim: int,
        progress: Callable[[int], None] | None,
    ) -> np.ndarray:
        vectors = (
            encoder.encode(texts) if progress is None else encoder.encode(texts, progress=progress)
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), dim):
            raise ValueError(
                f"encoder {encoder.model_key!r} returned shape {vectors.shape}, "
                f"expected {(len(texts), dim)}"
            )
        return vectors

    @staticmethod
    def _load(path: Path, model_key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.zeros((0, _DIGEST), np.uint8), np.zeros((0, dim), np.float32))
        if not path.exists():
            return empty
        try:
            keys, vectors = _read(path, model_key, dim)
        except Exception as exc:  # any unreadable or inconsistent file is rebuilt
            warnings.warn(
                f"embedding cache {path} is unusable ({exc}); rebuilding it",
                UserWarning,
                stacklevel=3,
            )
            return empty
        return keys, vectors

    def _save(self, path: Path, model_key: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        try:
            save_file(
                {"keys": np.ascontiguousarray(keys), "vectors": np.ascontiguousarray(vectors)},
                tmp,
                metadata={"model_key": model_key},
            )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _read(path: Path, model_key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        stored_key = (handle.metadata() or {}).get("model_key")
        if stored_key is not None and stored_key != model_key:
            raise ValueError(f"it belongs to model_key {stored_key!r}")
        names = set(handle.keys())
        if names != {"keys", "vectors"}:
            raise ValueError(f"tensors {sorted(names)}, expected ['keys', 'vectors']")
        keys = handle.get_tensor("keys")
        vectors = handle.get_tensor("vectors")
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != _DIGEST:
        raise ValueError(f"keys have dtype {keys.dtype} and shape {keys.shape}")
    if vectors.dtype != np.float32 or vectors.shape != (keys.shape[0], dim):
        raise ValueError(
            f"vectors have dtype {vectors.dtype} and shape {vectors.shape}, "
            f"expected float32 {(keys.shape[0], dim)}"
        )
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity")
    return keys, vectors
