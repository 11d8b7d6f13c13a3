"""Terminal rendering: one aligned block per table.

Layout (stable, so scripts may read it): a `== Title  [name]` line, a header line, one line
per row with cells separated by at least two spaces, a blank line, then the note.
Missing values are `-`, shares are percentages with two decimals,
as the studies printed theirs (Facebook: 25.76% / 7.97% / 6.63%).
"""

from __future__ import annotations

import textwrap
from typing import Any

from reports.table import Column, Report, Table

WIDTH = 100


def cell(value: Any, column: Column) -> str:
    if value is None:
        return "-"
    if column.kind == "share":
        return f"{100 * value:.2f}%"
    if column.kind == "bool":
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def render_table(t: Table) -> str:
    columns = [c for c in t.columns if c.shown]
    header = [c.title or " " for c in columns]
    body = [[cell(row[c.name], c) for c in columns] for row in t.rows]
    widths = [max(len(x) for x in [h, *(r[i] for r in body)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        parts = [
            x.ljust(w) if c.kind == "text" else x.rjust(w)
            for x, w, c in zip(cells, widths, columns, strict=True)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    lines = [f"== {t.title}  [{t.name}]", line(header)]
    lines += [line(r) for r in body] if body else ["  (none)"]
    if t.note:
        lines += ["", *textwrap.wrap(t.note, WIDTH, initial_indent="  ", subsequent_indent="  ")]
    return "\n".join(lines)


def render(report: Report) -> str:
    blocks = [report.title, report.subtitle, *(render_table(t) for t in report.tables)]
    return "\n\n".join(blocks) + "\n"
