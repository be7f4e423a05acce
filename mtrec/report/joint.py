"""The report's joint-training sections about the bundle's dataset: one model over every
scenario against one model per scenario (``benchmarks/results/scenarios.json``, from
``python -m benchmarks scenarios``), and the joint model with and without the remedies for
negative transfer against one model per task (``remedies.json``, from ``python -m
benchmarks remedies``)."""

from __future__ import annotations

import json
from pathlib import Path

from mtrec.report import plots
from mtrec.report.doc import Figure, Section, Table, Text


def scenarios_section(folder: Path | None, dataset: str) -> Section | None:
    """``None`` when there is no multi-scenario result about ``dataset``."""
    file = None if folder is None else folder / "scenarios.json"
    if file is None or not file.is_file():
        return None
    data = json.loads(file.read_text())
    summary = [r for r in data.get("summary", []) if r.get("dataset") == dataset]
    if not summary:
        return None
    section = Section("scenarios", "One model across scenarios vs one per scenario")
    deltas = [r for r in data.get("deltas", []) if r.get("dataset") == dataset]
    if deltas:
        section.blocks.append(Figure("scenario_deltas", plots.delta_bars(
            [(f"{r['scenario']} / {r['system']}", r["delta"], r["ci95"]) for r in deltas],
            f"{dataset}: joint minus alone"),
            "Test NDCG@10 of each joint model minus the model trained on that scenario "
            "alone, paired by seed; bars: 95 % interval over seeds"))
    section.blocks.append(Table(
        ["scenario", "system", "seeds", "NDCG@10", "Recall@10", "test users"],
        [[r["scenario"], r["system"], str(r["seeds"]),
          f"{r['ndcg@10']:.4f} ± {r['ndcg@10_sd']:.4f}", f"{r['recall@10']:.4f}",
          f"{r['test_users']:,}"] for r in summary],
        caption=f"From {file.name}; `python -m benchmarks scenarios` reproduces it"))
    section.blocks.append(Text("Each target is ranked among its own scenario's items; every "
                               "model selects its epoch on validation."))
    return section


def remedies_section(folder: Path | None, dataset: str) -> Section | None:
    """``None`` when there is no remedies result about ``dataset``."""
    file = None if folder is None else folder / "remedies.json"
    if file is None or not file.is_file():
        return None
    rows = [r for r in json.loads(file.read_text()).get("deltas", [])
            if r.get("store") == dataset]
    if not rows:
        return None
    section = Section("remedies", "Joint training vs one model per task")
    section.blocks.append(Figure("task_deltas", plots.delta_bars(
        [(f"{r['metric']} / {r['system']}", r["delta"], r["ci95"]) for r in rows],
        f"{dataset}: joint minus single-task",
        xlabel="skill over single-task: AUC / NDCG difference, minus the RMSE difference"),
        "Each joint model's skill minus the single-task model's on each task's main test "
        "metric (AUC or NDCG: the difference; RMSE: minus the difference), paired by seed; "
        "bars: 95 % interval over seeds"))
    section.blocks.append(Table(
        ["task metric", "joint system", "seeds", "joint minus single-task", "95 % interval"],
        [[r["metric"], r["system"], str(r["seeds"]), f"{r['delta']:+.4f}",
          f"± {r['ci95']:.4f}"] for r in rows],
        caption=f"From {file.name}; `python -m benchmarks remedies` reproduces it"))
    return section
