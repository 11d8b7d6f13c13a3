"""A report table: the one shape every output (terminal, CSV, JSON, HTML, charts) reads.

Values are normalised once here, so outputs never see driver quirks: SQLite returns
booleans as 0/1, PostgreSQL returns `1.0 * n / SUM(n)` as Decimal and timestamps as
aware datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

Kind = Literal["text", "count", "number", "share", "bool"]


@dataclass(frozen=True)
class Column:
    """`count`: an integer; `number`: a count or a weighted sum; `share`: a fraction 0…1.
    `shown` False keeps a machine code out of the terminal and HTML (CSV and JSON keep it)."""

    name: str
    title: str
    kind: Kind = "text"
    shown: bool = True


@dataclass(frozen=True)
class Table:
    name: str  # JSON key and CSV file name
    title: str
    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    note: str = ""

    def values(self, column: str) -> list[Any]:
        return [row[column] for row in self.rows]

    def row(self, column: str, value: Any) -> dict[str, Any] | None:
        """The first row whose `column` equals `value`."""
        return next((r for r in self.rows if r[column] == value), None)


def table(
    name: str,
    title: str,
    columns: Iterable[Column],
    rows: Iterable[Mapping[str, Any]],
    note: str = "",
) -> Table:
    """A Table with every value normalised to its column's kind; other keys dropped."""
    cols = tuple(columns)
    return Table(
        name,
        title,
        cols,
        tuple({c.name: plain(row.get(c.name), c.kind) for c in cols} for row in rows),
        note,
    )


def plain(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if kind == "count":
        return int(value)
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "share":
        return float(value)
    if kind == "bool":
        return bool(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return float(value)
    return value if isinstance(value, (int, float, str)) else str(value)


def share(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when there is no whole to share."""
    return None if not whole or part is None else part / whole


@dataclass(frozen=True)
class Report:
    """Titled tables in reading order; `kind` is "run" or "compare"."""

    title: str
    subtitle: str
    tables: tuple[Table, ...]
    kind: str = "run"

    def __getitem__(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.tables)
