"""How `scrapy census` judges shards and what it refuses to hand to scrapyd; the
follower against fake nodes and records (the real scrapyd: tests/test_scrapyd.py)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from crawler.commands.census import Census, Node, NodeError, resolve_node
from crawler.scheduling import (
    CrawlRecord,
    ShardState,
    exit_status,
    job_argument_errors,
    job_state,
    masked,
    new_run_name,
    node_for,
    progress,
    record_for,
    record_state,
    shard_record,
    shards_of_run,
    split_credentials,
)
from schema.summary import Summary, render

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
LEASE = 300.0
PG = "postgresql://census@127.0.0.1/test"


def crawl(id: int = 1, status: str = "running", age: float = 5, **kw: Any) -> CrawlRecord:
    """A crawl row whose last heartbeat is `age` seconds old."""
    kw.setdefault("shard", "1/4")
    kw.setdefault("job", "j1")
    beat = NOW - timedelta(seconds=age)
    return CrawlRecord(id, status=status, started_at=beat, heartbeat_at=beat, **kw)


@pytest.mark.parametrize(
    ("record", "state"),
    [
        (crawl(status="finished"), ShardState.FINISHED),
        (crawl(status="failed"), ShardState.FAILED),
        (crawl(status="interrupted"), ShardState.INTERRUPTED),
        (crawl(age=LEASE - 1), ShardState.RUNNING),
        (crawl(age=LEASE + 1), ShardState.DEAD),
        (crawl(status="exploded"), ShardState.FAILED),
    ],
)
def test_a_crawl_row_says_how_its_process_is_doing(record, state):
    assert record_state(record, NOW, LEASE) is state


def test_before_its_first_heartbeat_a_crawl_is_judged_by_its_start():
    """SQLite hands back naive datetimes: they are UTC, as the store writes them."""
    naive = (NOW - timedelta(seconds=LEASE + 1)).replace(tzinfo=None)
    record = CrawlRecord(1, "1/2", "running", started_at=naive, heartbeat_at=None)
    assert record_state(record, NOW, LEASE) is ShardState.DEAD


@pytest.mark.parametrize(
    ("job", "record", "state"),
    [
        # scrapyd lists a job that exited 1 as finished: the row decides.
        ("finished", crawl(status="finished"), ShardState.FINISHED),
        ("finished", crawl(status="failed"), ShardState.FAILED),
        ("finished", None, ShardState.FAILED),  # ended before it could record a crawl
        ("finished", crawl(), ShardState.DEAD),  # killed: the row was never closed
        ("running", crawl(), ShardState.RUNNING),
        ("running", crawl(age=LEASE + 1), ShardState.DEAD),  # alive but silent: lease lost
        ("running", crawl(status="interrupted"), ShardState.RUNNING),  # shutting down
        ("running", None, ShardState.RUNNING),  # starting
        ("pending", None, ShardState.PENDING),
        ("unknown", None, ShardState.PENDING),  # its node does not answer, for now
        ("unknown", crawl(), ShardState.RUNNING),  # the row's heartbeat still says alive
        (None, crawl(), ShardState.RUNNING),  # scrapyd restarted; the crawl lives on
        (None, None, ShardState.MISSING),
    ],
)
def test_a_jobs_state_comes_from_the_runs_records_first(job, record, state):
    assert job_state(job, record, NOW, LEASE) is state


def test_a_job_finds_the_crawl_it_wrote():
    records = [
        crawl(1, shard="1/2", job="old"),
        crawl(2, shard="2/2", job="j"),
        crawl(3, shard="1/2", job="j"),
    ]
    assert record_for(records, "1/2", "j").id == 3
    assert record_for(records, "1/2", "other") is None


def test_without_job_ids_a_job_takes_its_shards_crawl_begun_after_it_was_scheduled():
    records = [crawl(1, shard="1/2", job=None), crawl(4, shard="1/2", job=None)]
    assert record_for(records, "1/2", "j", after=1).id == 4
    assert record_for(records, "1/2", "j", after=4) is None


def test_a_shard_run_again_is_judged_by_its_live_or_finished_crawl():
    failed, finished = crawl(1, "failed"), crawl(2, "finished")
    assert shard_record([failed, finished], NOW, LEASE) == (ShardState.FINISHED, finished)
    rerun = crawl(3, "interrupted")
    assert shard_record([finished, rerun], NOW, LEASE)[0] is ShardState.FINISHED
    live = crawl(4)
    assert shard_record([finished, live], NOW, LEASE) == (ShardState.RUNNING, live)
    assert shard_record([failed, crawl(5, age=LEASE + 1)], NOW, LEASE)[0] is ShardState.DEAD


def test_a_runs_shards_include_the_missing_ones():
    records = [
        crawl(1, "finished", shard="1/3", node="a.example"),
        crawl(2, shard="3/3", age=LEASE + 1, node="b.example"),
        crawl(3, "finished", shard=None),  # a crawl of the whole list joined the run
    ]
    rows = shards_of_run(records, NOW, LEASE)
    assert [(label, state) for label, state, _ in rows] == [
        ("1/3", ShardState.FINISHED),
        ("2/3", ShardState.MISSING),
        ("3/3", ShardState.DEAD),
    ]
    assert rows[2][2].node == "b.example" and rows[1][2] is None


def test_shards_go_round_robin_and_a_retry_moves_to_the_next_node():
    assert [node_for(k, 0, 2) for k in range(1, 5)] == [0, 1, 0, 1]
    assert node_for(1, 1, 2) == 1 and node_for(2, 1, 2) == 0
    assert node_for(3, 5, 1) == 0


def test_progress_lines_count_every_state():
    states = [ShardState.RUNNING, ShardState.FINISHED, ShardState.FINISHED, ShardState.DEAD]
    assert progress(states) == "4 shards: 0 pending, 1 running, 2 finished, 0 failed, 1 dead"
    assert progress([ShardState.PENDING]) == "1 shard: 1 pending, 0 running, 0 finished, 0 failed"


@pytest.mark.parametrize(
    ("states", "status"),
    [
        ([ShardState.FINISHED] * 3, 0),
        ([ShardState.FINISHED, ShardState.FAILED, ShardState.INTERRUPTED], 1),
        ([ShardState.FINISHED, ShardState.DEAD], 1),
        ([ShardState.FINISHED, ShardState.INTERRUPTED], 3),
    ],
)
def test_the_runs_exit_status(states, status):
    assert exit_status(states) == status


def test_a_generated_run_name_looks_like_the_stores_own():
    assert new_run_name("it-gov", NOW, "ab12") == "it-gov-20261205T120000Z-ab12"
    assert new_run_name(None, NOW, "ab12") == "run-20261205T120000Z-ab12"


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        ({"domains": "list.txt"}, {}, "-a domains must be a URL or an absolute path"),
        ({}, {}, "-a domains=URL_OR_ABSOLUTE_PATH is required"),
        ({"domains": "/l.txt", "shard": "1/2"}, {}, "-a shard is set by census"),
        ({"domains": "/l.txt"}, {"EXCLUDE_FILE": "ex.txt"}, "-s EXCLUDE_FILE must be an absolute"),
        ({"domains": "https://u:pw@lists.example/l"}, {}, "-a domains carries a password"),
        ({"domains": "/l.txt"}, {"DATABASE_URL": "postgresql://u:pw@h/db"}, "PGPASSWORD"),
        ({"domains": "/l.txt"}, {"DATABASE_URL": "sqlite:///mxcensus.sqlite"}, "shared database"),
    ],
)
def test_what_scrapyd_cannot_be_given(args, settings, message):
    errors = job_argument_errors(args, {"DATABASE_URL": PG, **settings})
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize(
    "args",
    [{"domains": "https://lists.example/gov.csv"}, {"domains": "/srv/lists/gov.csv", "run": "x"}],
)
def test_lists_by_url_or_absolute_path_with_a_shared_database_are_fine(args):
    assert job_argument_errors(args, {"DATABASE_URL": PG}) == []
    assert job_argument_errors(args, {"DATABASE_URL": "sqlite:////srv/run.sqlite"}) == []
    assert job_argument_errors(args, {"DATABASE_URL": "postgresql:///?service=census"}) == []


def test_credentials_are_split_from_urls_and_never_shown():
    assert split_credentials("http://ops:s3cret@10.0.0.1:6800") == (
        "http://10.0.0.1:6800/",
        "ops",
        "s3cret",
    )
    assert split_credentials("http://[::1]:6800/")[0] == "http://[::1]:6800/"
    assert masked("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert masked("http://h:6800/") == "http://h:6800/"


def test_nodes_take_credentials_from_the_url_the_deploy_target_or_the_environment(monkeypatch):
    monkeypatch.setenv("SCRAPYD_USERNAME", "env-user")
    monkeypatch.setenv("SCRAPYD_PASSWORD", "env-pw")
    targets = {"a": {"url": "http://10.0.0.1:6800/", "username": "t", "password": "tp"}}
    assert resolve_node("http://u:p@10.0.0.2:6800", targets).auth == ("u", "p")
    assert resolve_node("a", targets) == Node("http://10.0.0.1:6800/", ("t", "tp"))
    assert resolve_node("http://10.0.0.3:6800", targets).auth == ("env-user", "env-pw")
    with pytest.raises(Exception, match="neither a URL nor a deploy target"):
        resolve_node("b", targets)


# --- the HTTP client against a scrapyd stand-in ----------------------------------


class _FakeScrapyd(BaseHTTPRequestHandler):
    """Answers schedule.json with an error in a 200, as scrapyd does, and wants auth."""

    seen: list[tuple[str, str | None, str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"ops:pw").decode():
            self.send_response(401)
            self.end_headers()
            return
        payload = json.dumps({"status": "error", "message": "spider 'tld_mx' not found"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_scrapyd() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeScrapyd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_an_error_in_a_200_and_a_refused_login_are_errors(fake_scrapyd):
    with pytest.raises(NodeError, match="spider 'tld_mx' not found"):
        Node(fake_scrapyd, ("ops", "pw")).schedule("mxcensus", {"run": "r"}, {"A": "1"}, "v1")
    path, _, body = _FakeScrapyd.seen[-1]
    assert path == "/schedule.json"
    assert "setting=A%3D1" in body and "_version=v1" in body and "run=r" in body
    with pytest.raises(NodeError, match="401"):
        Node(fake_scrapyd, ("ops", "wrong")).schedule("mxcensus", {}, {}, None)


# --- the follower against fake nodes and records ----------------------------------


class FakeNode(Node):
    """A node whose jobs end as the test script says; records appear with them."""

    def __init__(self, url: str, world: World) -> None:
        super().__init__(url)
        object.__setattr__(self, "world", world)

    def schedule(self, project, args, settings, version):  # type: ignore[override]
        return self.world.scheduled(self, args)

    def jobs(self, project):  # type: ignore[override]
        return {j: (s, {"id": j}) for j, (n, s) in self.world.jobs.items() if n is self}

    def cancel(self, project, job):  # type: ignore[override]
        self.world.cancelled.append(job)


class World:
    """Each new job of a shard takes the next outcome from `outcomes[shard]`:
    'finished' / 'failed' (a crawl row with that status, the job finished),
    'norecord' (the job finished without a row), 'killed' (a row left running)."""

    def __init__(self, outcomes: dict[str, list[str]]) -> None:
        self.outcomes = outcomes
        self.jobs: dict[str, tuple[FakeNode, str]] = {}
        self.rows: list[CrawlRecord] = []
        self.cancelled: list[str] = []
        self.log: list[tuple[str, str]] = []  # (shard, node url)

    def scheduled(self, node: FakeNode, args: dict[str, str]) -> str:
        job = f"job{len(self.jobs) + 1}"
        shard = args["shard"]
        self.log.append((shard, node.url))
        outcome = self.outcomes[shard].pop(0)
        self.jobs[job] = (node, "finished")
        now = datetime.now(UTC)
        if outcome != "norecord":
            status = "running" if outcome == "killed" else outcome
            self.rows.append(CrawlRecord(len(self.rows) + 1, shard, status, None, now, now, job))
        return job

    lost_reads = 0  # reads that fail as if the database were down

    def read(self, run: str) -> tuple[list[CrawlRecord], datetime]:
        if self.lost_reads and self.jobs:
            self.lost_reads -= 1
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return list(self.rows), datetime.now(UTC)


def follow(world: World, shards: int, retries: int = 1) -> int:
    nodes = [FakeNode("http://a:6800/", world), FakeNode("http://b:6800/", world)]
    census = Census(nodes, "mxcensus", "r", world, LEASE, {"domains": "/l"}, {}, None, retries)
    census.interval = 0.001
    census.start(shards)
    return census.follow()


def test_a_job_that_failed_is_scheduled_again_on_the_next_node(capsys):
    world = World({"1/2": ["failed", "finished"], "2/2": ["finished"]})
    assert follow(world, 2) == 0
    assert world.log == [
        ("1/2", "http://a:6800/"),
        ("2/2", "http://b:6800/"),
        ("1/2", "http://b:6800/"),
    ]
    out = capsys.readouterr().out
    assert "shard 1/2: failed" in out and "retry 1/1" in out
    assert "2 shards: 0 pending, 0 running, 2 finished, 0 failed" in out


def test_jobs_that_die_without_closing_their_crawl_or_writing_one_fail_for_good():
    world = World({"1/2": ["norecord", "killed"], "2/2": ["finished"]})
    assert follow(world, 2) == 1
    assert [shard for shard, _ in world.log] == ["1/2", "2/2", "1/2"]


def test_with_no_retries_a_failed_shard_is_final():
    world = World({"1/1": ["failed"]})
    assert follow(world, 1, retries=0) == 1
    assert len(world.log) == 1


def test_scheduling_a_run_again_leaves_its_finished_shards_alone():
    world = World({"1/2": [], "2/2": ["finished"]})
    world.rows.append(crawl(1, "finished", shard="1/2", job="earlier"))
    assert follow(world, 2) == 0
    assert world.log == [("2/2", "http://b:6800/")]


def test_nothing_is_judged_while_the_runs_database_cannot_be_read(capsys):
    """Every job has ended, but without the records a finished job cannot be told from
    a failed one: census waits for the database rather than scheduling anything again."""
    world = World({"1/1": ["finished"]})
    world.lost_reads = 3
    assert follow(world, 1) == 0
    assert len(world.log) == 1
    out = capsys.readouterr().out
    assert out.count("cannot be read") == 1 and "can be read again" in out


def test_the_summary_shows_each_shard_with_its_node_job_and_state():
    crawls = [
        {"id": 1, "status": "finished", "finish_reason": "finished", "counts": None},
        {"id": 2, "status": "running", "finish_reason": None, "counts": None},
    ]
    states = [ShardState.FINISHED, ShardState.DEAD]
    shards = [
        ("1/3", ShardState.FINISHED, "a.example", "j1"),
        ("2/3", ShardState.MISSING, None, None),
        ("3/3", ShardState.DEAD, "b.example", "j3"),
    ]
    summary = Summary(
        7, "it", [{**c, "state": s} for c, s in zip(crawls, states, strict=True)], [], [], 0, shards
    )
    lines = render(summary).splitlines()
    assert "  crawl 2: dead (running, without a heartbeat); list: ? domains" in lines[2]
    table = lines[lines.index("shards (3)") + 2 :][:3]
    assert [line.split() for line in table] == [
        ["1/3", "finished", "a.example", "j1"],
        ["2/3", "missing", "-", "-"],
        ["3/3", "dead", "b.example", "j3"],
    ]
