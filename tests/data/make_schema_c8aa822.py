"""Write tests/data/schema_c8aa822_{sqlite,postgresql}.sql: databases exactly as the mxcensus
of commit c8aa822 (the baseline of schema/migrations) made them, with a few rows.

Why frozen files: tests/test_migrations.py upgrades these, and CI clones may be shallow, so the
old code cannot be fetched with `git show` at test time. This script is how they were made;
run it again only to check them, never to "refresh" them after a schema change.

Run it with the c8aa822 tree first on the path, so that `schema` is the old code:

    mkdir /tmp/c8aa822 && git archive c8aa822 | tar -x -C /tmp/c8aa822
    PYTHONPATH=/tmp/c8aa822 .venv/bin/python tests/data/make_schema_c8aa822.py \
        postgresql://postgres@127.0.0.1:5432/test

The schema is made as the old store's `_open_run` made it (`Base.metadata.create_all`, then
`schema.views.create_views`, in one transaction), and the rows are written through the old
models' tables, so every value is stored as that code stored it. The SQLite file is dumped
with `iterdump()`; for PostgreSQL the DDL statements the old code sent are recorded as sent
and the rows rendered by psycopg2, followed by the sequences' positions.
"""

from __future__ import annotations

import secrets
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg2.extras import Json
from sqlalchemy import Connection, Engine, event, insert, text

import schema.models
from schema.db import engine_for
from schema.models import Base
from schema.views import create_views

HERE = Path(__file__).resolve().parent
HEADER = """\
-- A database as mxcensus made it at commit c8aa822 (the baseline migration 0001), with a
-- few rows: written by tests/data/make_schema_c8aa822.py from that commit's code
-- ({how}).
-- Frozen: never regenerate it after a schema change; tests/test_migrations.py upgrades it.
"""
AT = datetime(2026, 11, 23, 11, 5, 34, tzinfo=UTC)
DER = bytes.fromhex("3082010a0282010100") + b"\x00\x01\x02\xff"
LEAF = "ab" * 32


def rows() -> dict[str, list[dict[str, Any]]]:
    """One run and crawl: a domain with two MX hosts (one strict, one without STARTTLS,
    one of its addresses skipped), a domain with an IP-literal MX, and an NXDOMAIN (line 3
    of the list was invalid)."""
    probe = {
        "run_id": 1,
        "crawl_id": 1,
        "port": 25,
        "started_at": AT,
        "attempt_count": 1,
        "error": None,
        "error_stage": None,
        "quit_sent": True,
        "timings": {"connect": 0.01, "banner": 0.02},
        "transcript": [["<", "220 mx ESMTP"], [">", "EHLO scanner.test"]],
        "attempts": [{"started_at": AT.isoformat(), "outcome": "ok"}],
        "banner_code": 220,
        "banner_text": "mx ESMTP",
        "ehlo_code": 250,
    }
    return {
        "runs": [{"id": 1, "name": "fixture-20261123T110534Z-0001", "created_at": AT}],
        "crawls": [
            {
                "id": 1,
                "run_id": 1,
                "label": "fixture",
                "source": "domains.txt",
                "source_sha256": "cd" * 32,
                "shard": None,
                "started_at": AT,
                "finished_at": AT,
                "status": "finished",
                "finish_reason": "finished",
                "versions": {"mxcensus": "0.1.0", "openssl": "OpenSSL 3.5.0"},
                "settings": {"SMTP_PORT": 25, "DNS_TIMEOUT": 5.0},
                "counts": {"domains": 3, "invalid": 1, "invalid_examples": ["-bad-"]},
            }
        ],
        "domains": [
            domain(1, "example.test", "ok", 2, ["10 mx1.example.test.", "20 mx2.example.test."]),
            domain(2, "literal.test", "ok", 1, ["10 [192.0.2.99]."], weight=None),
            domain(4, "missing.test", "nxdomain", 0, [], detail="NXDOMAIN"),
        ],
        "mx_records": [
            mx_record("example.test", "mx1.example.test", 10),
            mx_record("example.test", "mx2.example.test", 20),
            mx_record("literal.test", "192.0.2.99", 10),
        ],
        "mx_hosts": [
            mx_host("mx1.example.test", canonical="mx1.provider.test"),
            mx_host("mx2.example.test"),
            mx_host("192.0.2.99", ip_literal=True),
        ],
        "mx_addresses": [
            {"run_id": 1, "mx_host": "mx1.example.test", "ip": "192.0.2.1", "family": 4},
            {"run_id": 1, "mx_host": "mx2.example.test", "ip": "192.0.2.2", "family": 4},
            {
                "run_id": 1,
                "mx_host": "mx2.example.test",
                "ip": "10.0.0.2",
                "family": 4,
                "skip_reason": "non_public_address",
            },
        ],
        "certificates": [
            {
                "sha256": LEAF,
                "der": DER,
                "subject": "CN=mx1.example.test",
                "issuer": "CN=Test CA",
                "not_before": AT,
                "not_after": AT.replace(year=2027),
                "key_type": "RSA",
                "key_bits": 2048,
                "san_dns": ["mx1.example.test"],
            }
        ],
        "probes": [
            {
                **probe,
                "id": 1,
                "ip": "192.0.2.1",
                "sni": "mx1.example.test",
                "wire_outcome": "tls",
                "extensions": "PIPELINING STARTTLS",
                "starttls_advertised": True,
                "starttls_code": 220,
                "plaintext_after_starttls": b"250 stray\r\n",
                "flags": "plaintext_after_starttls",
                "tls_version": "TLSv1.3",
                "cipher": "TLS_AES_256_GCM_SHA384",
                "forward_secrecy": True,
                "kx_group": "X25519",
                "cert_sha256": LEAF,
                "chain": [LEAF],
                "leaf_names": ["mx1.example.test"],
                "post_tls_ehlo_code": 250,
            },
            {
                **probe,
                "id": 2,
                "ip": "192.0.2.2",
                "sni": "mx2.example.test",
                "wire_outcome": "none",
                "extensions": "PIPELINING",
                "starttls_advertised": False,
            },
        ],
        "targets": [
            target("mx1.example.test", "192.0.2.1", "strict"),
            target("mx2.example.test", "192.0.2.2", "none"),
        ],
    }


def domain(
    line: int,
    name: str,
    status: str,
    mx_count: int,
    rrset: list[str],
    weight: float | None = 2.5,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "run_id": 1,
        "domain": name,
        "crawl_id": 1,
        "label": "fixture",
        "weight": weight,
        "line": line,
        "status": status,
        "null_mx": False,
        "implicit_mx": False,
        "mx_count": mx_count,
        "mx_rrset": rrset,
        "dns_detail": detail,
    }


def mx_record(domain: str, mx_host: str, preference: int) -> dict[str, Any]:
    return {
        "run_id": 1,
        "mx_host": mx_host,
        "domain": domain,
        "preference": preference,
        "implicit": False,
    }


def mx_host(name: str, canonical: str | None = None, ip_literal: bool = False) -> dict[str, Any]:
    return {
        "run_id": 1,
        "name": name,
        "canonical_name": canonical,
        "dns_outcome": "ok",
        "ip_literal": ip_literal,
    }


def target(mx_host: str, ip: str, category: str) -> dict[str, Any]:
    return {
        "run_id": 1,
        "mx_host": mx_host,
        "ip": ip,
        "port": 25,
        "sni": mx_host,
        "category": category,
    }


def make(engine: Engine) -> list[str]:
    """The old store's schema creation, then the rows; the DDL statements it sent."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("CREATE"):
            sent.append(statement.strip())

    event.listen(engine, "before_cursor_execute", record)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('mxcensus schema'))"))
        Base.metadata.create_all(conn)
        create_views(conn)
    event.remove(engine, "before_cursor_execute", record)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            for row in rows().get(table.name, []):
                conn.execute(insert(table), row)
    return sent


def sqlite_fixture(directory: Path) -> str:
    path = directory / "c8aa822.sqlite"
    engine = engine_for(f"sqlite:///{path}")
    make(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        dump = "\n".join(db.iterdump())
    return HEADER.format(how="sqlite3 iterdump() of the file it made") + dump + "\n"


def postgresql_fixture(server_url: str) -> str:
    name = f"mxcensus_fixture_{secrets.token_hex(4)}"
    admin = engine_for(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = engine_for(engine_for(server_url).url.set(database=name))
    try:
        statements = make(engine)
        with engine.connect() as conn:
            statements += inserts(conn) + sequences(conn)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    how = "the DDL it sent, then its rows rendered by psycopg2"
    return HEADER.format(how=how) + "".join(f"{s};\n\n" for s in statements)


def inserts(conn: Connection) -> list[str]:
    cursor = conn.connection.dbapi_connection.cursor()
    statements = []
    for table in Base.metadata.sorted_tables:
        order = ", ".join(c.name for c in table.primary_key.columns)
        cursor.execute(f"SELECT * FROM {table.name} ORDER BY {order}")
        columns = [d.name for d in cursor.description]
        for row in cursor.fetchall():
            values = [Json(v) if isinstance(v, dict | list) else v for v in row]
            placeholders = ", ".join(["%s"] * len(values))
            sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})"
            statements.append(cursor.mogrify(sql, values).decode())
    return statements


def sequences(conn: Connection) -> list[str]:
    """Where the old crawls left the id sequences: the next run, crawl or probe gets a new id."""
    statements = []
    for table in Base.metadata.sorted_tables:
        if "id" in table.c and table.c.id.primary_key:
            statements.append(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                f" (SELECT MAX(id) FROM {table.name}))"
            )
    return statements


def main(server_url: str) -> None:
    if "c8aa822" not in schema.models.__file__:
        sys.exit(f"schema is {schema.models.__file__}: put the c8aa822 tree first on PYTHONPATH")
    with tempfile.TemporaryDirectory() as directory:
        sqlite = sqlite_fixture(Path(directory))
    (HERE / "schema_c8aa822_sqlite.sql").write_text(sqlite, encoding="utf-8")
    (HERE / "schema_c8aa822_postgresql.sql").write_text(
        postgresql_fixture(server_url), encoding="utf-8"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/test")
