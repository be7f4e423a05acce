"""The report as plain data: sections of paragraphs, tables and figures.

The HTML page and the Markdown summary render the same :class:`Report`; text here is
raw (never markup): each renderer escapes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str
    note: bool = False  # a footnote-like remark (smaller, muted)
    code: bool = False  # a command or a path, shown in a monospace font


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: str = ""  # one letter per column, "l" or "r"; default: first left, rest right
    strong: frozenset[int] = frozenset()  # rows to highlight (this bundle)
    collapsed: bool = False  # long detail tables: folded in HTML

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.columns) - 1)


@dataclass(frozen=True)
class Figure:
    name: str  # file stem under figures/
    svg: bytes
    caption: str


Block = Text | Table | Figure


@dataclass
class Section:
    key: str  # anchor id: letters, digits and '-'
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]


def fmt(value: float | int | str | None, metric: str = "") -> str:
    """A table cell: counts with thousands separators, other numbers to four places.

    >>> fmt(8442.0, "next_item/users"), fmt(0.0806941, "ndcg@10"), fmt(None)
    ('8,442', '0.0807', '-')
    >>> fmt(float("nan")), fmt(7.8, "train_seconds"), fmt(1234.5), fmt(1.4, "peak_rss_gib")
    ('-', '7.8', '1,234.5', '1.40')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    name = metric.rsplit("/", 1)[-1]
    if name in ("users", "examples", "targets", "epoch") or isinstance(value, int):
        return f"{round(value):,}"
    if name.endswith("_gib"):
        return f"{value:,.2f}"
    if name.endswith("seconds") or abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def slug(text: str) -> str:
    """A file-name and anchor-safe form of ``text``.

    >>> slug("next_item/ndcg@10")
    'next-item-ndcg-10'
    """
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "x"
