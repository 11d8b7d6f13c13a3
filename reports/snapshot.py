"""A run's rows, copied once into TEMP tables that shadow the base tables and the views.

Why: on SQLite without ANALYZE statistics, `ip_results` joins `mx_records` by `run_id`
alone (a covering index wins over the `mx_host` one), which is quadratic: a
100,000-domain run never finishes. And every query re-evaluates its views over every run
in the database. Here the runs' base rows are copied into TEMP tables with the indexes the
views need, then each view of schema/views.py is materialised once, from its own SQL, into
a TEMP table of the same name. SQLite and PostgreSQL both look names up in the temporary
schema first, so schema/queries/*.sql and the report's SQL run unchanged, on a consistent
snapshot, in seconds. Nothing is written to the database.

The engine yielded has one connection (StaticPool): TEMP tables live per connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.pool import StaticPool

from schema.db import engine_for
from schema.models import Base
from schema.views import VIEWS

# Bulky raw facts no view reads: left out of the copy of `probes`.
SKIPPED = {
    "probes": {
        "transcript",
        "attempts",
        "timings",
        "chain",
        "leaf_names",
        "plaintext_after_starttls",
        "banner_text",
        "ehlo_text",
        "helo_text",
        "starttls_text",
        "post_tls_ehlo_text",
        "post_tls_extensions",
        "extensions",
        "error_detail",
        "verify_error",
        "cert_parse_error",
    },
    "protocol_probes": {"timings", "transcript"},
    "domains": {"mx_rrset", "dns_detail"},
    "mx_hosts": {"dns_detail"},
}
BASE = [
    "domains",
    "mx_records",
    "mx_hosts",
    "mx_addresses",
    "targets",
    "probes",
    "protocol_probes",
]
INDEXES = {
    "domains": ["run_id, domain", "run_id, label"],
    "mx_records": ["run_id, domain", "run_id, mx_host"],
    "mx_hosts": ["run_id, name"],
    "mx_addresses": ["run_id, mx_host, ip"],
    "targets": ["run_id, mx_host, ip"],
    "probes": ["run_id, ip, port, sni", "id"],
    "protocol_probes": ["run_id, ip, port"],
    "target_results": ["run_id, mx_host", "run_id, ip"],
    "mx_results": ["run_id, mx_host"],
    "ip_results": ["run_id, ip"],
    "ip_protocols": ["run_id, ip, port"],
    "domain_mx": ["run_id, domain", "run_id, mx_host"],
    "domain_results": ["run_id, domain", "run_id, label"],
}


@contextmanager
def snapshot(url: str, run_ids: Sequence[int]) -> Iterator[Engine]:
    """An engine on which the base tables and the views hold only these runs."""
    engine = engine_for(url, poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            _copy_consistently(conn, sorted(set(run_ids)))
        yield engine
    finally:
        engine.dispose()


def _copy_consistently(conn: Connection, run_ids: list[int]) -> None:
    """Copy every table as of one moment, even while a crawl is writing: one
    REPEATABLE READ transaction on PostgreSQL; on SQLite, whose driver commits each
    CREATE on its own, one explicit savepoint (a single WAL read snapshot).
    Committed at the end: a rolled-back TEMP table is gone."""
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            _copy(conn, run_ids)
        return
    with conn.begin():
        conn.exec_driver_sql("SAVEPOINT snapshot")
        _copy(conn, run_ids)
        conn.exec_driver_sql("RELEASE snapshot")


def _copy(conn: Connection, run_ids: list[int]) -> None:
    # The source is named before the TEMP table exists, so it is the real one; SQLite
    # needs `main.` to be sure.
    source = "main." if conn.dialect.name == "sqlite" else ""
    runs = ", ".join(str(int(r)) for r in run_ids)
    for name in BASE:
        table = Base.metadata.tables[name]
        columns = ", ".join(c.name for c in table.columns if c.name not in SKIPPED.get(name, ()))
        conn.execute(
            text(
                f"CREATE TEMP TABLE {name} AS SELECT {columns} FROM {source}{name}"
                f" WHERE run_id IN ({runs})"
            )
        )
        _index(conn, name)
    for name, sql in VIEWS.items():  # in dependency order: each reads the ones before
        conn.execute(text(f"CREATE TEMP TABLE {name} AS {sql}"))
        _index(conn, name)
    # Fresh statistics for the planner (autovacuum never analyses TEMP tables); only
    # these tables: a bare ANALYZE on PostgreSQL would analyse the whole database.
    if conn.dialect.name == "sqlite":
        conn.execute(text("ANALYZE temp"))
    else:
        conn.execute(text(f"ANALYZE {', '.join([*BASE, *VIEWS])}"))


def _index(conn: Connection, name: str) -> None:
    for i, columns in enumerate(INDEXES.get(name, ())):
        conn.execute(text(f"CREATE INDEX snapshot_{name}_{i} ON {name} ({columns})"))
