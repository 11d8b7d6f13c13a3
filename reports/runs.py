"""Which runs a report is about: by id or name, by label, or the latest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from schema.db import engine_for
from schema.summary import find_run


@dataclass(frozen=True)
class RunRef:
    id: int
    name: str

    def __str__(self) -> str:
        return f"run {self.id} ({self.name})"


class NoRun(LookupError):
    """A run asked for is not in the database; the message names the database."""


def shown(url: str) -> str:
    """DATABASE_URL as printed: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def find(url: str, refs: Sequence[str | None], label: str | None = None) -> list[RunRef]:
    """Each of `refs` (an id or name; None: the latest run, or with `label` the latest run
    holding a domain of that label), or NoRun."""
    parsed = make_url(url)
    database = parsed.database or ""
    sqlite_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if sqlite_file and not Path(database).exists():  # looking would create an empty file
        raise NoRun(f"no database at {database} (DATABASE_URL {shown(url)})")
    engine = engine_for(url)
    try:
        runs = []
        for ref in refs:
            found = resolve(engine, ref, label)
            if found is None:
                what = f"labelled {label!r}" if label is not None else ref or ""
                raise NoRun(f"no run {what} in {shown(url)}".replace("  ", " "))
            runs.append(found)
        return runs
    except SQLAlchemyError as e:  # not an mxcensus database, or unreachable
        raise NoRun(f"cannot read the runs in {shown(url)}: {getattr(e, 'orig', e)}") from e
    finally:
        engine.dispose()


def resolve(engine: Engine, run: str | None = None, label: str | None = None) -> RunRef | None:
    """`run` (id or name), else the latest run holding a domain labelled `label`, else the
    latest run; None when there is no such run."""
    if label is None:
        found = find_run(engine, run)
        return RunRef(*found) if found else None
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT r.id, r.name FROM runs r WHERE r.id ="
                " (SELECT MAX(run_id) FROM domains WHERE label = :label)"
            ),
            {"label": label},
        ).first()
    return RunRef(row[0], row[1]) if row else None
