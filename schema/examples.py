"""The example queries of `schema/queries/`: each table of the two studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

QUERIES = Path(__file__).parent / "queries"


def names() -> list[str]:
    return sorted(p.stem for p in QUERIES.glob("*.sql"))


def run_query(engine: Engine, name: str, run_id: int) -> list[dict[str, Any]]:
    """Run `schema/queries/NAME.sql` for one run; rows as dicts."""
    sql = (QUERIES / f"{name}.sql").read_text(encoding="utf-8").rstrip().rstrip(";")
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(text(sql), {"run": run_id}).mappings()]
