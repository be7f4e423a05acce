"""What `mtrec export` buys and costs on a real bundle, measured side by side in one run.

    mtrec export --bundle .mtrec/bundles/amazon-beauty --int8
    python -m benchmarks.export_costs --bundle .mtrec/bundles/amazon-beauty \\
        --exported .mtrec/bundles/amazon-beauty-export

- **encode**: titles/s over ``--texts`` catalog texts for the torch encoder in float32 (in
  batches of 128, the bundle's, and of 64; the ratio is to the faster), in the bundle's own
  precision (bfloat16 autocast by default) and the exported ONNX graph (its own batching),
  rounds interleaved, two threads; the ONNX vectors' cosine to float32 torch.
- **accuracy**: test metrics of both bundles (``mtrec eval``'s evaluation), and of the
  exported one with its catalog re-encoded by its own ONNX encoder (the export keeps the
  original encoder's catalog vectors, compressed).
- **serve**: a one-worker ``mtrec serve`` of each bundle, interleaved rounds: ``POST
  /v1/items`` with one new item per request (``--items`` requests, new texts each) and
  ``/v1/recommend`` k=10 for ``--requests`` known users; server-side p50/p99 from
  ``Server-Timing``.
- **size**: bytes on disk, the whole directory and the files serving reads.

Writes ``benchmarks/results/export_costs.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ab import _wait
from benchmarks.loadgen import post_json, run_load
from benchmarks.machine import describe

RESULTS = Path(__file__).parent / "results"
SERVING_FILES = ("config.json", "catalog.json", "interactions.safetensors",
                 "model.safetensors", "text_encoder.onnx", "tokenizer")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sizes(bundle: Path) -> dict[str, int]:
    return {"directory": _size(bundle),
            "serving_files": sum(_size(bundle / f) for f in SERVING_FILES
                                 if (bundle / f).exists())}


def encode_rounds(bundle: Path, exported: Path, n_texts: int, rounds: int
                  ) -> dict[str, Any]:
    import torch

    from mtrec import bundle as bundle_io
    from mtrec.config import from_dict
    from mtrec.export.bundle import exported_encoder
    from mtrec.run_config import RunConfig
    from mtrec.text.encoder import TextEncoder

    torch.set_num_threads(2)
    run = from_dict(RunConfig, bundle_io.read_meta(bundle)["run"])
    own = TextEncoder.from_config(replace(run.model.text, mode="frozen"))
    fp32 = TextEncoder.from_config(replace(run.model.text, mode="frozen", bf16=False))
    onnx = exported_encoder(exported, bundle_io.read_meta(exported), threads=2)
    assert onnx is not None, f"{exported} has no exported text encoder"
    texts = [t for t in bundle_io.read_catalog(bundle).texts[1:] if t][:n_texts]
    encoders = {"torch_fp32": fp32.encode,  # the bundle's batch size (128)
                "torch_fp32_b64": lambda t: fp32.encode(t, batch_size=64),
                f"torch_{'bf16' if run.model.text.bf16 else 'fp32'}_bundle": own.encode,
                "onnx_export": onnx.encode}
    rates: dict[str, list[float]] = {k: [] for k in encoders}
    for r in range(rounds):
        names = list(encoders) if r % 2 == 0 else list(reversed(encoders))
        for name in names:
            started = time.perf_counter()
            encoders[name](texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    ref, got = fp32.encode(texts), onnx.encode(texts)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    med = {k: statistics.median(v) for k, v in rates.items()}
    best_fp32 = max(med["torch_fp32"], med["torch_fp32_b64"])  # its faster batch size
    return {"texts": len(texts), "rounds": rounds, "titles_per_s": rates, "median": med,
            "onnx_over_torch_fp32": med["onnx_export"] / best_fp32,
            "cosine_to_fp32": {"min": float(cos.min()), "mean": float(cos.mean())}}


def reencoded(exported: Path, out: Path) -> Path:
    """A copy of ``exported`` whose catalog text vectors are its own ONNX encoder's (the
    export keeps the original encoder's vectors, compressed: this is what the catalog would
    hold had every item come in through ``POST /v1/items``)."""
    import shutil

    from mtrec import bundle as bundle_io
    from mtrec.export.bundle import exported_encoder
    from mtrec.export.distill import reencode
    from mtrec.tensor_files import save_weights

    shutil.copytree(exported, out)
    onnx = exported_encoder(exported, bundle_io.read_meta(exported), threads=2)
    assert onnx is not None, f"{exported} has no exported text encoder"
    weights = bundle_io.read_weights(exported)
    reencode(weights["item_tower.text_vectors"], bundle_io.read_catalog(exported).texts,
             onnx.encode)
    save_weights(out / "model.safetensors", weights)
    return out


def accuracy(bundle: Path, exported: Path) -> dict[str, Any]:
    from mtrec.train.evaluate import evaluate_bundle

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        again = reencoded(exported, Path(tmp) / "reencoded")
        for name, path in (("original", bundle), ("exported", exported),
                           ("exported_catalog_reencoded", again)):
            metrics = evaluate_bundle(path, "test")["metrics"]
            out[name] = {k: v for k, v in metrics.items()
                         if k.endswith(("ndcg@10", "recall@10"))}
    key = "next_item/ndcg@10"
    out["ndcg@10_relative_change"] = out["exported"][key] / out["original"][key] - 1
    out["ndcg@10_relative_change_reencoded"] = (
        out["exported_catalog_reencoded"][key] / out["original"][key] - 1)
    return out


def _latency(result: Any) -> dict[str, float]:
    ms = sorted(result.server_ms)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[int(0.99 * (len(ms) - 1))],
            "requests": float(len(ms)), "errors": float(result.errors)}


def serve_round(bundle: Path, users: list[str], n_items: int, tag: str, port: int
                ) -> dict[str, Any]:
    key = {"X-API-Key": "bench"}
    cmd = [sys.executable, "-m", "mtrec.cli", "serve", "--bundle", str(bundle.resolve()),
           "--port", str(port), "--workers", "1", "--api-key", "bench",
           "--store", str(Path(tempfile.mkdtemp()) / "events.db")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(port, proc)
        bodies = [{"user_id": u, "k": 10} for u in users]
        asyncio.run(run_load(port, (post_json("/v1/recommend", b, headers=key)
                                    for b in bodies[:200]), 1))
        recommend = asyncio.run(run_load(port, (post_json("/v1/recommend", b, headers=key)
                                                for b in bodies[200:]), 1))
        items = ({"items": [{"item_id": f"{tag}-{i}",
                             "text": f"new arrival {i}: {random.Random(i).random():.6f} "
                                     f"moisturising cream for dry skin, {tag} edition"}]}
                 for i in range(n_items))
        added = asyncio.run(run_load(port, (post_json("/v1/items", b, headers=key)
                                            for b in items), 1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"recommend": _latency(recommend), "items": _latency(added)}


def serve_rounds(bundle: Path, exported: Path, rounds: int, requests: int, n_items: int
                 ) -> dict[str, Any]:
    from benchmarks.serve_load import _free_port

    users = [str(u) for u in json.loads((bundle / "catalog.json").read_text())["user_ids"]]
    trees = {"original": bundle, "exported": exported}
    rows = []
    for r in range(rounds):
        chosen = random.Random(r).sample(users[1:], requests + 200)
        for name in (["original", "exported"] if r % 2 == 0 else ["exported", "original"]):
            got = serve_round(trees[name], chosen, n_items, f"r{r}", _free_port())
            rows.append({"round": r, "bundle": name, **got})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    med = {f"{what}_p50_ms": {n: statistics.median(x[what]["p50_ms"] for x in rows
                                                   if x["bundle"] == n) for n in trees}
           for what in ("recommend", "items")}
    ratio = med["recommend_p50_ms"]["exported"] / med["recommend_p50_ms"]["original"]
    return {"rounds": rounds, "rows": rows, "median": med,
            "recommend_p50_ratio_exported_over_original": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--exported", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "export_costs.json")
    args = parser.parse_args()
    started = time.time()
    result: dict[str, Any] = {
        "experiment": "export_costs", "bundle": str(args.bundle),
        "exported": str(args.exported),
        "export": json.loads((args.exported / "config.json").read_text())["export"],
        "machine": describe(("mtrec", "torch", "onnxruntime")),
        "encode": encode_rounds(args.bundle, args.exported, args.texts, args.rounds),
        "accuracy": accuracy(args.bundle, args.exported),
        "size_bytes": {"original": sizes(args.bundle), "exported": sizes(args.exported)}}
    result["size_ratio"] = {k: result["size_bytes"]["exported"][k]
                            / result["size_bytes"]["original"][k]
                            for k in ("directory", "serving_files")}
    if not args.skip_serve:
        result["serve"] = serve_rounds(args.bundle, args.exported, args.rounds, args.requests,
                                       args.items)
    result["seconds"] = round(time.time() - started, 1)
    result["command"] = "python -m benchmarks.export_costs " + " ".join(sys.argv[1:])
    out = args.out
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("size_ratio", "accuracy")}, indent=2))
    print(json.dumps(result["encode"]["median"]), result["encode"]["onnx_over_torch_fp32"])
    if "serve" in result:
        print(json.dumps(result["serve"]["median"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
