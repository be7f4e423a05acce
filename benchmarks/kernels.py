"""The CPU kernels of mtrec/models/fast_ops.py (and the evaluation's rank count) against the
torch ops they replace, on Beauty's shapes, timed in one process, interleaved.

    python -m benchmarks.kernels

Writes ``benchmarks/results/kernels.json``: per pair the median milliseconds of each side
over ``ROUNDS`` interleaved rounds and their ratio.  Shapes: 1,100 next-item positions
against the 12,101-item catalog at dimension 64 (a Beauty batch of 128 users), a
[128, 20, 256] activation (a transformer feed-forward layer), a [512, 12101] score block
(an evaluation batch).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.machine import describe
from mtrec.models.fast_ops import FastDropout, full_softmax_loss

RESULTS = Path(__file__).parent / "results" / "kernels.json"
ROUNDS, REPEATS = 7, 5
POSITIONS, CATALOG, DIM = 1100, 12101, 64


def _loss_pair() -> tuple[Callable[[], object], Callable[[], object]]:
    query = torch.randn(POSITIONS, DIM, requires_grad=True)
    items = torch.randn(CATALOG, DIM, requires_grad=True)
    targets = torch.randint(0, CATALOG, (POSITIONS,))

    def torch_op() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = query @ items.T
        F.cross_entropy(logits.float(), targets).backward()

    def ours() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            full_softmax_loss(query, items, targets).backward()

    return torch_op, ours


def _dropout_pair() -> tuple[Callable[[], object], Callable[[], object]]:
    x = torch.randn(128, 20, 256)
    fast = FastDropout(0.3).train()
    return (lambda: F.dropout(x, 0.3, training=True)), (lambda: fast(x))


def _rank_pair() -> tuple[Callable[[], object], Callable[[], object]]:
    ahead = torch.randn(512, CATALOG) >= 0.5
    return (lambda: ahead.sum(dim=1, dtype=torch.int64),
            lambda: ahead.view(torch.uint8).sum(dim=1, dtype=torch.int32))


PAIRS = {"full-catalog cross-entropy, forward + backward (bf16 autocast)": _loss_pair,
         "dropout p=0.3, forward": _dropout_pair,
         "rank count: sum of a bool comparison per row": _rank_pair}


def _ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(REPEATS):
        fn()
    return (time.perf_counter() - started) / REPEATS * 1000


def run() -> dict[str, Any]:
    torch.manual_seed(0)
    rows = []
    for name, make in PAIRS.items():
        torch_op, ours = make()
        torch_op(), ours()  # warm-up
        times: dict[str, list[float]] = {"torch": [], "mtrec": []}
        for _ in range(ROUNDS):
            times["torch"].append(_ms(torch_op))
            times["mtrec"].append(_ms(ours))
        torch_ms, ours_ms = (statistics.median(times[k]) for k in ("torch", "mtrec"))
        rows.append({"kernel": name, "torch_ms": round(torch_ms, 2),
                     "mtrec_ms": round(ours_ms, 2), "speedup": round(torch_ms / ours_ms, 2)})
    return {"benchmark": "kernels", "command": "python -m benchmarks.kernels", "seed": 0,
            "rounds": ROUNDS, "repeats": REPEATS, "threads": torch.get_num_threads(),
            "machine": describe(("torch",)), "results": rows}


def main() -> None:
    report = run()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for row in report["results"]:
        print(f"{row['kernel']}: torch {row['torch_ms']} ms, mtrec {row['mtrec_ms']} ms "
              f"({row['speedup']}x)")


if __name__ == "__main__":
    main()
