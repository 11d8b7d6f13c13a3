"""Stops and exit statuses of a real crawl of the test network: Ctrl-C once waits for
the requests in flight and says so, twice stops at once; either way the crawl's record
says `interrupted` and the process exits 3, as a `CLOSESPIDER_*` limit does."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from demo.scan import ROOT, crawl, crawl_command, environment, scanner_settings
from schema.db import engine_for

# Servers that hold a probe: a tarpit never greets, a blackhole never answers the SYN.
SLOW = ["tarpit.test", "blackhole.test", "drip.test"]


@pytest.fixture
def settings(net, tmp_path) -> dict[str, str]:
    return {
        **scanner_settings(net),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'scan.sqlite'}",
        "DATABASE_FLUSH_INTERVAL": "0.2",
    }


class Crawl:
    """A crawl subprocess whose log lines are read as they come."""

    def __init__(self, path: Path, settings: dict[str, str]):
        self.process = subprocess.Popen(
            crawl_command(path, settings),
            cwd=ROOT,
            env=environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for(self, words: str, timeout: float) -> float:
        """Seconds until a log line holds `words`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if any(words in line for line in self.lines):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"no {words!r} in {timeout} s:\n{''.join(self.lines)[-3000:]}")

    def end(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code


@contextmanager
def slow_crawl(tmp_path: Path, settings: dict[str, str], **more: str) -> Iterator[Crawl]:
    path = tmp_path / "slow.txt"
    path.write_text("".join(f"{d}\n" for d in [*SLOW, "strict.test", "plain.test"]))
    running = Crawl(path, {**settings, **more})
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def crawl_row(url: str) -> tuple[str, str]:
    with engine_for(url).connect() as conn:
        return tuple(conn.execute(text("SELECT status, finish_reason FROM crawls")).one())


def test_ctrl_c_waits_for_the_stage_deadlines_says_so_and_exits_3(settings, tmp_path):
    """Probes held by a tarpit and a blackhole: one SIGINT lets each end by its own
    deadline (8 s, not the 15 s total), logs what it waits for, and the tarpit's probe
    is stored as the banner timeout it is."""
    slow = {"SMTP_BANNER_TIMEOUT": "8", "SMTP_CONNECT_TIMEOUT": "8", "SMTP_RETRIES": "0"}
    with slow_crawl(tmp_path, settings, **slow) as running:
        running.wait_for("Spider opened", 60)
        time.sleep(1.5)  # the lookups answer at once; the probes are held
        stopped = time.monotonic()
        running.process.send_signal(signal.SIGINT)
        waited = running.wait_for("stopping: waiting for", 5)
        code = running.end(timeout=30)
        took = time.monotonic() - stopped
    log = "".join(running.lines)
    assert code == 3, log[-3000:]
    assert waited < 3
    assert took < 8 + 5, f"the stop took {took:.1f} s"
    assert "Traceback" not in log
    url = settings["DATABASE_URL"]
    assert crawl_row(url) == ("interrupted", "shutdown")
    with engine_for(url).connect() as conn:
        error = conn.execute(text("SELECT error, error_stage FROM probes WHERE ip = '127.5.0.3'"))
        assert tuple(error.one()) == ("timeout", "banner")


def test_a_second_ctrl_c_stops_at_once_and_still_records_interrupted(settings, tmp_path):
    slow = {"SMTP_BANNER_TIMEOUT": "60", "SMTP_CONNECT_TIMEOUT": "60", "SMTP_PROBE_TIMEOUT": "90"}
    with slow_crawl(tmp_path, settings, **slow) as running:
        running.wait_for("Spider opened", 60)
        time.sleep(1.5)
        running.process.send_signal(signal.SIGINT)
        running.wait_for("stopping: waiting for", 5)
        stopped = time.monotonic()
        running.process.send_signal(signal.SIGINT)
        code = running.end(timeout=30)
        took = time.monotonic() - stopped
    log = "".join(running.lines)
    assert code == 3, log[-3000:]
    assert took < 10
    url = settings["DATABASE_URL"]
    assert crawl_row(url) == ("interrupted", "forced_shutdown")
    with engine_for(url).connect() as conn:  # what was answered before is kept
        domains = conn.execute(text("SELECT COUNT(*) FROM domains")).scalar_one()
        probes = conn.execute(text("SELECT COUNT(*) FROM probes")).scalar_one()
    assert domains == 5 and probes >= 2


def test_a_closespider_limit_is_an_interrupted_crawl(settings, tmp_path):
    path = tmp_path / "slow.txt"
    path.write_text("tarpit.test\nstrict.test\n")
    result = crawl(
        path, {**settings, "SMTP_BANNER_TIMEOUT": "8", "CLOSESPIDER_TIMEOUT": "2"}, timeout=60
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert crawl_row(settings["DATABASE_URL"]) == ("interrupted", "closespider_timeout")
