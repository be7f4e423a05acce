"""The report's sections about the bundle itself: run header, training curves, test metrics,
cold vs warm items and per-scenario metrics."""

from __future__ import annotations

import math
from typing import Any

from mtrec.eval.protocols import COLD_MAX
from mtrec.report import plots
from mtrec.report.data import BundleData, cold_warm
from mtrec.report.doc import Block, Figure, Section, Table, Text, fmt, slug
from mtrec.report.scenarios import AGREE, ScenarioMetrics
from mtrec.tasks import companion_metric, main_metric, task_class


def header(b: BundleData) -> Section:
    s, run = b.summary, b.meta.get("run", {})
    train_cfg = run.get("train", {}) if isinstance(run, dict) else {}
    epochs = fmt(s.get("epochs_run"), "epoch")
    if "epochs" in train_cfg:
        epochs += f" of {train_cfg['epochs']}"
    if s.get("stopped_early"):
        epochs += " (stopped early)"
    rows: dict[str, str] = {
        "dataset": b.dataset, "protocol": b.protocol, "tasks": ", ".join(b.tasks) or "-",
        "seed": fmt(s.get("seed", train_cfg.get("seed")), "epoch"), "epochs": epochs,
        "best epoch": fmt(s.get("best_epoch"), "epoch"),
        "selection metric": f"{s.get('selection_metric', '-')} = "
                            f"{fmt(_num(s.get('best_valid')))}",
        "train time": f"{fmt(_num(s.get('train_seconds')), 'seconds')} s "
                      f"(whole run {fmt(_num(s.get('total_seconds')), 'seconds')} s)",
        "peak memory": f"{fmt(_num(s.get('peak_rss_gib')), 'peak_rss_gib')} GiB (peak RSS)",
        "machine": " ".join(str(s.get("machine", "-")).split()),
    }
    if isinstance(s.get("text_match"), dict):
        scale = _num(s["text_match"].get("scale"))
        rows["text-match scale"] = "-" if scale is None else f"{scale:g}"
    if train_cfg.get("refit"):
        rows["refit"] = "yes: the weights were retrained on train + valid for the best epoch"
    rows["model"] = _model_line(run.get("model", {}) if isinstance(run, dict) else {})
    rows["bundle"] = str(b.path)
    table = Table(["", ""], [[k, v] for k, v in rows.items()], align="ll")
    return Section("run", "Run", [table])


def _model_line(model: dict[str, Any]) -> str:
    item, user, mtl = (model.get(k, {}) for k in ("item", "user", "mtl"))
    text = model.get("text", {})
    parts = [f"item dim {item.get('dim', '?')}",
             f"{user.get('layers', '?')}-layer user tower (max_len {user.get('max_len', '?')})",
             f"{mtl.get('kind', '?')} multi-task layer"]
    parts.append(f"text {text.get('mode', '?')} ({text.get('model', '?')})"
                 if item.get("use_text") else "no text")
    return ", ".join(parts)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def training(b: BundleData) -> Section:
    section = Section("training", "Training curves")
    if not b.history:
        section.blocks.append(Text("The bundle has no history.csv: no per-epoch curves."))
        return section
    epochs = [r["epoch"] for r in b.history]
    best = b.summary.get("best_epoch")
    best = int(best) if isinstance(best, int | float) else None
    for task in b.tasks:
        keys = [k for k in (main_metric(task), companion_metric(task))
                if any(math.isfinite(r.get(f"valid/{k}", math.nan)) for r in b.history)]
        metrics = {k: [r.get(f"valid/{k}", math.nan) for r in b.history] for k in keys}
        loss = [r.get(f"loss/{task}", math.nan) for r in b.history]
        svg = plots.training_curves(epochs, loss, metrics, best, task)
        section.blocks.append(Figure(f"training_{slug(task)}", svg,
                                     f"{task}: training loss and validation metrics per "
                                     "epoch (dashed: the best epoch)"))
    section.blocks.extend(_text_match(b))
    section.blocks.append(_history_table(b))
    return section


def _text_match(b: BundleData) -> list[Block]:
    tm = b.summary.get("text_match")
    if not isinstance(tm, dict) or not isinstance(tm.get("valid_ndcg@10_by_scale"), dict):
        return []
    curve = {float(k): float(v) for k, v in tm["valid_ndcg@10_by_scale"].items()}
    svg = plots.text_match_curve(curve, _num(tm.get("scale")))
    return [Text("The curves above are the model before the text-match scale was chosen; "
                 "the scale is then fitted on validation (below, dashed: the chosen scale), "
                 "so the final validation and test metrics include it.", note=True),
            Figure("text_match", svg, "Validation NDCG@10 for each text-match scale")]


def _history_table(b: BundleData) -> Table:
    loss = [f"loss/{t}" for t in b.tasks]
    valid = [f"valid/{main_metric(t)}" for t in b.tasks]
    if any("valid/mean" in r for r in b.history):
        valid.append("valid/mean")
    cols = [c for c in ["epoch", *loss, *valid, "seconds"] if any(c in r for r in b.history)]
    rows = [[fmt(r.get(c, math.nan), c) for c in cols] for r in b.history]
    return Table(cols, rows, caption="Per-epoch history (history.csv)", collapsed=True)



def test_metrics(b: BundleData) -> Section:
    valid, test = b.metrics("valid"), b.metrics("test")
    names = [k for k in dict.fromkeys([*test, *valid]) if "/cold_" not in k]
    order = {t: i for i, t in enumerate(b.tasks)}
    names.sort(key=lambda k: order.get(k.split("/", 1)[0], len(order)))
    rows = [[*k.split("/", 1), fmt(valid.get(k), k), fmt(test.get(k), k)]
            if "/" in k else [k, "", fmt(valid.get(k), k), fmt(test.get(k), k)] for k in names]
    section = Section("metrics", "Test metrics")
    if not rows:
        section.blocks.append(Text("metrics.json has no test metrics."))
        return section
    section.blocks.append(Table(["task", "metric", "valid", "test"], rows, align="llrr",
                                caption="All tasks, on the validation and test parts "
                                        "(cold-item next-item metrics: next section)"))
    return section


def cold_items(b: BundleData) -> Section:
    section = Section("cold", "Cold vs warm items (next item)")
    rows, share, users = cold_warm(b.metrics("test"))
    if not rows:
        section.blocks.append(Text("No next-item task: nothing to split by item coldness."))
        return section
    section.blocks.append(Text(
        f"Cold targets are test targets whose item has at most {COLD_MAX} training "
        f"interactions: {share:.1%} of {users:,} targets (about {round(share * users):,}). "
        "Warm values are derived exactly from the per-target means: "
        "warm = (all \u2212 share \u00b7 cold) / (1 \u2212 share)."))
    table = Table(["metric", "all", "cold", "warm"],
                  [[r.metric, fmt(r.all), fmt(r.cold), fmt(r.warm)] for r in rows],
                  caption="Test next-item metrics by target item coldness")
    shown = [r for r in rows if r.metric in ("ndcg@10", "recall@10", "mrr@10", "ndcg@20",
                                             "recall@20")]
    if shown and 0.0 < share < 1.0:
        svg = plots.grouped_bars([r.metric for r in shown],
                                 {"all": [r.all for r in shown],
                                  "cold": [r.cold for r in shown],
                                  "warm": [r.warm for r in shown]},
                                 "Next item: all, cold and warm targets (test)")
        section.blocks.append(Figure("cold_warm", svg, "All, cold-item and warm-item "
                                                       "targets (test part)"))
    elif share <= 0.0:
        section.blocks.append(Text("No test target is cold: warm equals all."))
    section.blocks.append(table)
    return section


def scenarios(b: BundleData, result: ScenarioMetrics | None, skipped: str = "") -> Section:
    section = Section("scenarios", "Per scenario")
    if result is None:
        section.blocks.append(Text(skipped or "Per-scenario metrics were not computed."))
        return section
    metrics = _scenario_columns(b, result)
    names = list(result.by_scenario)
    rows = [[name, *(fmt(result.by_scenario[name].get(m), m) for m in metrics)]
            for name in names]
    rows.append(["all (recomputed)", *(fmt(result.overall.get(m), m) for m in metrics)])
    section.blocks.append(Table(["scenario", *metrics], rows, strong=frozenset([len(rows) - 1]),
                                caption="Test metrics by the scenario of the target "
                                        "interaction"))
    for task in b.tasks:
        key = main_metric(task)
        values = [result.by_scenario[n].get(key) for n in names]
        if any(v is not None for v in values):
            svg = plots.grouped_bars(names, {key: values}, key)
            section.blocks.append(Figure(f"scenario_{slug(task)}", svg,
                                         f"{key} per scenario (test)"))
    section.blocks.append(_agreement(result))
    return section


def _scenario_columns(b: BundleData, result: ScenarioMetrics) -> list[str]:
    wanted = []
    for task in b.tasks:
        if task_class(task).kind == "retrieval":
            wanted += [f"{task}/users", main_metric(task), companion_metric(task)]
        else:
            wanted += [f"{task}/examples", main_metric(task)]
    return [m for m in wanted if m in result.overall]


def _agreement(result: ScenarioMetrics) -> Text:
    how = ("pointwise examples scored causally (rolling)" if result.rolling
           else "pointwise examples scored from the earlier parts only")
    if math.isnan(result.max_rel_diff):
        check = "the bundle has no saved test metrics to check them against"
    elif result.agrees:
        check = (f"over all scenarios they agree with the saved test metrics (largest "
                 f"relative difference {result.max_rel_diff:.1e} \u2264 {AGREE:.0e})")
    else:
        check = (f"WARNING: over all scenarios they differ from the saved test metrics by "
                 f"up to {result.max_rel_diff:.1%}")
    return Text(f"Re-evaluated from the bundle in {result.seconds:.2f} s ({how}); {check}.",
                note=True)
