"""Start and stop a testnet in its own process, from the CLI or from a test fixture."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testnet.state import STATE_FILE, State

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def import_root() -> str:
    """The sys.path entry this package was imported from: a checkout, site-packages,
    or a zipped egg (scrapyd), which is a valid path entry though not a directory."""
    spec = importlib.util.find_spec("testnet")
    assert spec is not None and spec.submodule_search_locations
    return os.path.dirname(os.path.abspath(spec.submodule_search_locations[0]))


# The working directory of the children: the checkout or site-packages, as before;
# None (inherit ours) when the package is zipped.
IMPORT_ROOT = import_root()
PROJECT_ROOT: Path | None = Path(IMPORT_ROOT) if os.path.isdir(IMPORT_ROOT) else None


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "testnet", *args]


def environment() -> dict[str, str]:
    """The child must import testnet and schema wherever it is started from."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (IMPORT_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def up_detached(
    spec_path: str | Path,
    state_dir: str | Path,
    smtp_port: int | None = None,
    dns_port: int | None = None,
    timeout: float = START_TIMEOUT,
    reply_delay_ms: float | None = None,
) -> State:
    """Start `up` in a new session (output to DIR/testnet.log); return once state.json
    names it. Raise RuntimeError with the log's tail if it dies or does not come up."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    args = ["up", str(Path(spec_path).resolve()), "--state", str(state_dir)]
    if smtp_port:
        args += ["--smtp-port", str(smtp_port)]
    if dns_port:
        args += ["--dns-port", str(dns_port)]
    if reply_delay_ms is not None:
        args += ["--reply-delay-ms", str(reply_delay_ms)]
    log_path = state_dir / "testnet.log"
    with log_path.open("wb") as output:
        child = subprocess.Popen(
            command(*args),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment(),
            cwd=PROJECT_ROOT,
            start_new_session=True,  # survives the caller; SIGTERM from `down` stops it
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = State.read(state_dir)
        except (FileNotFoundError, ValueError, KeyError):
            state = None
        if state is not None and state.pid == child.pid:
            return state
        if child.poll() is not None:
            raise RuntimeError(f"testnet failed to start:\n{_tail(log_path)}")
        time.sleep(0.05)
    child.kill()
    child.wait()
    raise RuntimeError(f"testnet not up after {timeout:.0f} s:\n{_tail(log_path)}")


def down(state_dir: str | Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the testnet named by DIR/state.json; False if none was running."""
    state_dir = Path(state_dir)
    try:
        state = State.read(state_dir)
    except FileNotFoundError:
        return False
    pid = state.pid
    if _alive(pid) and _is_testnet(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True


@contextmanager
def running(
    spec_path: str | Path,
    state_dir: str | Path,
    reply_delay_ms: float | None = None,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[State]:
    """`python -m testnet up SPEC --state DIR --detach`, yield its State, always stop it.
    A big world (10^5-10^6 domains) needs a longer `start_timeout` (its PKI, its spec)."""
    args = ["up", str(Path(spec_path).resolve()), "--state", str(Path(state_dir).resolve())]
    if reply_delay_ms is not None:
        args += ["--reply-delay-ms", str(reply_delay_ms)]
    args += ["--detach", "--start-timeout", str(start_timeout)]
    started = subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        env=environment(),
        cwd=PROJECT_ROOT,
        timeout=start_timeout + 10,
    )
    if started.returncode != 0:
        raise RuntimeError(f"testnet up failed ({started.returncode}):\n{started.stderr}")
    try:
        yield State.read(state_dir)
    finally:
        down(state_dir)


def _alive(pid: int) -> bool:
    # A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_testnet(pid: int) -> bool:
    """Guard against a recycled pid: only signal a process running this package."""
    try:
        return b"testnet" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the state file


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
