"""Retrieval by one pass over the whole catalog, on half-precision copies by default.

The pass scores every item for every query of a batch; it finds each query's best
``fetch`` unseen items and the softmax log-normalizer over the catalog.  It is bound by
memory traffic, so half-precision copies of the retrieval matrix (half the bytes) make it
2-3x faster on one core: float16 for one or two queries (a fast matrix-vector kernel) and
bfloat16 for larger batches (AVX512-BF16 matrix products).  What that costs in precision is
confined: the pass only *selects* candidates (the callers re-score them in float32), and
the normalizer is corrected with the float32 logits of the candidates and of the user's
seen items, which hold most of the probability mass, so only the tail keeps the reduced
precision.  On Amazon Beauty (1,024 users) the exact top 10 were inside the top 200 for
every user; the normalizer's error was 0.0015 on average (0.016 at most) in bfloat16
batches of 16 and 0.0002 (0.002) for single float16 queries
(``python -m benchmarks.scan_accuracy``).  ``"float32"`` scans the float32 matrix (exact).

``"int8"`` scans an int8 copy with one scale per row (a quarter of float32's bytes) through
PyTorch's int8 weight-only matrix product (``torch._weight_int8pack_mm``, bfloat16 queries),
with the same float32 re-scoring and normalizer correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from mtrec.rank.pipeline import Pool, exact_pool
from mtrec.serve.rows import Rows

ScanDtype = Literal["float32", "half", "int8"]
SCAN_DTYPES = ("float32", "half", "int8")

SMALL_BATCH = 2  # up to this many queries go through float16, more through bfloat16


def int8_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 rows and their float32 scales (``rows ~ q * scale[:, None]``).

    >>> q, scale = int8_rows(torch.tensor([[1.0, -0.5], [0.0, 0.0]]))
    >>> q.tolist(), scale.tolist()
    ([[127, -64], [0, 0]], [0.007874015718698502, 1.0])
    """
    peak = rows.float().abs().amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    return (rows.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale


class CatalogScan:
    """Reduced-precision copies of ``matrix`` (``[N + 1, D]``, row 0 padding): float16 and
    bfloat16 (``"half"``) or int8 and per-row scales (``"int8"``), kept in step with it by
    :meth:`rebuild`, :meth:`grow` and :meth:`set_rows`."""

    def __init__(self, dtype: ScanDtype = "half") -> None:
        if dtype not in SCAN_DTYPES:
            raise ValueError(f"scan must be one of {', '.join(SCAN_DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.copies: dict[torch.dtype, Rows] = {}  # int8: the codes and float32 the scales

    @property
    def exact(self) -> bool:
        return self.dtype == "float32"

    def _converted(self, rows: torch.Tensor) -> dict[torch.dtype, torch.Tensor]:
        if self.dtype == "int8":
            codes, scales = int8_rows(rows)
            return {torch.int8: codes, torch.float32: scales}
        return {d: rows.to(d) for d in (torch.float16, torch.bfloat16)}

    def rebuild(self, matrix: torch.Tensor | None) -> None:
        """Copies of ``matrix`` (None: none, the pass is not used)."""
        self.copies = ({d: Rows(t) for d, t in self._converted(matrix).items()}
                       if matrix is not None and not self.exact else {})

    def grow(self, matrix: torch.Tensor) -> None:
        """After ``matrix`` grew (new rows at the end)."""
        if not self.copies:  # float32, or an ANN index retrieves: no copies to keep
            return
        old = len(next(iter(self.copies.values())).data)
        if len(matrix) <= old:
            return
        for d, t in self._converted(matrix[old:]).items():
            self.copies[d].resize(len(matrix))[old:] = t

    def set_rows(self, idx: torch.Tensor, rows: torch.Tensor) -> None:
        if not self.copies:
            return
        for d, t in self._converted(rows).items():
            self.copies[d].data[idx] = t

    def logits(self, queries: torch.Tensor) -> torch.Tensor:
        """``queries [B, D]`` against items ``1..N`` on a half copy: a contiguous float32
        ``[B, N]`` (the catalog as the left operand: measured faster for small ``B``)."""
        if self.dtype == "int8":
            scales = self.copies[torch.float32].data[1:].to(torch.bfloat16)
            return torch._weight_int8pack_mm(queries.to(torch.bfloat16),
                                             self.copies[torch.int8].data[1:], scales).float()
        dtype = torch.float16 if len(queries) <= SMALL_BATCH else torch.bfloat16
        items = self.copies[dtype].data[1:]
        return torch.mm(items, queries.T.to(dtype)).float().T.contiguous()

    @torch.no_grad()
    def candidates(self, queries: torch.Tensor, matrix: torch.Tensor, temperature: float,
                   fetch: Sequence[int], excludes: Sequence[np.ndarray]) -> list[Pool]:
        """Per query, its best ``fetch`` codes not in ``excludes`` and the log-normalizer
        of its softmax over all items (at ``temperature``); ``matrix`` is the float32
        retrieval matrix."""
        if self.exact:
            return [exact_pool(matrix, q, temperature, n, x)
                    for q, n, x in zip(queries, fetch, excludes, strict=True)]
        approx = self.logits(queries) / temperature  # [B, N]
        masked = approx.clone()
        rows = np.concatenate([np.full(len(x), b) for b, x in enumerate(excludes)])
        cols = np.concatenate([np.asarray(x, dtype=np.int64) - 1 for x in excludes])
        keep = cols >= 0
        masked[torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep])] = float("-inf")
        top = torch.topk(masked, min(max(fetch), masked.shape[1]), dim=1)
        out = []
        for b, n in enumerate(fetch):
            pool = top.indices[b, :n][torch.isfinite(top.values[b, :n])]
            # the normalizer: the candidates' and the seen items' mass (most of it) in
            # float32, the rest of the catalog's in half precision
            heavy = torch.cat([pool, torch.from_numpy(cols[rows == b][keep[rows == b]])])
            exact = matrix[heavy + 1].float() @ queries[b].float() / temperature
            tail = approx[b].index_fill(0, heavy, float("-inf"))
            lse = torch.logaddexp(torch.logsumexp(tail, 0), torch.logsumexp(exact, 0))
            out.append(Pool(pool.numpy() + 1, lse, exact[:len(pool)]))
        return out
