"""Markdown for comparison records, and the README results table generated from them.

    python -m benchmarks.render          # rewrite every compare_*.md and the README table
    python -m benchmarks.render --check  # exit 1 when the README table differs from results
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("beauty", "scientific", "office", "ml100k", "jdata")
HEADLINE = (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10"),
            ("cold_ndcg@10", "cold NDCG@10"), ("rating/rmse", "rating RMSE"),
            ("rating/mae", "rating MAE"), ("like/auc", "like AUC"),
            ("engagement/return_auc", "return AUC"), ("purchase/auc", "purchase AUC"),
            ("cart/auc", "cart AUC"), ("collect/auc", "collect AUC"))


def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    present = {k for r in rows for k in r.get("metrics", {})}
    return [(k, label) for k, label in HEADLINE if k in present]


def _shown(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-seed rows are folded into their mean row when one exists."""
    if any(r.get("aggregate") for r in rows):
        return [r for r in rows if r.get("aggregate") or "(seed" not in r.get("model", "")]
    return rows


def _name(row: dict[str, Any]) -> str:
    if row.get("kind") == "published":
        return f"{row['model']} *(published)*"
    return f"{row['system']} {row['model']}" if row["system"] != "mtrec" else row["model"]


def metrics_table(rows: list[dict[str, Any]], extra: bool = True) -> list[str]:
    cols = _columns(rows)
    head = ["system / model", "kind", *(label for _, label in cols), "train s", "peak GiB",
            "epochs (best)"]
    if extra:
        head += ["note"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in _shown(rows):
        if "error" in row or "skipped" in row or "pending" in row:
            continue
        metrics = row.get("metrics", {})
        cells = [_name(row), row.get("kind", ""), *(_cell(metrics.get(k)) for k, _ in cols),
                 _cell(row.get("train_seconds"), 1), _cell(row.get("peak_rss_gib"), 2),
                 _epochs(row)]
        if extra:
            note = row.get("note", "") or ""
            if row.get("kind") == "published":
                note = f"{row.get('source', '')}; protocol: {row.get('protocol', '')}"
            cells.append(note.replace("|", "/"))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _epochs(row: dict[str, Any]) -> str:
    """Epochs run (best), and why the run stopped when it was not its own early stop."""
    if row.get("epochs") is None:
        return "-"
    cell = f"{row['epochs']} ({row.get('best_epoch', '-')})"
    if row.get("capped"):
        cell += " **stopped by the wall-time cap**"
    elif row.get("still_improving") or _cut_by_epoch_cap(row):
        cell += " **at its epoch cap, still improving**"
    return cell


def _cut_by_epoch_cap(row: dict[str, Any]) -> bool:
    """The row ran to its epoch cap with its best epoch within its patience of it (mtrec's
    budget, or RecBole's ``stopping_step`` validations): its early stop had not come.

    >>> _cut_by_epoch_cap({"epochs": 90, "best_epoch": 81,
    ...                    "budget": {"epochs": 90, "patience": 18}})
    True
    >>> _cut_by_epoch_cap({"epochs": 40, "best_epoch": 29, "epoch_budget": 300,
    ...                    "config": {"stopping_step": 10}})
    False
    """
    budget = row.get("budget") or {}
    config = row.get("config") or {}
    cap = budget.get("epochs") or row.get("epoch_budget")
    patience = budget.get("patience") or (
        (config.get("stopping_step") or 0) * (config.get("eval_step") or 1))
    epochs, best = row.get("epochs"), row.get("best_epoch")
    if not cap or not patience or epochs is None or best is None:
        return False
    return bool(epochs >= cap and epochs - best < patience)


def render_markdown(record: dict[str, Any]) -> str:
    rows = record["rows"]
    machine = record.get("machine", {})
    out = [f"# {record['comparison']}: {record['dataset']}, protocol `{record['protocol']}`", "",
           f"Reproduce: `{record['command']}` ({_minutes(record, 1)} on "
           f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores).", "",
           "Full ranking over the whole catalog; the user's earlier items are masked and a "
           "target among them counts as a miss. Cold = test targets whose item has at most 5 "
           "training interactions. Pointwise tasks: every labelled test interaction.", "",
           *metrics_table(rows), ""]
    failed = [r for r in rows if "error" in r]
    if failed:
        out += ["## Failed runs", ""]
        out += [f"- {r['system']} {r['model']}: `{r['error'].splitlines()[-1][:300]}`"
                for r in failed]
        out += [""]
    skipped = [r for r in rows if "skipped" in r and "error" not in r]
    if skipped:
        out += ["## Not applicable", ""]
        out += [f"- {r['system']} {r['model']}: {r['skipped']}" for r in skipped] + [""]
    if pending_line(rows):
        out += ["## Not finished yet", "", pending_line(rows), ""]
    if record.get("speed"):
        out += ["## Training time vs RecBole SASRec", "", speed_line(record["speed"]), ""]
    out += ["Machine: `" + json.dumps(machine) + "`", ""]
    return "\n".join(out)


def plot_curves(record: dict[str, Any], path: Path) -> bool:
    """Validation NDCG@10 against training wall time, one line per system with a curve
    (time-to-accuracy, the report's plot as a PNG); a capped system's line ends in an x.
    False when none has one."""
    from mtrec.report.plots import Curve, time_to_accuracy

    curves = [Curve(_name(r).replace("*", ""), [s for _, s, _ in r["curve"]],
                    [v for _, _, v in r["curve"]], bool(r.get("capped")))
              for r in record["rows"] if r.get("curve")]
    if not curves:
        return False
    path.write_bytes(time_to_accuracy(
        curves, f"{record['dataset']}: time to accuracy", fmt="png"))
    return True


def speed_line(speed: dict[str, Any]) -> str:
    ours, peer = speed["mtrec"], speed["recbole_sasrec"]
    if speed.get("at_convergence"):
        return (f"Each at its own convergence: mtrec default {ours['train_seconds']:.0f} s "
                f"to the model it scores ({ours['epochs']} epochs to its early stop, best "
                f"after {ours.get('selection_seconds_to_best', 0):.0f} s, then "
                f"{ours.get('refit_seconds', 0):.0f} s of refit on train + valid); RecBole "
                f"SASRec {peer['train_seconds']:.0f} s "
                f"({peer['epochs']} epochs), best after {peer['seconds_to_best']:.0f} s. "
                f"Time-to-best ratio **{speed['time_to_best_ratio']}**; NDCG@10 "
                f"{speed['ndcg@10']['mtrec']:.4f} vs {speed['ndcg@10']['recbole_sasrec']:.4f}.")
    return (f"mtrec default: {ours['train_seconds']:.0f} s for {ours['epochs']} epochs "
            f"({ours['seconds_per_epoch']} s each, peak {ours['peak_rss_gib']} GiB); RecBole "
            f"SASRec: {peer['train_seconds']:.0f} s for {peer['epochs']} epochs "
            f"({peer['seconds_per_epoch']} s each, peak {peer['peak_rss_gib']} GiB), at the "
            f"same budget of {speed['epoch_budget']} epochs. Ratio of mtrec's training time "
            f"(with its per-epoch validation) to SASRec's (without): "
            f"**{speed['train_time_ratio']}** (to SASRec's whole fit with validation: "
            f"{speed.get('fit_wall_ratio', '-')}); NDCG@10 {speed['ndcg@10']['mtrec']:.4f} vs "
            f"{speed['ndcg@10']['recbole_sasrec']:.4f}.")


def readme_block(results: Path = RESULTS) -> str:
    out = [START, "<!-- generated by `python -m benchmarks.render` from "
           "benchmarks/results/compare_*.json; do not edit by hand -->", ""]
    for name in ORDER:
        path = results / f"compare_{name}.json"
        if not path.is_file():
            out += [f"**{name}**: not run yet (`python -m benchmarks {name}`).", ""]
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        out += [f"**{record['dataset']}** ({record['protocol']} split), reproduce with "
                f"`{record['command']}` ({_minutes(record)}):", "",
                *metrics_table(record["rows"], extra=False), ""]
        if pending_line(record["rows"]):
            out += [pending_line(record["rows"]), ""]
        if record.get("curves_plot"):
            out += [f"![{name}: validation NDCG@10 against training time]"
                    f"({record['curves_plot']})", ""]
        if record.get("speed"):
            out += [speed_line(record["speed"]), ""]
    return "\n".join([*out, END])


def _minutes(record: dict[str, Any], digits: int = 0) -> str:
    """How long the comparison takes from scratch: the systems' own wall times summed when
    recorded (some may come from the cache), else the run's."""
    if record.get("systems_seconds"):
        return f"{record['systems_seconds'] / 60:.{digits}f} min of system runs"
    return f"{record['wall_seconds'] / 60:.{digits}f} min"


def pending_line(rows: list[dict[str, Any]]) -> str:
    """The systems a partial comparison (``--cached-only``) lacks, or ''."""
    names = [r["system"] for r in rows if "pending" in r]
    if not names:
        return ""
    return (f"Not finished yet, so not in the table: {', '.join(names)} (the comparison "
            "resumes where it stopped when its command is run again).")


def update_readme(readme: Path = README, results: Path = RESULTS, check: bool = False) -> bool:
    """Write the generated block between the markers; ``check``: only compare.  Returns
    whether the README already matched."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme}: no {START} ... {END} block for the results table")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    new = head + readme_block(results) + tail
    if not check and new != text:
        readme.write_text(new, encoding="utf-8")
    return new == text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        for path in sorted(RESULTS.glob("compare_*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            path.with_suffix(".md").write_text(render_markdown(record), encoding="utf-8")
    same = update_readme(check=args.check)
    if args.check and not same:
        print(f"{README}: the results table differs from benchmarks/results; run "
              "`python -m benchmarks.render`", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
