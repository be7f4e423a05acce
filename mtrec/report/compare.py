"""The section that sets the bundle beside baselines, peer libraries and published numbers
(from the benchmarks' ``compare_<key>.json`` files for the bundle's dataset)."""

from __future__ import annotations

from mtrec.eval.protocols import lower_is_better
from mtrec.report import plots
from mtrec.report.data import BundleData, CompareRow, Comparison, bundle_value
from mtrec.report.doc import Block, Figure, Section, Table, Text, fmt, slug

BUNDLE = "this bundle"


def comparisons(b: BundleData, found: list[Comparison], problems: list[str],
                folder: str | None) -> Section:
    section = Section("compare", "Against baselines, peers and published numbers")
    if folder is None:
        section.blocks.append(Text("No results directory (give --results DIR): no comparison."))
    elif not found:
        section.blocks.append(Text(f"No compare_*.json file in {folder} is about "
                                   f"{b.dataset}."))
    for comp in found:
        section.blocks.extend(_one(b, comp))
    section.blocks.extend(Text(p, note=True) for p in problems)
    return section


def headline(keys: list[str]) -> list[str]:
    """The metrics that get a chart: NDCG@10 (next item), every AUC, every RMSE.

    >>> headline(["recall@10", "like/auc", "ndcg@10", "rating/rmse", "cold_ndcg@10"])
    ['ndcg@10', 'like/auc', 'rating/rmse']
    """
    auc = sorted(k for k in keys if k.endswith("/auc"))
    rmse = sorted(k for k in keys if k.endswith("rmse"))
    return [k for k in ("ndcg@10",) if k in keys] + auc + rmse


def _one(b: BundleData, comp: Comparison) -> list[Block]:
    test = b.metrics("test")
    same = comp.protocol in ("", b.protocol)
    keys = list(dict.fromkeys(k for r in comp.rows for k in r.metrics))
    mine = {k: v for k in keys if (v := bundle_value(test, k)) is not None} if same else {}
    blocks: list[Block] = [Text(f"Comparison \u201c{comp.key}\u201d ({comp.file.name}): "
                                f"protocol {comp.protocol or '?'}"
                                + (f"; {_machine(comp)}" if comp.machine else "") + ".")]
    if comp.command:
        blocks.append(Text(comp.command, code=True))
    if not same:
        blocks.append(Text(f"This bundle was evaluated under protocol {b.protocol}, not "
                           f"{comp.protocol}: its numbers are left out of this comparison.",
                           note=True))
    published = [r for r in comp.rows if r.kind == "published"]
    for metric in headline(keys):
        bars = [plots.Bar(BUNDLE, mine[metric], "bundle")] if metric in mine else []
        bars += [plots.Bar(r.label, r.metrics[metric], r.kind) for r in comp.rows
                 if metric in r.metrics and not r.error]
        if bars:
            svg = plots.compare_bars(bars, metric, lower_is_better(metric))
            hatched = any(bar.kind == "published" for bar in bars)
            blocks.append(Figure(f"compare_{slug(comp.key)}_{slug(metric)}", svg,
                                 f"{metric} on {comp.key}"
                                 + ("; hatched: published numbers" if hatched else "")))
    timed = [r for r in comp.rows if r.curve and not r.error]
    if timed:
        svg = plots.time_to_accuracy([plots.Curve(r.label, [s for s, _ in r.curve],
                                                  [v for _, v in r.curve], r.capped)
                                      for r in timed])
        blocks.append(Figure(f"compare_{slug(comp.key)}_time_to_accuracy", svg,
                             f"validation NDCG@10 against training time on {comp.key}, each "
                             "system to its own early stop"))
    notes = _notes(comp, len(published))
    blocks.append(_table(comp, keys, mine, published, notes))
    blocks.extend(Text(f"[{i}] {r.label}: published under protocol {r.protocol or '?'}"
                       + (f"; source: {r.source}" if r.source else ""), note=True)
                  for i, r in enumerate(published, 1))
    blocks.extend(Text(f"[{i}] {text}", note=True) for text, i in notes.items())
    blocks.extend(Text(f"Failed: {r.label} ({r.kind}): {r.error}") for r in comp.rows
                  if r.error)
    return blocks


def _notes(comp: Comparison, first: int) -> dict[str, int]:
    """Each distinct row note, numbered after the ``first`` published footnotes: notes go
    under the table, so long ones do not stretch its rows."""
    notes: dict[str, int] = {}
    for r in comp.rows:
        if r.note and not r.error:
            notes.setdefault(r.note, first + len(notes) + 1)
    return notes


def _table(comp: Comparison, keys: list[str], mine: dict[str, float],
           published: list[CompareRow], notes: dict[str, int]) -> Table:
    cols = ["system", "kind", *keys, "train\u00a0s", "peak\u00a0GiB", "note"]
    rows, number = [], {id(r): i for i, r in enumerate(published, 1)}
    if mine:
        rows.append([BUNDLE, "bundle", *(fmt(mine.get(k)) for k in keys), "", "", ""])
    for r in comp.rows:
        kind = f"published [{number[id(r)]}]" if id(r) in number else r.kind
        note = f"FAILED: {r.error}" if r.error else (f"[{notes[r.note]}]" if r.note else "")
        rows.append([r.label, kind, *(fmt(r.metrics.get(k)) for k in keys),
                     fmt(r.train_seconds, "train_seconds"), fmt(r.peak_rss_gib, "peak_gib"),
                     note])
    align = "ll" + "r" * (len(keys) + 2) + "l"
    return Table(cols, rows, caption=f"All rows of {comp.file.name} (test part)", align=align,
                 strong=frozenset([0]) if mine else frozenset())


def _machine(comp: Comparison) -> str:
    m = comp.machine
    parts = [str(m[k]) for k in ("cpu", "gpu") if m.get(k)]
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    return "machine: " + (", ".join(parts) or "?")
