"""The report's charts as SVG bytes, drawn with matplotlib's object API on an Agg canvas
(no pyplot, no global backend: safe in a server or a test run).  Text is drawn as paths,
so an SVG needs no fonts and carries no markup from the data."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH = 7.6  # inches; at 96 px per inch about 730 px, the page's content width
STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "svg.fonttype": "path", "svg.hashsalt": "mtrec-report",
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "text.parse_math": False}  # names from the data are text, never mathtext ("$x$")
COLORS = {"bundle": "#d95f02", "mtrec": "#fdae6b", "baseline": "#7f8c8d",
          "peer": "#1b9e77", "published": "#c6dbef"}
KIND_NAMES = {"bundle": "this bundle", "mtrec": "mtrec", "baseline": "baseline",
              "peer": "peer library", "published": "published"}
SERIES = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd")


@contextmanager
def _figure(width: float, height: float, **subplots: Any) -> Iterator[tuple[Figure, Any]]:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(cast(Any, STYLE)):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        yield fig, fig.subplots(**subplots)


def _svg(fig: Figure, fmt: str = "svg") -> bytes:
    buf = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None})
    else:
        fig.savefig(buf, format=fmt, dpi=110)
    return buf.getvalue()


def training_curves(epochs: Sequence[float], loss: Sequence[float],
                    metrics: Mapping[str, Sequence[float]], best_epoch: int | None,
                    task: str) -> bytes:
    """Loss (left) and validation metrics (right) of one task per epoch."""
    with _figure(WIDTH, 2.5, ncols=2) as (fig, (left, right)):
        left.plot(epochs, loss, marker="o", markersize=3, color=SERIES[0])
        left.set(title=f"{task}: training loss", xlabel="epoch", ylabel="loss")
        for (name, values), color in zip(metrics.items(), SERIES, strict=False):
            right.plot(epochs, values, marker="o", markersize=3, color=color, label=name)
        right.set(title=f"{task}: validation", xlabel="epoch")
        if len(metrics) > 1:
            right.legend(loc="best", frameon=False)
        elif metrics:
            right.set_ylabel(next(iter(metrics)))
        for ax in (left, right):
            _epoch_axis(ax, epochs, best_epoch)
        return _svg(fig)


def _epoch_axis(ax: Axes, epochs: Sequence[float], best_epoch: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    if best_epoch is not None and epochs and min(epochs) <= best_epoch <= max(epochs):
        ax.axvline(best_epoch, color="#888888", linestyle="--", linewidth=0.8)
        ax.annotate("best", (best_epoch, 0.0), xycoords=("data", "axes fraction"),
                    xytext=(-3, 3), textcoords="offset points", fontsize=7, color="#555555",
                    ha="right")


def text_match_curve(by_scale: dict[float, float], chosen: float | None) -> bytes:
    """Validation NDCG@10 against the text-match scale (chosen on validation)."""
    scales = sorted(by_scale)
    with _figure(WIDTH / 2, 2.3) as (fig, ax):
        ax.plot(scales, [by_scale[s] for s in scales], marker="o", markersize=3,
                color=SERIES[0])
        if chosen is not None:
            ax.axvline(chosen, color=COLORS["bundle"], linestyle="--", linewidth=0.8)
        ax.set(title="Text-match scale (validation)", xlabel="scale", ylabel="ndcg@10")
        return _svg(fig)


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float | None]],
                 title: str, ylabel: str = "") -> bytes:
    """Vertical bars: one group per label in ``groups``, one bar per series in each."""
    n = max(1, len(series))
    width = 0.8 / n
    with _figure(min(WIDTH, max(3.2, 1.6 + 0.32 * len(groups) * n)), 2.8) as (fig, ax):
        for i, ((name, values), color) in enumerate(zip(series.items(), _palette(n),
                                                        strict=True)):
            xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
            heights = [math.nan if v is None else v for v in values]
            bars = ax.bar(xs, heights, width * 0.92, label=name, color=color)
            ax.bar_label(bars, fmt="%.3f", fontsize=6.5, padding=1)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 6 else 0,
                      ha="right" if len(groups) > 6 else "center")
        ax.set(title=title, ylabel=ylabel)
        ax.margins(y=0.15)
        ax.grid(axis="x", visible=False)
        if n > 1:
            ax.legend(frameon=False, ncols=n, loc="upper left", bbox_to_anchor=(0, -0.12)
                      if len(groups) <= 6 else (0, -0.3))
        return _svg(fig)


def _palette(n: int) -> list[str]:
    base = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd"]
    return [base[i % len(base)] for i in range(n)]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    kind: str  # a key of COLORS


def compare_bars(bars: Sequence[Bar], metric: str, lower_better: bool) -> bytes:
    """Horizontal bars, best on top; this bundle highlighted, published rows hatched."""
    rows = sorted(bars, key=lambda b: b.value, reverse=not lower_better)[::-1]
    labels = [_short(b.label) + ("  (published)" if b.kind == "published" else "")
              for b in rows]
    with _figure(5.2, 1.1 + 0.28 * len(rows)) as (fig, ax):
        drawn = ax.barh(range(len(rows)), [b.value for b in rows], height=0.7,
                        color=[COLORS.get(b.kind, COLORS["baseline"]) for b in rows],
                        edgecolor=["#08519c" if b.kind == "published" else "none"
                                   for b in rows], linewidth=0.6)
        for patch, b in zip(drawn, rows, strict=True):
            if b.kind == "published":
                patch.set_hatch("///")
        ax.bar_label(drawn, fmt="%.4f", fontsize=7, padding=2)
        ax.set_yticks(range(len(rows)), labels)
        for tick, b in zip(ax.get_yticklabels(), rows, strict=True):
            if b.kind == "bundle":
                tick.set_fontweight("bold")
        better = "lower is better" if lower_better else "higher is better"
        ax.set_title(f"{metric} ({better})", loc="left")
        ax.margins(x=0.12)
        ax.grid(axis="y", visible=False)
        _kind_legend(fig, [b.kind for b in rows])
        return _svg(fig)


def _short(label: str, limit: int = 32) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "\u2026"


def _kind_legend(fig: Figure, kinds: list[str]) -> None:
    from matplotlib.patches import Patch

    shown = [k for k in COLORS if k in kinds]
    handles = [Patch(facecolor=COLORS[k], hatch="///" if k == "published" else None,
                     edgecolor="#08519c" if k == "published" else "none",
                     label=KIND_NAMES[k]) for k in shown]
    fig.legend(handles=handles, frameon=False, loc="outside lower center", ncols=len(handles),
               fontsize=7)


@dataclass(frozen=True)
class Curve:
    label: str
    seconds: Sequence[float]  # training wall time at each validation
    values: Sequence[float]  # validation NDCG@10 there
    capped: bool = False  # stopped by a wall-time cap (the line ends in an x)


def time_to_accuracy(curves: Sequence[Curve], title: str = "Time to accuracy",
                     fmt: str = "svg") -> bytes:
    """Validation NDCG@10 against training wall time, one line per system (each to its own
    early stop); minutes on a log scale past 1.  ``fmt``: svg (the report) or png (the
    benchmarks' README plots)."""
    from matplotlib.ticker import FuncFormatter

    with _figure(WIDTH, 3.6) as (fig, ax):
        for curve in curves:
            minutes = [s / 60 for s in curve.seconds]
            line, = ax.plot(minutes, curve.values, linewidth=1.3, label=_short(curve.label))
            if curve.capped and minutes:
                ax.plot(minutes[-1:], curve.values[-1:], "x", color=line.get_color(),
                        markersize=8)
        ax.set_xscale("symlog", linthresh=1.0)
        # plain tick labels: symlog's default ones are mathtext, which STYLE leaves unparsed
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlabel("training wall time (minutes; log scale past 1)")
        ax.set_ylabel("validation NDCG@10")
        ax.set_title(f"{title} (x: stopped by the wall-time cap)", loc="left")
        ax.legend(frameon=False, fontsize=7, ncols=2)
        return _svg(fig, fmt)


def reward_curve(iterations: Sequence[float], train: Sequence[float],
                 valid: Sequence[float], best: int | None) -> bytes:
    """Mean episode reward per REINFORCE iteration (training batch; validation users under
    the deterministic policy)."""
    with _figure(WIDTH / 2, 2.4) as (fig, ax):
        ax.plot(iterations, train, color=SERIES[0], linewidth=0.9, label="training batch")
        pts = [(i, v) for i, v in zip(iterations, valid, strict=True) if math.isfinite(v)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                color=SERIES[2], label="validation users")
        ax.set(title="Policy training reward", xlabel="iteration", ylabel="reward per user")
        ax.legend(frameon=False, loc="best")
        _epoch_axis(ax, list(iterations), best)
        return _svg(fig)


def calibration(bins: Mapping[str, Sequence[Sequence[float]]]) -> bytes:
    """Observed rate against predicted probability per bin, one series per response head
    (point size: how many predictions the bin holds)."""
    with _figure(WIDTH / 2, 2.6) as (fig, ax):
        ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=0.8)
        for (name, rows), color in zip(bins.items(), SERIES, strict=False):
            total = max(1.0, sum(r[2] for r in rows))
            ax.scatter([r[0] for r in rows], [r[1] for r in rows], color=color, label=name,
                       s=[8 + 120 * r[2] / total for r in rows])
            ax.plot([r[0] for r in rows], [r[1] for r in rows], color=color, linewidth=0.7)
        ax.set(title="Simulator calibration (held-out logs)", xlabel="predicted",
               ylabel="observed", xlim=(0, 1), ylim=(0, 1))
        ax.legend(frameon=False, loc="upper left")
        return _svg(fig)


ZERO_SHARE = 0.002  # where a 0 % share is drawn on the log axis of :func:`share_curves`


def share_curves(series: Mapping[str, Sequence[tuple[float, float, float]]], title: str,
                 fmt: str = "svg") -> bytes:
    """Test NDCG@10 against the share of training users, one line per system: points
    ``(share, mean, sd over seeds)``, 95 % bars of the seeds' spread; 0 % at the left edge."""
    with _figure(WIDTH, 3.2) as (fig, ax):
        for (name, pts), color in zip(series.items(), SERIES, strict=False):
            pts = sorted(pts)
            ax.errorbar([max(p[0], ZERO_SHARE) for p in pts], [p[1] for p in pts],
                        yerr=[1.96 * p[2] for p in pts], marker="o", markersize=3,
                        capsize=3, linewidth=1.2, color=color, label=name)
        ticks = [ZERO_SHARE, 0.01, 0.05, 0.1, 0.25, 1.0]
        ax.set_xscale("log")
        ax.set_xticks(ticks, ["0 %", "1 %", "5 %", "10 %", "25 %", "100 %"])
        ax.minorticks_off()
        ax.set(title=title, xlabel="share of the category's training users",
               ylabel="test NDCG@10")
        ax.legend(frameon=False, loc="best")
        return _svg(fig, fmt)



def delta_bars(bars: Sequence[tuple[str, float, float]], title: str, fmt: str = "svg",
               xlabel: str = "test NDCG@10, joint minus alone (95 % interval over seeds)"
               ) -> bytes:
    """Horizontal bars of ``(label, mean difference, 95 % half-width)``, a line at 0: what
    one model over several scenarios (or tasks) gains over one model per scenario."""
    with _figure(WIDTH, 0.9 + 0.32 * max(len(bars), 1)) as (fig, ax):
        y = list(range(len(bars)))
        ax.barh(y, [b[1] for b in bars], xerr=[b[2] for b in bars], capsize=3,
                color=[SERIES[0] if b[1] >= 0 else SERIES[1] for b in bars])
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(y, [b[0] for b in bars], fontsize=7)
        ax.invert_yaxis()
        ax.set(title=title, xlabel=xlabel)
        return _svg(fig, fmt)
