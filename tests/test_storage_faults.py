"""A PostgreSQL server restarted in the middle of a crawl: the writes and claims in flight
are retried, nothing is lost, and the crawl finishes as the test network declares.

When it stays down, the crawl ends failed with its unwritten rows in a spool file, which
the next crawl of the run replays first. The tests start their own PostgreSQL (its own data
directory and port, `initdb` run as the `postgres` user: tests run as root), so that they
can stop and start it."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from demo.check import compare
from demo.scan import ROOT, crawl, crawl_command, environment, scanner_settings
from pipelines.spool import append, batches, spool_path, spooled
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


def crawl_through(
    postgres: Postgres, path: Path, settings: dict[str, str], *args: str, action: str
) -> tuple[int, str]:
    """A crawl whose server gets `pg_ctl -m fast ACTION` once 10 domains are stored;
    its exit status and log."""
    process = subprocess.Popen(
        crawl_command(path, settings, *args),
        cwd=ROOT,
        env=environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while stored(postgres.url, "domains") < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, f"the crawl ended before the server's {action}"
        postgres.ctl("-m", "fast", action)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def test_a_postgresql_restart_mid_crawl_loses_nothing(net, spec, tmp_path, postgres):
    path = tmp_path / "domains.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n")
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": postgres.url,
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "CONCURRENT_REQUESTS": "4",  # long enough to restart the server in the middle
    }
    code, stderr = crawl_through(postgres, path, settings, action="restart")
    assert code == 0, stderr[-3000:]
    assert "database write failed, retrying" in stderr or "database unavailable" in stderr
    engine = engine_for(postgres.url)
    with engine.connect() as conn:
        run_id, status = conn.execute(text("SELECT run_id, status FROM crawls")).one()
    assert status == "finished"
    assert compare(spec, engine, run_id) == []  # every domain and target, as declared


def test_a_database_that_stays_down_leaves_a_spool_the_next_crawl_replays(
    net, spec, tmp_path, postgres
):
    """The server stopped mid-crawl and not restarted: past DATABASE_RETRY_FOR the crawl
    ends failed (exit 1), naming the file that holds what it could not write. With the
    server back, the same command replays it first and finishes the run as declared."""
    path = tmp_path / "domains.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n")
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": postgres.url,
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "DATABASE_RETRY_FOR": "2",
        "DATABASE_SPOOL_DIR": str(spool),
        "CONCURRENT_REQUESTS": "4",
    }
    code, stderr = crawl_through(postgres, path, settings, "run=spooled", action="stop")
    assert code == 1, stderr[-3000:]
    (kept,) = spool.iterdir()
    assert f"The rows are kept in {kept}: " in stderr
    assert "Traceback" not in stderr

    postgres.ctl("start")
    again = crawl(path, settings, "run=spooled", timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"from {kept}" in again.stderr and not kept.exists()
    engine = engine_for(postgres.url)
    with engine.connect() as conn:
        run_id = conn.execute(text("SELECT id FROM runs WHERE name = 'spooled'")).scalar_one()
    assert compare(spec, engine, run_id) == []


def test_a_spooled_batch_reads_back_as_written(tmp_path):
    url = "postgresql://census:secret@db/mxcensus"
    path = spool_path(tmp_path, url, 3, 7)
    batch = {
        "certificates": [
            {"sha256": "ab", "der": b"\x30\x82", "not_after": datetime(2030, 1, 1, tzinfo=UTC)}
        ],
        "probes": [{"ip": "192.0.2.1", "extensions": ["STARTTLS"], "timings": {"tls": 0.1}}],
    }
    append(path, batch)
    append(path, batch)
    with path.open("a") as f:
        f.write('{"probes": [')  # a crawl killed while writing
    assert "secret" not in path.name
    assert spooled(tmp_path, url, 3) == [path] and spooled(tmp_path, url, 4) == []
    assert list(batches(path)) == [batch, batch]
