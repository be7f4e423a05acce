"""What a distilled student encoder buys and costs, measured side by side in one run.

    mtrec distill --bundle .mtrec/bundles/amazon-beauty --epochs 4 --max-texts 4000
    mtrec export --bundle .mtrec/bundles/amazon-beauty --int8
    mtrec export --bundle .mtrec/bundles/amazon-beauty-student --int8
    python -m benchmarks.distill_costs --bundle .mtrec/bundles/amazon-beauty

- **encode**: titles/s over ``--texts`` catalog texts that distillation did not train on
  (those past ``--max-texts``), two threads, rounds interleaved: the teacher in torch
  float32, the teacher exported to ONNX int8, the student in torch float32 and the student
  exported to ONNX int8; each one's cosine to the float32 teacher on those texts.
- **accuracy**: test NDCG@10 / Recall@10 of the teacher's and the student's bundles.

Writes ``benchmarks/results/distill_costs.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.export_costs import accuracy
from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"


def encoders(bundle: Path) -> dict[str, Any]:
    from mtrec import bundle as bundle_io
    from mtrec.export.bundle import exported_encoder
    from mtrec.text.encoder import TextEncoder

    out: dict[str, Any] = {}
    for role, path in (("teacher", bundle), ("student", Path(f"{bundle}-student"))):
        config = bundle_io.encoder_config(path, bundle_io.read_meta(path))
        assert config is not None, f"{path} has no text encoder"
        out[f"{role}_torch_fp32"] = TextEncoder.from_config(replace(config, bf16=False))
        export = Path(f"{path}-export")
        onnx = exported_encoder(export, bundle_io.read_meta(export), threads=2)
        assert onnx is not None, f"{export} has no exported text encoder"
        out[f"{role}_onnx_int8"] = onnx
    return out


def encode_rounds(bundle: Path, skip: int, n_texts: int, rounds: int) -> dict[str, Any]:
    import torch

    from mtrec import bundle as bundle_io
    from mtrec.export.distill import cosines

    torch.set_num_threads(2)
    texts = [t for t in bundle_io.read_catalog(bundle).texts[1:] if t][skip: skip + n_texts]
    found = encoders(bundle)
    rates: dict[str, list[float]] = {k: [] for k in found}
    for r in range(rounds):
        for name in (list(found) if r % 2 == 0 else list(reversed(found))):
            started = time.perf_counter()
            found[name].encode(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    ref = found["teacher_torch_fp32"].encode(texts)
    cos = {k: cosines(e.encode(texts), ref) for k, e in found.items()}
    med = {k: statistics.median(v) for k, v in rates.items()}
    base = med["teacher_torch_fp32"]
    return {"texts": len(texts), "unseen_from": skip, "rounds": rounds, "titles_per_s": rates,
            "median": med, "over_teacher_torch_fp32": {k: v / base for k, v in med.items()},
            "cosine_to_teacher_fp32": {k: {"mean": float(c.mean()), "min": float(c.min())}
                                       for k, c in cos.items()}}


def _renamed(figures: dict[str, Any]) -> dict[str, Any]:
    return {"teacher": figures["original"], "student": figures["exported"],
            "ndcg@10_relative_change": figures["ndcg@10_relative_change"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=4000,
                        help="catalog texts distillation trained on (--max-texts)")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "distill_costs.json")
    args = parser.parse_args()
    started = time.time()
    student = Path(f"{args.bundle}-student")
    result = {"experiment": "distill_costs", "bundle": str(args.bundle),
              "student": json.loads((student / "config.json").read_text())["distill"],
              "machine": describe(("mtrec", "torch", "onnxruntime")),
              "encode": encode_rounds(args.bundle, args.skip, args.texts, args.rounds),
              "accuracy": _renamed(accuracy(args.bundle, student))}
    result["wall_seconds"] = round(time.time() - started, 1)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result["encode"][k] for k in ("median", "over_teacher_torch_fp32",
                                                       "cosine_to_teacher_fp32")}, indent=2))
    print(json.dumps(result["accuracy"], indent=2))


if __name__ == "__main__":
    main()
