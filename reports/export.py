"""CSV and JSON exports of a report's tables.

CSV: one file per table, `DIR/<table>.csv`, a header of column names then one line per
row (shares as fractions 0…1, missing values empty). JSON: one object keyed by table name,
each a list of row objects (missing values null).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from reports.table import Report, Table


def table_csv(t: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in t.columns])
    writer.writerows([row[c.name] for c in t.columns] for row in t.rows)
    return out.getvalue()


def write_csv(report: Report, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for t in report.tables:
        path = directory / f"{t.name}.csv"
        path.write_text(table_csv(t), encoding="utf-8")
        written.append(path)
    return written


def to_json(report: Report) -> str:
    return json.dumps({t.name: list(t.rows) for t in report.tables}, indent=1) + "\n"


def write(report: Report, fmt: str, output: Path | None) -> list[Path]:
    """The report as `fmt` (text, csv or json): to stdout, or into `output` (csv needs it);
    returns the files written."""
    if fmt == "csv":
        assert output is not None
        return write_csv(report, output)
    from reports.text import render  # the terminal layout is the text file's

    body = to_json(report) if fmt == "json" else render(report)
    if output is None:
        sys.stdout.write(body)
        return []
    output.mkdir(parents=True, exist_ok=True)
    path = output / ("report.json" if fmt == "json" else "report.txt")
    path.write_text(body, encoding="utf-8")
    return [path]
