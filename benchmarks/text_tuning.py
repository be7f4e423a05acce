"""The text encoder frozen, tuned through LoRA, or fully fine-tuned, on real catalogs.

    python -m benchmarks.text_tuning --datasets amazon-scientific,amazon-beauty \\
        --variants frozen,lora-r8,lora-r16,full

Each variant is one ``mtrec train`` of the default model (early stopping on validation, no
refit) with ``model.text.mode`` (and ``lora_r``) set, run as its own process: test NDCG@10 /
Recall@10 overall and on cold-ish targets (items with few training interactions, the
``cold_`` metrics), the encoder's trainable parameters, wall time and the process's peak
resident memory.  A finished variant is cached (``benchmarks/results/runs/text_tuning/``)
and reused while its fingerprint holds; a killed one resumes from its checkpoint.  Writes
``benchmarks/results/text_tuning.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.machine import describe
from benchmarks.runs import Row, cached_run, short_hash

RESULTS = Path(__file__).parent / "results"
BENCH = Path(".mtrec") / "bench" / "text_tuning"
CODE = ("mtrec/models/model.py", "mtrec/models/item_tower.py", "mtrec/text/encoder.py",
        "mtrec/train/trainer.py", "mtrec/train/run.py", "mtrec/train/robust.py")
METRICS = ("ndcg@10", "recall@10", "cold_ndcg@10", "cold_recall@10")


def variant_settings(variant: str) -> dict[str, Any]:
    """``frozen``, ``full`` or ``lora-r<rank>`` as ``[model.text]`` settings.

    >>> variant_settings("lora-r16")
    {'mode': 'lora', 'lora_r': 16, 'lora_alpha': 32}
    """
    if variant in ("frozen", "full"):
        return {"mode": variant}
    if variant.startswith("lora-r") and variant[6:].isdigit():
        rank = int(variant[6:])
        return {"mode": "lora", "lora_r": rank, "lora_alpha": 2 * rank}
    raise SystemExit(f"unknown variant {variant!r}: frozen, full or lora-r<rank>")


def trainable(settings: dict[str, Any]) -> int:
    """The encoder's trainable parameters under ``settings`` (0 when frozen)."""
    from mtrec.text.encoder import TextEncoder, TextEncoderConfig

    return TextEncoder.from_config(TextEncoderConfig(**settings)).trainable_parameters()


def _train(dataset: str, variant: str, out: Path, max_minutes: float
           ) -> tuple[dict[str, Any], float, int]:
    """Run ``mtrec train``; its JSON summary, wall seconds and peak RSS in bytes."""
    out.mkdir(parents=True, exist_ok=True)
    toml = out.parent / f"{out.name}.toml"
    lines = ["[model.text]"] + [f"{k} = {json.dumps(v)}"
                                for k, v in variant_settings(variant).items()]
    toml.write_text("\n".join(lines) + "\n")
    resume = ["--resume"] if (out / "checkpoint").exists() else []
    cmd = [sys.executable, "-m", "mtrec.cli", "train", "--dataset", dataset, "--no-refit",
           "--config", str(toml), "--out", str(out), "--json", *resume,
           "--max-minutes", str(max_minutes)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr)
    stdout = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {status})")
    return json.loads(stdout), seconds, usage.ru_maxrss * 1024


def run_variant(dataset: str, variant: str, max_minutes: float) -> list[Row]:
    # the folder is keyed by the fingerprint: a killed run resumes, a changed one starts anew
    folder = f"{dataset}-{variant}-{short_hash(fingerprint(dataset, variant, max_minutes))}"
    summary, seconds, peak = _train(dataset, variant, BENCH / folder, max_minutes)
    test = summary["test"]
    row: Row = {"system": f"{dataset} {variant}", "dataset": dataset, "variant": variant,
                "trainable_encoder_parameters": trainable(variant_settings(variant)),
                "seconds": round(seconds, 1), "peak_rss_gb": round(peak / 2**30, 2),
                "best_epoch": summary.get("best_epoch"), "epochs": summary.get("epochs_run"),
                "time_capped": bool(summary.get("time_capped")),
                "still_improving": bool(summary.get("still_improving")),
                **{m: test.get(f"next_item/{m}") for m in METRICS}}
    return [row]


def fingerprint(dataset: str, variant: str, max_minutes: float) -> dict[str, Any]:
    digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in CODE)).hexdigest()[:16]
    return {"dataset": dataset, "variant": variant_settings(variant), "code": digest,
            "max_minutes": max_minutes}


def render(rows: list[Row]) -> str:
    head = ("| dataset | encoder | trainable encoder params | test NDCG@10 | Recall@10 | "
            "cold NDCG@10 | wall s | peak RSS GB | best / run epochs |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---|")
    body = [f"| {r['dataset']} | {r['variant']} | {r['trainable_encoder_parameters']:,} | "
            f"{r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['cold_ndcg@10']:.4f} | "
            f"{r['seconds']:.0f} | {r['peak_rss_gb']:.1f} | {r['best_epoch']} / {r['epochs']}"
            f"{' (time cap)' if r.get('time_capped') else ''} |"
            for r in rows if "ndcg@10" in r]
    return "\n".join([head, *body]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="amazon-scientific")
    parser.add_argument("--variants", default="frozen,lora-r8")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="per variant: stop the selection after this many minutes (0: "
                             "early stopping alone)")
    parser.add_argument("--out", type=Path, default=RESULTS / "text_tuning.json")
    args = parser.parse_args()
    rows: list[Row] = []
    for dataset in args.datasets.split(","):
        for variant in args.variants.split(","):
            rows += cached_run("text_tuning", f"{dataset}-{variant}",
                               fingerprint(dataset, variant, args.max_minutes),
                               partial(run_variant, dataset, variant, args.max_minutes))
    result = {"experiment": "text_tuning", "rows": rows,
              "machine": describe(("mtrec", "torch", "peft")),
              "command": "python -m benchmarks.text_tuning " + " ".join(sys.argv[1:])}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(rows))
    print(render(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
