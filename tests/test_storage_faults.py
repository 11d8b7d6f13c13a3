"""A PostgreSQL server restarted in the middle of a crawl: the writes and claims in flight
are retried, nothing is lost, and the crawl finishes as the test network declares.

The test starts its own PostgreSQL (its own data directory and port, `initdb` run as the
`postgres` user: tests run as root), so that it can stop and start it."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from demo.check import compare
from demo.scan import ROOT, crawl_command, environment, scanner_settings
from schema.db import engine_for
from tests.test_errors import free_port


@dataclass
class Postgres:
    bin: Path
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, program: str, *args: str, check: bool = True) -> None:
        """A server binary, as the `postgres` user (root may not run the server)."""
        command = ["runuser", "-u", "postgres", "--", str(self.bin / program), *args]
        subprocess.run(command, check=check, capture_output=True, timeout=120)

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        log = str(self.data / "log")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", log, *args)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or shutil.which("runuser") is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or runuser")
    # Under /tmp, not pytest's root-only directory: the server runs as `postgres`.
    data = Path(tempfile.mkdtemp(prefix="mxcensus-pg-"))
    shutil.chown(data, "postgres")
    server = Postgres(Path(found[-1]).parent, data / "data", free_port())
    server.run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync")
    server.ctl("start")
    try:
        yield server
    finally:
        server.run("pg_ctl", "-D", str(server.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(data, ignore_errors=True)


def stored(url: str, table: str) -> int:
    try:
        with engine_for(url).connect() as conn:
            return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    except Exception:  # not there yet, or the server is restarting
        return 0


def test_a_postgresql_restart_mid_crawl_loses_nothing(net, spec, tmp_path, postgres):
    path = tmp_path / "domains.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n")
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": postgres.url,
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "CONCURRENT_REQUESTS": "4",  # long enough to restart the server in the middle
    }
    process = subprocess.Popen(
        crawl_command(path, settings),
        cwd=ROOT,
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while stored(postgres.url, "domains") < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, "the crawl ended before the restart"
        postgres.ctl("-m", "fast", "restart")
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "database write failed, retrying" in stderr or "database unavailable" in stderr
    engine = engine_for(postgres.url)
    with engine.connect() as conn:
        run_id, status = conn.execute(text("SELECT run_id, status FROM crawls")).one()
    assert status == "finished"
    assert compare(spec, engine, run_id) == []  # every domain and target, as declared
