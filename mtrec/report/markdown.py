"""The Markdown summary of a :class:`~mtrec.report.doc.Report`: the same sections and tables,
with links to the chart files instead of the charts."""

from __future__ import annotations

from mtrec.report.doc import Block, Figure, Report, Table, Text

SPECIAL = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "*": "\\*", "_": "\\_",
                         "`": "\\`", "[": "\\[", "]": "\\]", "$": "\\$", "\n": " ",
                         "\r": " "})


def md_escape(text: str) -> str:
    r"""Text that Markdown shows as written (no emphasis, links, HTML or table breaks).

    >>> md_escape("a|b <i>x_y</i>")
    'a\\|b &lt;i&gt;x\\_y&lt;/i&gt;'
    """
    return text.translate(SPECIAL)


def render_markdown(report: Report, figures_dir: str = "figures") -> str:
    lines = [f"# {md_escape(report.title)}", "", md_escape(report.subtitle), ""]
    for section in report.sections:
        lines += [f"## {md_escape(section.title)}", ""]
        for block in section.blocks:
            lines += [*_block(block, figures_dir), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _block(block: Block, figures_dir: str) -> list[str]:
    if isinstance(block, Text):
        if block.code:
            return ["```", block.text.replace("```", "'''"), "```"]
        return [f"_{md_escape(block.text)}_" if block.note else md_escape(block.text)]
    if isinstance(block, Figure):
        return [f"![{md_escape(block.caption)}]({figures_dir}/{block.name}.svg)"]
    return _table(block)


def _table(table: Table) -> list[str]:
    cols = [md_escape(c) for c in table.columns]
    rule = ["---:" if a == "r" else ":---" for a in table.alignment()]
    lines = [f"**{md_escape(table.caption)}**", ""] if table.caption else []
    lines += [_row(cols), _row(rule)]
    for i, row in enumerate(table.rows):
        cells = [md_escape(v) for v in row]
        if i in table.strong:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append(_row(cells))
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
