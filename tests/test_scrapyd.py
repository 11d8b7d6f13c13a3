"""mxcensus as users run it on scrapyd: two real scrapyd processes on 127.0.0.1 (one
machine's cores, max_proc 2 each), the egg built and deployed with scrapyd-deploy to
scrapy.cfg targets, runs scheduled and followed with `scrapy census schedule`, results
in the real PostgreSQL.

Skipped only when scrapyd is not installed and MXCENSUS_REQUIRE_SCRAPYD is unset (CI
sets it: `pip install -e '.[test]'` brings scrapyd, scrapyd-client and setuptools<81).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from crawler.commands.census import Node, NodeError
from demo.check import compare
from demo.scan import ROOT, crawl, scanner_settings
from schema.db import engine_for
from testnet.state import State

PROJECT = "mxcensus"
VERSION = "r1"
START_TIMEOUT = 60.0
SUMMARY = [sys.executable, "-m", "scrapy", "summary"]
CENSUS = [sys.executable, "-m", "scrapy", "census"]
# The server logs a connection's end when it has seen the close; the client may open
# the next one a moment before that (as in tests/test_run_coordination.py).
CLOSE_SLACK = 0.05  # seconds


def _scrapyd_or_skip() -> None:
    missing = [m for m in ("scrapyd", "scrapyd_client") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    if os.environ.get("MXCENSUS_REQUIRE_SCRAPYD"):
        pytest.fail(f"MXCENSUS_REQUIRE_SCRAPYD is set but {', '.join(missing)} is not installed")
    pytest.skip(f"{', '.join(missing)} not installed (pip install -e '.[scrapyd]')")


@dataclass
class Scrapyd:
    """One scrapyd process in its own directory, with its own config file."""

    name: str  # its deploy target in the test's scrapy.cfg
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return (self.directory / "scrapyd.log").read_text(errors="replace")

    def job_logs(self) -> str:
        logs = sorted((self.directory / "logs").rglob("*.log"))
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


@dataclass(frozen=True)
class Deployment:
    """Where the egg went, and what a census subprocess needs to reach it."""

    nodes: list[Scrapyd]
    egg: Path
    env: dict[str, str]  # XDG_CONFIG_HOME (the test's deploy targets) and the credentials
    auth: tuple[str, str]

    def node(self, scrapyd: Scrapyd) -> Node:
        return Node(scrapyd.url, self.auth)

    def diagnostics(self) -> str:
        return "\n".join(f"### {n.name}\n{n.log()[-4000:]}\n{n.job_logs()}" for n in self.nodes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_scrapyd(name: str, directory: Path, auth: tuple[str, str]) -> Scrapyd:
    """scrapyd reads scrapyd.conf from its working directory; jobs_dir and items_dir
    stay empty as docs/distributed.md advises (a run resumes from its database; items
    are stored by the pipeline, not exported)."""
    directory.mkdir(parents=True)
    port = free_port()
    (directory / "scrapyd.conf").write_text(
        "[scrapyd]\n"
        "bind_address = 127.0.0.1\n"
        f"http_port = {port}\n"
        f"username = {auth[0]}\n"
        f"password = {auth[1]}\n"
        f"eggs_dir = {directory / 'eggs'}\n"
        f"logs_dir = {directory / 'logs'}\n"
        f"dbs_dir = {directory / 'dbs'}\n"
        "jobs_dir =\n"
        "items_dir =\n"
        "max_proc = 2\n"
        "poll_interval = 0.5\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRAPYD_", "PYTHONPATH"))}
    with (directory / "scrapyd.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scrapyd"],
            cwd=directory,  # not the checkout: jobs must run the deployed egg
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    node = Scrapyd(name, directory, port, process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            Node(node.url, auth).call("daemonstatus.json", [])
            return node
        except NodeError:
            if process.poll() is not None:
                raise RuntimeError(f"scrapyd {name} exited:\n{node.log()}") from None
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"scrapyd {name} not up after {START_TIMEOUT} s:\n{node.log()}")


def stop(node: Scrapyd) -> None:
    node.process.send_signal(signal.SIGTERM)
    try:
        node.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.wait()


def deploy(nodes: list[Scrapyd], directory: Path, auth: tuple[str, str]) -> Deployment:
    """Deploy targets in a user's own scrapy.cfg ($XDG_CONFIG_HOME), credentials from
    the environment as scrapyd-client expands them; one egg built, uploaded to each."""
    config = directory / "xdg"
    config.mkdir()
    (config / "scrapy.cfg").write_text(
        "".join(
            f"[deploy:{n.name}]\nurl = {n.url}\nproject = {PROJECT}\n"
            "username = $SCRAPYD_USERNAME\npassword = $SCRAPYD_PASSWORD\n\n"
            for n in nodes
        )
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "XDG_CONFIG_HOME": str(config),
        "SCRAPYD_USERNAME": auth[0],
        "SCRAPYD_PASSWORD": auth[1],
    }
    egg = directory / "mxcensus.egg"
    deploy_tool = [sys.executable, "-m", "scrapyd_client.deploy"]
    built = subprocess.run(
        [*deploy_tool, "--build-egg", str(egg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0 and egg.exists(), built.stderr
    for node in nodes:
        sent = subprocess.run(
            [*deploy_tool, node.name, "--egg", str(egg), "--version", VERSION],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        # scrapyd answers a failed deploy with an error in a 200, and scrapyd-deploy exits 0.
        answer = json.loads(sent.stdout) if sent.stdout.strip() else {}
        assert sent.returncode == 0 and answer.get("status") == "ok", (sent.stdout, sent.stderr)
        assert answer["spiders"] == 1, answer
    return Deployment(nodes, egg, env, auth)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    _scrapyd_or_skip()
    directory = tmp_path_factory.mktemp("scrapyd")
    auth = ("census", secrets.token_urlsafe(12))
    nodes: list[Scrapyd] = []
    try:
        for name in ("node-a", "node-b"):
            nodes.append(start_scrapyd(name, directory / name, auth))
        yield deploy(nodes, directory, auth)
    finally:
        for node in nodes:
            stop(node)


def census(
    deployment: Deployment, net: State, database: str, *args: str, timeout: float = 150
) -> subprocess.CompletedProcess[str]:
    """`scrapy census schedule …` with the test network's scanner settings, to the end."""
    return subprocess.run(
        census_command(net, database, *args),
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def census_command(net: State, database: str, *args: str) -> list[str]:
    settings = {**scanner_settings(net), "DATABASE_URL": database}
    command = [*CENSUS, "schedule", "--interval", "0.5"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return [*command, *args]


def write_list(spec: Any, path: Path) -> Path:
    path.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    return path


def run_id(database: str, name: str) -> int:
    with engine_for(database).connect() as conn:
        return conn.execute(text("SELECT id FROM runs WHERE name = :n"), {"n": name}).scalar_one()


def crawls(database: str, run: int) -> list[dict[str, Any]]:
    with engine_for(database).connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM crawls WHERE run_id = :run ORDER BY id"), {"run": run}
        )
        return [dict(r) for r in rows.mappings()]


# The views, each keyed by its unit, with the columns that must agree between a
# single-process crawl and a sharded one (sni may differ: which name came first).
VIEWS = {
    "target_results": (
        ("mx_host", "ip", "port"),
        ("category", "reasons", "error", "error_stage", "skip_reason"),
    ),
    "mx_results": (("mx_host",), None),
    "ip_results": (("ip", "port"), None),
    "domain_mx": (("domain", "mx_host"), None),
    "domain_results": (("domain",), None),
}


def view(database: str, name: str, run: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys, columns = VIEWS[name]
    with engine_for(database).connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {name} WHERE run_id = :run"), {"run": run})
        rows = [dict(r) for r in rows.mappings()]
    return {
        tuple(r[k] for k in keys): {
            c: r[c] for c in (columns or r) if c not in keys and c not in ("run_id", "sni")
        }
        for r in rows
    }


# --- the egg ---------------------------------------------------------------------


def package_files() -> set[str]:
    """Every file of the packages a crawl, a report or the test network reads that is
    not Python source (queries, specs): each must be in the egg (setup.py package_data)."""
    packages = ("crawler", "pipelines", "schema", "reports", "testnet")
    return {
        str(p.relative_to(ROOT))
        for package in packages
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")
    }


def test_the_egg_carries_every_package_file_and_runs_from_its_zip(deployment, tmp_path):
    """Activated as scrapyd's runner does, from a directory that is not the checkout:
    the code comes from the egg, and package files are read through importlib.resources."""
    names = set(zipfile.ZipFile(deployment.egg).namelist())
    assert package_files() <= names, package_files() - names
    assert "schema/queries/italian_table.sql" in names
    migrations = {str(p.relative_to(ROOT)) for p in (ROOT / "schema/migrations").rglob("*.py")}
    assert {m for m in migrations if "__pycache__" not in m} <= names
    check = (
        "import sys; from scrapyd.runner import activate_egg; activate_egg(sys.argv[1]);"
        "import crawler, schema.examples, testnet, demo.scan; from testnet.spec import load;"
        "assert crawler.__file__.startswith(sys.argv[1]), crawler.__file__;"
        "assert 'italian_table' in schema.examples.names();"
        "assert 'SELECT' in schema.examples.query('italian_table').upper();"
        "assert load(testnet.DEFAULT_SPEC).domains;"
        "assert demo.scan.checkout() is None;"
        "import crawler.commands.census, crawler.spiders.tld_mx, pipelines.store"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", check, str(deployment.egg)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_requirements_txt_pins_what_setup_py_requires():
    setup = (ROOT / "setup.py").read_text()
    pins = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert pins and all("==" in pin and f'"{pin}"' in setup for pin in pins)


# --- runs ------------------------------------------------------------------------


def test_a_sharded_run_equals_a_single_crawl_and_is_polite_across_shards(
    deployment, net, spec, pg_database, tmp_path
):
    """The issue's "done when": 4 shards over two scrapyd nodes, followed by `scrapy
    census`; the merged views equal a single-process crawl's; the servers' own log
    shows each IP probed once in the run and never two connections at once to one IP."""
    domains = write_list(spec, tmp_path / "domains.txt")
    settings = {**scanner_settings(net), "DATABASE_URL": pg_database}
    single = crawl(domains, settings, "run=scrapyd-single", "label=testnet")
    assert single.returncode == 0, single.stderr[-3000:]

    before = len(net.connections())
    result = census(
        deployment,
        net,
        pg_database,
        "--nodes=node-a,node-b",
        "--shards=4",
        f"--version={VERSION}",
        f"-adomains={domains}",
        "-arun=scrapyd-sharded",
        "-alabel=testnet",
    )
    time.sleep(0.5)  # servers log a connection when they see it close
    connections = net.connections()[before:]
    output = result.stdout + result.stderr
    print(output)  # shown when the test fails
    assert result.returncode == 0, output + deployment.diagnostics()
    assert deployment.auth[1] not in output

    sharded = run_id(pg_database, "scrapyd-sharded")
    rows = crawls(pg_database, sharded)
    assert sorted(r["shard"] for r in rows) == ["1/4", "2/4", "3/4", "4/4"]
    assert {r["status"] for r in rows} == {"finished"}
    assert {r["node"] for r in rows} == {socket.getfqdn()}
    for row in rows:  # each crawl knows its scrapyd job, which census printed
        assert row["job"] and f"job {row['job']} on http://127.0.0.1:" in result.stdout
    listed = {
        job["id"]: section
        for node in deployment.nodes
        for section, jobs in deployment.node(node).call("listjobs.json", []).items()
        if section in ("pending", "running", "finished")
        for job in jobs
    }
    assert all(listed.get(r["job"]) == "finished" for r in rows)
    assert "4 shards: 0 pending, 0 running, 4 finished, 0 failed" in result.stdout

    alone = run_id(pg_database, "scrapyd-single")
    for name in VIEWS:
        assert view(pg_database, name, sharded) == view(pg_database, name, alone), name
    engine = engine_for(pg_database)
    assert compare(spec, engine, sharded) == []

    with engine.connect() as conn:
        probes = conn.execute(
            text("SELECT ip, sni, attempt_count FROM probes WHERE run_id = :run"),
            {"run": sharded},
        ).all()
    attempts: dict[str, int] = defaultdict(int)
    by_sni: dict[tuple[str, str], int] = {}
    for ip, sni, count in probes:
        attempts[ip] += count
        by_sni[ip, sni] = count
    by_ip = defaultdict(list)
    for conn in connections:
        by_ip[conn["ip"]].append(conn)
    assert by_ip
    for ip, conns in by_ip.items():
        # Once per IP (and SNI name), however many shards reached it: one connection per
        # attempt of the run's probes of it, retries of transient outcomes included.
        assert len(conns) <= attempts[ip], (ip, len(conns), attempts[ip])
        per_sni: dict[str, int] = defaultdict(int)
        for c in conns:
            if c["sni"]:
                per_sni[c["sni"]] += 1
        assert all(n <= by_sni.get((ip, sni), 0) for sni, n in per_sni.items()), (ip, per_sni)
        spans = sorted((c["start"], c["end"]) for c in conns)
        overlaps = [(a, b) for a, b in pairwise(spans) if b[0] < a[1] - CLOSE_SLACK]
        assert not overlaps, (ip, overlaps)

    database = f"-sDATABASE_URL={pg_database}"
    status = subprocess.run(
        [*CENSUS, "status", "--run=scrapyd-sharded", "--nodes=node-a,node-b", database],
        cwd=ROOT,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "4 shards: 0 pending, 0 running, 4 finished, 0 failed" in status.stdout
    summary = subprocess.run(
        [*SUMMARY, "--run", "scrapyd-sharded", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert summary.returncode == 0, summary.stderr
    assert "shards (4)" in summary.stdout
    for row in rows:
        assert row["job"] in summary.stdout


def test_a_failed_job_is_told_from_a_finished_one_and_scheduled_again(deployment, net, pg_database):
    """A list URL that cannot be fetched: each crawl records `failed` and exits 1,
    which scrapyd lists as "finished". census calls it failed, schedules it once
    more, then gives up with exit status 1. Credentials in the node URL are used,
    never shown."""
    user, password = deployment.auth
    port = free_port()  # nothing listens there: the list cannot be fetched
    node = deployment.nodes[0]
    result = census(
        deployment,
        net,
        pg_database,
        f"--nodes=http://{user}:{password}@127.0.0.1:{node.port}",
        "--shards=2",
        f"-adomains=http://127.0.0.1:{port}/list.csv",
        "-arun=scrapyd-unfetchable",
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 1, output + deployment.diagnostics()
    assert password not in output
    rows = crawls(pg_database, run_id(pg_database, "scrapyd-unfetchable"))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"failed"}
    # The records said failed while the last processes were still exiting.
    assert wait_for_jobs(deployment.node(node), {r["job"] for r in rows}) == {"finished"}
    assert result.stdout.count("retry 1/1") == 2
    assert result.stdout.count("failed for good after 1 retry") == 2
    assert "2 shards: 0 pending, 0 running, 0 finished, 2 failed" in result.stdout


def test_a_shard_whose_process_died_is_scheduled_again_and_the_run_completes(
    deployment, net, spec, pg_database, tmp_path
):
    """kill -9 a running crawl: scrapyd lists its job as finished while its crawl row
    still says running. census calls it dead and schedules the shard again; the new
    crawl joins the run, takes over the dead crawl's claims once its lease lapses,
    and the run ends as the test network declares."""
    domains = write_list(spec, tmp_path / "domains.txt")
    node = deployment.nodes[1]
    process = subprocess.Popen(
        census_command(
            net,
            pg_database,
            "--nodes=node-b",
            "--shards=1",
            f"-adomains={domains}",
            "-arun=scrapyd-killed",
            "-sRUN_HEARTBEAT=1",
            "-sRUN_LEASE=4",
        ),
        cwd=ROOT,
        env=deployment.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pid = wait_for_running_crawl(deployment.node(node), pg_database, "scrapyd-killed")
        os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=150)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(output)
    assert process.returncode == 0, output + deployment.diagnostics()
    assert "shard 1/1: dead" in output and "retry 1/1" in output
    run = run_id(pg_database, "scrapyd-killed")
    first, *rest = crawls(pg_database, run)
    assert first["status"] != "finished" and [r["status"] for r in rest] == ["finished"]
    assert compare(spec, engine_for(pg_database), run) == []


def wait_for_jobs(node: Node, jobs: set[str], timeout: float = 30) -> set[str]:
    """What scrapyd calls these jobs once none of them is pending or running."""
    deadline = time.monotonic() + timeout
    while True:
        listed = node.call("listjobs.json", [("project", PROJECT)])
        states = {
            s for s in ("pending", "running", "finished") for j in listed[s] if j["id"] in jobs
        }
        if states <= {"finished"} or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def wait_for_running_crawl(node: Node, database: str, run: str, timeout: float = 60) -> int:
    """The pid of the run's crawl, once it has written its crawl row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = node.call("listjobs.json", [("project", PROJECT)])["running"]
        try:
            rows = crawls(database, run_id(database, run))
        except Exception:  # no run yet
            rows = []
        pids = {job["id"]: job["pid"] for job in running}
        for row in rows:
            if row["status"] == "running" and row["job"] in pids:
                return pids[row["job"]]
        time.sleep(0.1)
    raise AssertionError(f"no running crawl of run {run} after {timeout} s")
