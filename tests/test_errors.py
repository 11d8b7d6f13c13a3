"""Mistakes a person makes, each ending in one line (the reason, then the fix), no
traceback, and the documented exit status: 1 when the database cannot be used or a
file cannot be written, 2 for a bad argument, setting or list."""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from crawler.commands.exits import interruptible
from crawler.domainnames import domain_hash
from demo.scan import ROOT, crawl, crawl_command, environment, scanner_settings
from schema.db import engine_for


@pytest.fixture
def settings(net, tmp_path) -> dict[str, str]:
    return {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'scan.sqlite'}"}


@pytest.fixture
def one_domain(tmp_path) -> Path:
    path = tmp_path / "one.txt"
    path.write_text("strict.test\n")
    return path


def command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output, output[-3000:]
    return output.splitlines()[-1]


def free_port() -> int:
    """A loopback port nothing listens on (bound once, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_postgresql_database_that_does_not_exist(settings, one_domain, pg_server_url):
    url = engine_for(pg_server_url).url.set(database="mxcensus_nowhere", password="s3cret")
    shown = url.render_as_string(hide_password=False)
    result = crawl(one_domain, {**settings, "DATABASE_URL": shown}, timeout=60)
    assert result.returncode == 1
    line = last_line(result)
    assert 'database "mxcensus_nowhere" does not exist' in line
    assert line.endswith("create it (createdb mxcensus_nowhere) or fix DATABASE_URL")
    assert "s3cret" not in result.stdout + result.stderr


def test_nothing_listening_on_the_postgresql_port(settings, one_domain):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/mxcensus"
    started = time.monotonic()
    result = crawl(one_domain, {**settings, "DATABASE_URL": url}, timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30  # not DATABASE_RETRY_FOR's 300 s of retries
    line = last_line(result)
    assert "Connection refused" in line and line.endswith("port in DATABASE_URL")


def test_a_sqlite_path_in_a_missing_directory_is_named(settings, one_domain, tmp_path):
    missing = tmp_path / "no" / "such"
    result = crawl(one_domain, {**settings, "DATABASE_URL": f"sqlite:///{missing}/x.sqlite"})
    assert result.returncode == 1
    assert last_line(result) == (
        f"no directory {missing} for the SQLite database {missing}/x.sqlite: "
        f"create it (mkdir -p {missing}) or set DATABASE_URL elsewhere"
    )
    assert not missing.exists()


def test_a_binary_file_as_the_list(settings, tmp_path):
    path = tmp_path / "list.txt.gz"
    path.write_bytes(gzip.compress(b"strict.test\nplain.test\n"))
    result = crawl(path, settings, timeout=60)
    assert result.returncode == 2
    assert "a binary file (a NUL byte at offset" in last_line(result)
    assert "decompress a .gz or .zip first" in last_line(result)


def test_a_list_without_a_valid_domain_is_refused(settings, tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# nothing here\nnot a domain\nbad..name\n")
    result = crawl(path, settings, timeout=60)
    assert result.returncode == 2
    assert "no valid domain in the list (3 lines, 2 invalid)" in last_line(result)
    assert not (tmp_path / "scan.sqlite").exists()  # no empty run becomes the latest


def test_an_empty_shard_is_fine(settings, one_domain):
    mine = domain_hash("strict.test") % 2 + 1
    result = crawl(one_domain, settings, f"shard={3 - mine}/2", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        status = conn.execute(text("SELECT status FROM crawls")).scalar_one()
    assert status == "finished"


def test_report_to_a_directory_that_cannot_be_made(settings, one_domain):
    done = crawl(one_domain, settings, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    url = settings["DATABASE_URL"]
    result = command(
        "report", "--format", "csv", "--output", "/proc/nope", "-s", f"DATABASE_URL={url}"
    )
    assert result.returncode == 1
    assert last_line(result).startswith("cannot write /proc/nope: ")


def test_summary_without_a_database_leaves_no_file(tmp_path):
    result = command("summary", cwd=tmp_path)
    assert result.returncode == 1
    assert (result.stdout + result.stderr).strip() == (
        "no database at mxcensus.sqlite (DATABASE_URL sqlite:///mxcensus.sqlite)"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("what", ["summary", "report"])
def test_summary_and_report_mask_the_password(what, pg_server_url):
    url = engine_for(pg_server_url).url.set(database="mxcensus_nowhere", password="s3cret")
    result = command(what, "-s", f"DATABASE_URL={url.render_as_string(hide_password=False)}")
    assert result.returncode == 1
    line = last_line(result)
    assert "s3cret" not in result.stdout + result.stderr
    assert ":***@" in line and line.endswith(
        "create it (createdb mxcensus_nowhere) or fix DATABASE_URL"
    )


def test_summary_shows_a_running_crawl_then_one_whose_process_is_gone(settings, tmp_path):
    """While it runs, summary shows what the crawl stored so far. kill -9: the crawl's
    row stays `running`; past the lease, summary calls it dead."""
    path = tmp_path / "slow.txt"
    path.write_text("tarpit.test\n")
    slow = {
        **settings,
        "SMTP_BANNER_TIMEOUT": "60",
        "SMTP_PROBE_TIMEOUT": "90",
        "DATABASE_FLUSH_INTERVAL": "0.2",
    }
    process = subprocess.Popen(
        crawl_command(path, slow), cwd=ROOT, env=environment(), stderr=subprocess.DEVNULL
    )
    url = settings["DATABASE_URL"]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                with engine_for(url).connect() as conn:
                    if conn.execute(text("SELECT COUNT(*) FROM domains")).scalar_one():
                        break
            except Exception:  # the tables are not there yet
                continue
        running = command("summary", "-s", f"DATABASE_URL={url}")
        assert running.returncode == 0, running.stderr
        assert "crawl 1: running; 1 domains and 0 probes stored in " in running.stdout
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    time.sleep(1.5)
    result = command("summary", "-s", f"DATABASE_URL={url}", "-s", "RUN_LEASE=1")
    assert result.returncode == 0, result.stderr
    assert "crawl 1: dead (running, without a heartbeat)" in result.stdout


def test_ctrl_c_in_a_command_is_exit_3():
    class Command:
        exitcode = 0

        @interruptible
        def run(self) -> None:
            raise KeyboardInterrupt

    ran = Command()
    ran.run()
    assert ran.exitcode == 3


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Path]:
    """A small tmpfs of our own: as root, file modes do not stop writes, a mount does.
    512 KiB: room for the schema (about 150 KiB since 0004) and a one-domain crawl with
    its WAL, not for a crawl of the whole test network (about 730 KiB)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_sqlite_database_is_named(settings, one_domain, tmpfs):
    url = f"sqlite:///{tmpfs / 'x.sqlite'}"
    assert crawl(one_domain, {**settings, "DATABASE_URL": url}, timeout=120).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    result = crawl(one_domain, {**settings, "DATABASE_URL": url}, timeout=60)
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"the SQLite database {tmpfs}/x.sqlite cannot be written ({tmpfs}/x.sqlite is read-only)"
    )


def test_a_full_disk_fails_the_crawl_cleanly(settings, spec, tmp_path, tmpfs):
    path = tmp_path / "all.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n")
    url = f"sqlite:///{tmpfs / 'x.sqlite'}"
    spool = {"DATABASE_URL": url, "DATABASE_SPOOL_DIR": str(tmp_path)}
    result = crawl(path, {**settings, **spool}, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("mxcensus-spool-*.jsonl")), "the rows not written are kept"
    errors = [line for line in result.stderr.splitlines() if "] ERROR: " in line]
    assert errors and all(url in line and "database or disk is full" in line for line in errors)
    assert "; the crawl is failed" in errors[0]
    assert "Spider closed (database_failed)" in result.stderr


class _Lists(BaseHTTPRequestHandler):
    """/empty.txt: a list without a valid domain; anything else: 404."""

    def do_GET(self) -> None:
        if self.path != "/empty.txt":
            self.send_error(404)
            return
        body = b"# nothing\nnot a domain\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("path", "status", "line"),
    [
        ("/empty.txt", 2, "/empty.txt: no valid domain in the list (2 lines, 1 invalid)"),
        ("/missing.txt", 1, "/missing.txt: HTTP 404; check the URL, or download the list"),
    ],
)
def test_a_list_url_that_is_no_list_or_not_there(settings, path, status, line):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lists)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = crawl(f"http://127.0.0.1:{server.server_port}{path}", settings, timeout=60)
    finally:
        server.shutdown()
    assert result.returncode == status
    assert line in last_line(result)
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        recorded = conn.execute(text("SELECT status FROM crawls")).scalar_one()
    assert recorded == "failed"
