"""``mtrec export``: a compressed bundle (ONNX text encoder, user tower and task heads,
float16/int8 tables), checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mtrec.cli_common import AsJson, _emit, _kv_table, _user_errors


def export(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `mtrec train`).")],
    out: Annotated[Path | None, typer.Option(
        help="Exported bundle directory (default: BUNDLE-export).")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Quantise the text encoder to int8 (dynamic, per channel) and store "
                       "the item tables as int8 with per-row scales.")] = False,
    tables: Annotated[str | None, typer.Option(
        help="Item-table precision: float32, float16 (default) or int8.")] = None,
    embeddings: Annotated[str, typer.Option(
        help="With --int8: the encoder's token-embedding table in int8 (default) or int4 "
             "(blocks of 32 values; a smaller file at a small cost in cosine).")] = "int8",
    as_json: AsJson = False,
) -> None:
    """Export a bundle for serving: smaller, faster, and checked against the original."""
    from mtrec.export.bundle import ExportConfig, export_bundle

    target = out or bundle.with_name(bundle.name + "-export")
    with _user_errors():
        config = ExportConfig(int8=int8, tables=tables or ("int8" if int8 else "float16"),
                              embeddings=embeddings)
        record = export_bundle(bundle, target, config)
    encoder = "onnx-int8" + ("-int4-embeddings" if embeddings == "int4" else "")
    summary = {"bundle": str(target), "text_encoder": encoder if int8 else "onnx",
               "tables": config.tables}
    for part, figures in record["checks"]["tables"].items():
        summary[f"{part} min cosine"] = figures["min_cosine"]
    if record["text"]:
        summary.update({f"text {k}": v for k, v in record["text"]["checks"].items()})
    else:
        summary["text_encoder"] = "none (the bundle serves without one)"
    for part in ("user_tower", "heads"):
        figures = record["checks"][part] or {}
        summary.update({f"{part} {k}": v for k, v in figures.items()
                        if k in ("min_cosine", "max_abs_error", "top10_agreement")})
    _emit({**summary, "record": record}, as_json,
          lambda: Console().print(_kv_table(f"Exported {bundle}", summary)))


def distill(
    bundle: Annotated[Path, typer.Option(help="Bundle directory (from `mtrec train`).")],
    out: Annotated[Path | None, typer.Option(
        help="Distilled bundle directory (default: BUNDLE-student).")] = None,
    layers: Annotated[int, typer.Option(
        help="Transformer layers the student keeps (evenly spread over the teacher's).")] = 3,
    epochs: Annotated[int, typer.Option(help="At most this many epochs.")] = 30,
    patience: Annotated[int, typer.Option(
        help="Stop after this many epochs without a better held-out cosine.")] = 3,
    min_cosine: Annotated[float, typer.Option(
        help="Refuse a student whose held-out mean cosine to the teacher is lower.")] = 0.9,
    max_texts: Annotated[int, typer.Option(help="Catalog texts used (0: all).")] = 0,
    evaluate: Annotated[bool, typer.Option(
        help="Evaluate both bundles on the test split afterwards.")] = True,
    as_json: AsJson = False,
) -> None:
    """Distil the bundle's text encoder into a smaller student that serves in its place."""
    from mtrec.export.distill import DistillConfig, distill_bundle

    target = out or bundle.with_name(bundle.name + "-student")
    console = Console(stderr=True)

    def report(row: dict[str, float]) -> None:
        if not as_json:
            console.print(f"epoch {row['epoch']:>3}  loss {row['loss']:.4f}  held-out cosine "
                          f"mean {row['held_mean_cosine']:.4f} min {row['held_min_cosine']:.4f}"
                          f"  {row['seconds']:.0f}s")

    with _user_errors():
        config = DistillConfig(layers=layers, epochs=epochs, patience=patience,
                               max_texts=max_texts)
        record = distill_bundle(bundle, target, config, min_cosine, report)
        summary: dict[str, Any] = {"bundle": str(target), "layers kept": str(record["layers"]),
                                   "epochs": record["epochs"]}
        summary.update({f"held-out {k}": v for k, v in record["checks"].items()})
        if evaluate:
            summary.update(_compare_test(bundle, target))
    _emit({**summary, "record": record}, as_json,
          lambda: Console().print(_kv_table(f"Distilled {bundle}", summary)))


def _compare_test(teacher: Path, student: Path) -> dict[str, float]:
    from mtrec.train.evaluate import evaluate_bundle

    out = {}
    for name, path in (("teacher", teacher), ("student", student)):
        metrics = evaluate_bundle(path, "test")["metrics"]
        out.update({f"{name} test {k}": v for k, v in metrics.items()
                    if k.endswith("ndcg@10")})
    return out
