"""What adding an item costs a serving worker, and what the garbage collector would, on a
real bundle (the figures the README's serving section quotes).

    python -m benchmarks.serve_costs --bundle .mtrec/bundles/amazon-beauty

On one thread: the objects a loaded engine leaves to the collector and the time of a full
collection before and after ``gc.freeze()`` (what the app does after start-up); per added
item (``--items`` rounds), the encoder's pass alone, ``upsert_items`` from text (encoder
included) and from a stored vector (what another worker does), and the whole-table copy
that growing every item table by ``torch.cat`` used to cost, against growing in place.
Writes ``benchmarks/results/serve_costs.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.machine import describe
from mtrec.serve.rows import Rows

RESULTS = Path(__file__).parent / "results"


def _ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values)
    return {"p50": round(float(np.median(v)), 3), "max": round(float(v.max()), 3)}


def _grow_by_cat(tables: list[torch.Tensor]) -> list[torch.Tensor]:
    """What growing a table by a row used to be: a copy of the whole table."""
    return [torch.cat([x, x.new_zeros(1, x.shape[1])]) for x in tables]


def _grow_in_place(tables: list[Rows]) -> None:
    for rows in tables:
        rows.resize(len(rows.data) + 1)


def measure(bundle: Path, rounds: int) -> dict[str, Any]:
    from mtrec.serve.app import _encoder
    from mtrec.serve.engine import Engine, NewItem

    engine = Engine.from_bundle(bundle, encoder=_encoder(bundle, threads=1))
    engine.warm_up()
    out: dict[str, Any] = {"bundle": str(bundle), "items": len(engine.item_ids) - 1}
    tracked = len(gc.get_objects())
    full = [_ms(gc.collect) for _ in range(3)]
    gc.freeze()
    frozen = [_ms(gc.collect) for _ in range(3)]
    out["gc"] = {"tracked_objects": tracked, "full_collection_ms": _summary(full),
                 "after_freeze_ms": _summary(frozen)}
    gc.unfreeze()

    names = ("text", "unit", "vectors", "matrix")
    tables = [getattr(engine.catalog, n) for n in names]
    out["table_mb"] = round(sum(t.nbytes for t in tables) / 2**20, 1)
    costs: dict[str, list[float]] = {k: [] for k in (
        "encode", "upsert_from_text", "upsert_from_vector", "grow_by_cat", "grow_in_place")}
    grown = [Rows(t.clone()) for t in tables]  # copies, grown in place below
    for i in range(rounds):
        text = f"benchmark fresh item {i} argan oil hair mask"
        costs["encode"].append(_ms(partial(engine.embed, [text])))
        vector = engine.embed([text])
        costs["upsert_from_text"].append(
            _ms(partial(engine.upsert_items, [NewItem(f"text-{i}", text)])))
        costs["upsert_from_vector"].append(
            _ms(partial(engine.upsert_items, [NewItem(f"vec-{i}", text)], vector)))
        costs["grow_by_cat"].append(_ms(partial(
            _grow_by_cat, [getattr(engine.catalog, n) for n in names])))
        costs["grow_in_place"].append(_ms(partial(_grow_in_place, grown)))
    out["per_item_ms"] = {k: _summary(v) for k, v in costs.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path(".mtrec/bundles/amazon-beauty"))
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_costs.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {"command": "python -m benchmarks.serve_costs " + " ".join(sys.argv[1:]),
              "machine": describe(("mtrec", "torch")), **measure(args.bundle, args.items)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
