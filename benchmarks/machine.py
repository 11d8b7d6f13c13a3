"""What the benchmarks share: the machine they ran on, processes timed by their own
rusage, and scratch databases.

Why: a CPU figure means nothing without the machine, the versions and the code it was
measured on, and a crawl's CPU must be its own (wait4 on the child), not the harness's.
`benchmarks.shards` and `benchmarks.bench` both measure this way; keeping it here keeps
their numbers comparable.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from demo.scan import ROOT, crawl_command, environment
from schema.db import engine_for

PG_URL = os.environ.get("MXCENSUS_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CRAWL_TIMEOUT = 1800.0  # seconds: a crawl still running then is killed and reported
POLL = 0.02  # seconds between checks for exited children
PACKAGES = (
    "mxcensus",
    "Scrapy",
    "Twisted",
    "pyOpenSSL",
    "cryptography",
    "dnspython",
    "SQLAlchemy",
    "alembic",
    "psycopg2-binary",
)


@dataclass(frozen=True)
class Process:
    """One child process, from its own rusage (wait4)."""

    args: str  # what tells it from its siblings
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


# ---------------------------------------------------------------------------------------
# Databases


@contextmanager
def scratch_database(kind: str, workdir: Path, mode: str) -> Iterator[str]:
    """A fresh database URL for one measurement; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        path = workdir / f"{mode}.sqlite"
        for stale in workdir.glob(f"{mode}.sqlite*"):
            stale.unlink()
        yield f"sqlite:///{path}"
        return
    name = f"mxcensus_bench_{os.getpid()}_{mode}".replace("-", "_")
    admin = engine_for(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def count_rows(url: str, run_name: str) -> tuple[int, int, int, list[str]]:
    """(run id, probes, domains, crawl statuses) of the run named `run_name`."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            run_id = conn.execute(
                text("SELECT id FROM runs WHERE name = :n"), {"n": run_name}
            ).scalar_one()
            probes = conn.execute(
                text("SELECT COUNT(*) FROM probes WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
            domains = conn.execute(
                text("SELECT COUNT(*) FROM domains WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
            statuses = conn.execute(
                text("SELECT status FROM crawls WHERE run_id = :r ORDER BY id"), {"r": run_id}
            ).scalars()
            return run_id, probes, domains, list(statuses)
    finally:
        engine.dispose()


def upgrade_schema(url: str) -> None:
    """`scrapy db upgrade`: the schema made ahead of time, as before starting scrapyd jobs."""
    subprocess.run(
        [sys.executable, "-m", "scrapy", "db", "upgrade", "-s", f"DATABASE_URL={url}"],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        check=True,
    )


# ---------------------------------------------------------------------------------------
# Processes


def machine_busy_seconds() -> float:
    """Busy time of all CPUs since boot (/proc/stat): who else used the machine shows here."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + sys of a running process (the test network), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process, from /proc; 0 once it has exited (or never ran)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def start_crawl(
    domains: Path, settings: Mapping[str, str], args: Sequence[str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    return start(crawl_command(domains, settings, *args), log)


def start(command: Sequence[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A child in the project directory, output to `log`, stdin closed."""
    return subprocess.Popen(
        list(command),
        cwd=ROOT,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_all(
    children: Sequence[tuple[subprocess.Popen[bytes], str]],
    started: float,
    timeout: float = CRAWL_TIMEOUT,
) -> list[Process]:
    """Reap each child with wait4 (its own CPU), noting when it ended.

    Peak RSS is polled from /proc (VmHWM) while the child runs, not taken from wait4:
    Linux's ru_maxrss of a child counts the memory of the parent it was forked from (a
    harness holding a 10^6-domain spec would make every child look that big)."""
    done: dict[int, Process] = {}
    peaks: dict[int, float] = {}
    deadline = started + timeout
    while len(done) < len(children):
        for child, args in children:
            if child.pid in done:
                continue
            if time.monotonic() > deadline:
                child.kill()
            peaks[child.pid] = max(peaks.get(child.pid, 0.0), peak_rss_mb(child.pid))
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == 0:
                continue
            child.returncode = os.waitstatus_to_exitcode(status)
            done[pid] = Process(
                args=args,
                exit_code=child.returncode,
                wall_s=round(time.monotonic() - started, 2),
                user_s=round(usage.ru_utime, 2),
                sys_s=round(usage.ru_stime, 2),
                max_rss_mb=peaks[pid],  # 0: it exited before the first look
            )
        time.sleep(POLL)
    return [done[child.pid] for child, _ in children]


# ---------------------------------------------------------------------------------------
# The machine


def machine(with_postgresql: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "openssl": _openssl_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "sqlite": sqlite3.sqlite_version,
        "git": _git_revision(),
        "source_sha256": source_digest(),
    }
    if with_postgresql:
        engine = engine_for(PG_URL)
        with engine.connect() as conn:
            info["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
    return info


def source_digest() -> str:
    """The crawler's code as measured (others may be editing it between runs)."""
    digest = hashlib.sha256()
    for package in ("crawler", "pipelines", "schema"):
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _openssl_version() -> str | None:
    try:
        out = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    revision = git("rev-parse", "--short", "HEAD")
    if not revision:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return revision + ("+uncommitted" if dirty else "")
