"""A self-contained HTML page for a :class:`~mtrec.report.doc.Report`: inline CSS, charts as
``data:`` SVG images, no script and no external URL.  Every text is escaped here."""

from __future__ import annotations

import base64
from html import escape

from mtrec.report.doc import Block, Figure, Report, Section, Table, Text

CSS = """
:root { color-scheme: light; --muted: #5f6b76; --line: #d9dee3; --accent: #d95f02; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1d2329; background: #f6f7f9; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; background: #fff;
       min-height: 100vh; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
.subtitle { color: var(--muted); margin: 0 0 12px; }
nav { font-size: 13px; margin: 8px 0 4px; }
nav a { margin-right: 14px; color: #2563a6; text-decoration: none; }
nav a:hover { text-decoration: underline; }
p { margin: 8px 0; max-width: 80ch; }
p.note { color: var(--muted); font-size: 12.5px; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f1f3f5; padding: 2px 5px; border-radius: 3px; word-break: break-all; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
p.caption { color: var(--muted); font-size: 12.5px; margin: 14px 0 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; vertical-align: bottom; }
td.r { text-align: right; white-space: nowrap; }
th.r { text-align: right; }
td.l, th.l { text-align: left; }
td.l { white-space: nowrap; }
td.l:last-child { white-space: normal; min-width: 16ch; max-width: 48ch; overflow-wrap: anywhere; }
tr.strong td { font-weight: 600; background: #fff4ec; }
tr.strong td:first-child { box-shadow: inset 3px 0 0 var(--accent); }
table.kv td:first-child { font-weight: 600; white-space: nowrap; color: #39424b; }
table.kv td:last-child { max-width: 80ch; overflow-wrap: anywhere; }
figure { display: inline-block; vertical-align: top; margin: 6px 12px 12px 0; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 12px; max-width: 70ch; }
details { margin: 6px 0 14px; }
summary { cursor: pointer; color: #2563a6; font-size: 13px; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
"""


def render_html(report: Report) -> str:
    nav = " ".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in report.sections)
    body = "\n".join(_section(s) for s in report.sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(report.title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n<h1>{escape(report.title)}</h1>\n"
            f'<p class="subtitle">{escape(report.subtitle)}</p>\n<nav>{nav}</nav>\n{body}\n'
            f"<footer>Written by <code>mtrec report</code>; the Markdown summary next to "
            f"this page has the same tables.</footer>\n</main>\n</body>\n</html>\n")


def _section(section: Section) -> str:
    blocks = "\n".join(_block(b) for b in section.blocks)
    return (f'<section id="{escape(section.key)}">\n<h2>{escape(section.title)}</h2>\n'
            f"{blocks}\n</section>")


def _block(block: Block) -> str:
    if isinstance(block, Text):
        if block.code:
            return f"<p><code>{escape(block.text)}</code></p>"
        return f'<p{" class=note" if block.note else ""}>{escape(block.text)}</p>'
    if isinstance(block, Figure):
        return _figure(block)
    return _table(block)


def _figure(fig: Figure) -> str:
    data = base64.b64encode(fig.svg).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" '
            f'alt="{escape(fig.caption)}"><figcaption>{escape(fig.caption)}</figcaption>'
            f"</figure>")


def _table(table: Table) -> str:
    align = table.alignment()
    kv = not any(table.columns)
    head = "" if kv else "<thead><tr>" + "".join(
        f'<th class="{a}">{_breakable(c)}</th>' for c, a in zip(table.columns, align, strict=True)
    ) + "</tr></thead>"
    rows = []
    for i, row in enumerate(table.rows):
        cells = "".join(f'<td class="{a}">{escape(v)}</td>'
                        for v, a in zip(row, align, strict=True))
        rows.append(f'<tr{" class=strong" if i in table.strong else ""}>{cells}</tr>')
    caption = f'<p class="caption">{escape(table.caption)}</p>' if table.caption and \
        not table.collapsed else ""
    html = (f'{caption}<div class="table-wrap"><table{" class=kv" if kv else ""}>{head}'
            f"<tbody>{''.join(rows)}</tbody></table></div>")
    if table.collapsed:
        return f"<details><summary>{escape(table.caption or 'Details')}</summary>{html}</details>"
    return html


def _breakable(name: str) -> str:
    """A column name that may wrap after each '/' (``next_item/<wbr>ndcg@10``)."""
    return escape(name).replace("/", "/<wbr>")
