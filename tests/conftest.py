"""Shared fixtures: the running test network, databases, and real crawls of it."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError

from demo.scan import ROOT, crawl, scanner_settings
from schema.db import engine_for
from schema.models import Crawl
from testnet import running
from testnet.spec import Spec, load
from testnet.state import State

SPEC = ROOT / "testnet" / "specs" / "internet.toml"


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load(SPEC)


@pytest.fixture(scope="session")
def net(tmp_path_factory: pytest.TempPathFactory) -> State:
    """The local mail internet, in its own process, for the whole session."""
    with running(SPEC, tmp_path_factory.mktemp("testnet")) as state:
        yield state


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The real PostgreSQL on 127.0.0.1:5432; skipped (visibly) where there is none,
    a failure where MXCENSUS_REQUIRE_PG is set (CI)."""
    url = os.environ.get("MXCENSUS_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        with engine_for(url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as e:
        if os.environ.get("MXCENSUS_REQUIRE_PG"):
            pytest.fail(f"MXCENSUS_REQUIRE_PG is set but PostgreSQL at {url} fails: {e}")
        pytest.skip(f"no PostgreSQL at {url} (set MXCENSUS_PG_URL): {e}")
    return url


@pytest.fixture(scope="session")
def pg_database(pg_server_url: str) -> str:
    """A fresh database for this test session, dropped at the end."""
    name = f"mxcensus_test_{secrets.token_hex(4)}"
    admin = engine_for(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = engine_for(pg_server_url).url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_url(backend: str, request: pytest.FixtureRequest, directory: Path) -> str:
    if backend == "postgresql":
        return request.getfixturevalue("pg_database")
    return f"sqlite:///{directory / 'scan.sqlite'}"


@dataclass
class Scan:
    """One finished crawl of the whole test network."""

    url: str
    engine: Engine
    run_id: int
    stdout: str
    stderr: str
    connections: list[dict[str, Any]]  # the servers' log entries of this crawl

    def crawl_record(self) -> dict[str, Any]:
        with self.engine.connect() as conn:  # through the model: JSON comes back parsed
            row = conn.execute(select(Crawl).where(Crawl.run_id == self.run_id)).mappings()
            (crawl,) = [dict(r) for r in row]
        return crawl

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), {"run": self.run_id, **params}).mappings().all()


def latest_run(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT MAX(id) FROM runs")).scalar_one()


def run_scan(
    net: State, spec: Spec, url: str, directory: Path, *args: str, **settings: str
) -> Scan:
    domains = directory / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    before = len(net.connections())
    result = crawl(domains, {**scanner_settings(net), "DATABASE_URL": url, **settings}, *args)
    assert result.returncode == 0, result.stderr[-5000:]
    time.sleep(0.5)  # servers log a connection when they see it close
    engine = engine_for(url)
    return Scan(
        url, engine, latest_run(engine), result.stdout, result.stderr, net.connections()[before:]
    )


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def scan(
    request: pytest.FixtureRequest, net: State, spec: Spec, tmp_path_factory: pytest.TempPathFactory
) -> Scan:
    """A crawl of the whole test network, stored on SQLite and on PostgreSQL."""
    directory = tmp_path_factory.mktemp(f"scan-{request.param}")
    return run_scan(
        net, spec, database_url(request.param, request, directory), directory, "label=testnet"
    )


def json_value(value: Any) -> Any:
    """A JSON column read with plain SQL: parsed by psycopg2, a string from SQLite."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="session")
def reactor() -> Any:
    """The global reactor, iterated by tests (see tests/reactor.py)."""
    from tests.reactor import global_reactor

    return global_reactor()
