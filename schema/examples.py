"""The example queries of `schema/queries/`: each table of the two studies.

Read through importlib.resources, not paths next to `__file__`: scrapyd runs the
project from a zipped egg, where `schema/queries` is not a directory.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from sqlalchemy import Engine, text

QUERIES: Traversable = resources.files("schema") / "queries"


def names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".sql")
        for entry in QUERIES.iterdir()
        if entry.name.endswith(".sql")
    )


def query(name: str) -> str:
    """The SQL of `schema/queries/NAME.sql`, without its final semicolon."""
    return (QUERIES / f"{name}.sql").read_text(encoding="utf-8").rstrip().rstrip(";")


def run_query(engine: Engine, name: str, run_id: int) -> list[dict[str, Any]]:
    """Run `schema/queries/NAME.sql` for one run; rows as dicts."""
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(text(query(name)), {"run": run_id}).mappings()]
