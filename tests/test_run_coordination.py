"""One run over several processes: shards at once, a crawl killed and resumed,
writers that race on PostgreSQL, a database that drops away.

What a user checks: the run's views equal those of one uninterrupted crawl, and
the servers' own log shows each IP probed once in the run (SNI re-probes and
retries aside), never by two crawls at once, and never again once its facts
were committed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.test import get_crawler
from sqlalchemy import Engine, text

from crawler import settings as project_settings
from demo.check import compare
from demo.scan import ROOT, crawl, crawl_command, scanner_settings
from pipelines.store import StorePipeline
from schema.db import engine_for

# Short leases, so a killed crawl's claims lapse within the test.
FAST_RUN = {"RUN_LEASE": "2", "RUN_HEARTBEAT": "0.5", "RUN_CLAIM_WAIT": "0.3"}

VIEWS = {
    "target_results": (
        ("mx_host", "ip"),
        ("category", "reasons", "error", "error_stage", "skip_reason", "tls_version"),
    ),
    "mx_results": (
        ("mx_host",),
        ("implicit", "ip_count", "category", "best_category", "starttls_any", "answered"),
    ),
    "ip_results": (
        ("ip",),
        ("port", "mx_host_count", "domain_count", "category", "best_category", "tls_version"),
    ),
    "domain_results": (
        ("domain",),
        (
            *("label", "status", "mx_count", "implicit_mx"),
            *("best_category", "worst_category", "primary_category", "all_strict"),
        ),
    ),
}


def views(engine: Engine, run: str) -> dict[str, dict[tuple, tuple]]:
    """Every view of a run by its unit (`sni` left out: which name came first may differ)."""
    snapshot = {}
    with engine.connect() as conn:
        run_id = conn.execute(text("SELECT id FROM runs WHERE name = :n"), {"n": run}).scalar_one()
        for view, (key, columns) in VIEWS.items():
            rows = conn.execute(
                text(f"SELECT * FROM {view} WHERE run_id = :r"), {"r": run_id}
            ).mappings()
            snapshot[view] = {tuple(r[k] for k in key): tuple(r[c] for c in columns) for r in rows}
    return snapshot


def run_id(engine: Engine, run: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM runs WHERE name = :n"), {"n": run}).scalar_one()


def probed(connections: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_ip = defaultdict(list)
    for c in connections:
        by_ip[c["ip"]].append(c)
    return by_ip


# The server logs a connection's end when it has seen the close; the client may
# open the next one a moment before that. Less than this is not two conversations.
CLOSE_SLACK = 0.05  # seconds


def overlapping(connections: list[dict[str, Any]]) -> list[str]:
    """IPs that had two connections open at once."""
    found = []
    for ip, conns in probed(connections).items():
        conns = sorted(conns, key=lambda c: c["start"])
        if any(b["start"] < a["end"] - CLOSE_SLACK for a, b in pairwise(conns)):
            found.append(ip)
    return found


def more_than_once(connections: list[dict[str, Any]], retried: set[str]) -> dict[str, list]:
    """IPs connected more often than their SNI names (and retries) explain."""
    found = {}
    for ip, conns in probed(connections).items():
        names = [c["sni"] for c in conns]
        if ip not in retried and len(names) != len(set(names)):
            found[ip] = names
    return found


def retried_ips(engine: Engine, run: str) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.ip FROM probes p JOIN runs r ON r.id = p.run_id"
                " WHERE r.name = :n AND p.attempt_count > 1"
            ),
            {"n": run},
        )
        return {ip for (ip,) in rows}


@pytest.fixture(scope="module")
def domains(spec, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lists") / "domains.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def baseline(net, domains, pg_database) -> dict:
    """One uninterrupted single-process crawl of the whole test network."""
    settings = {**scanner_settings(net), "DATABASE_URL": pg_database}
    result = crawl(domains, settings, "run=baseline")
    assert result.returncode == 0, result.stderr[-3000:]
    return views(engine_for(pg_database), "baseline")


def test_shards_at_once_probe_each_ip_once_and_equal_one_crawl(
    net, spec, domains, pg_database, baseline
):
    """Three shards of one run started together: never two connections at once
    to one IP, each IP probed once (its SNI re-probes and retries aside), and
    the merged views equal one crawl's and the declarations."""
    settings = {**scanner_settings(net), "DATABASE_URL": pg_database, **FAST_RUN}
    before = len(net.connections())
    shards = [
        subprocess.Popen(
            crawl_command(domains, settings, "run=sharded", f"shard={k}/3"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in (1, 2, 3)
    ]
    outputs = [shard.communicate(timeout=300)[1] for shard in shards]
    assert [s.returncode for s in shards] == [0, 0, 0], outputs[0][-3000:]
    time.sleep(0.5)  # servers log a connection when it closes
    connections = net.connections()[before:]
    engine = engine_for(pg_database)
    assert overlapping(connections) == []
    assert more_than_once(connections, retried_ips(engine, "sharded")) == {}
    assert views(engine, "sharded") == baseline
    assert compare(spec, engine, run_id(engine, "sharded")) == []
    with engine.connect() as conn:
        crawls = conn.execute(
            text(
                "SELECT c.shard, c.status, c.node FROM crawls c JOIN runs r ON r.id = c.run_id"
                " WHERE r.name = 'sharded' ORDER BY c.shard"
            )
        ).all()
        claims = conn.execute(text("SELECT COUNT(*) FROM claims")).scalar_one()
    assert [(s, st) for s, st, _ in crawls] == [(f"{k}/3", "finished") for k in (1, 2, 3)]
    assert all(node for *_, node in crawls)
    assert claims == 0, "a finished crawl gives its claims back"


def _committed(engine: Engine, run: str) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.ip, p.sni FROM probes p JOIN runs r ON r.id = p.run_id WHERE r.name = :n"
            ),
            {"n": run},
        )
        return {(ip, sni) for ip, sni in rows}


def _count(engine: Engine, sql: str) -> int:
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar_one()
    except Exception:  # the tables are not there yet
        return -1


@pytest.mark.parametrize(
    ("point", "probes"),
    [("during DNS", 0), ("during probes", 15), ("later in the probes", 45)],
)
def test_a_killed_crawl_resumed_ends_as_one_crawl(
    net, spec, domains, pg_database, baseline, point, probes
):
    """SIGKILL at a point of the crawl, then the same command again: the run ends
    with the same views as one crawl, and no server whose facts were committed
    before the kill is connected to again with the same SNI."""
    run = f"killed-{probes}"
    # Small, frequent batches: a kill lands between or inside store transactions.
    settings = {
        **scanner_settings(net),
        **FAST_RUN,
        "DATABASE_URL": pg_database,
        "DATABASE_BATCH_SIZE": "7",
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "CONCURRENT_REQUESTS": "8",
    }
    engine = engine_for(pg_database)
    sql = f"SELECT COUNT(*) FROM probes p JOIN runs r ON r.id = p.run_id WHERE r.name = '{run}'"
    crawls = f"SELECT COUNT(*) FROM crawls c JOIN runs r ON r.id = c.run_id WHERE r.name = '{run}'"
    process = subprocess.Popen(
        crawl_command(domains, settings, f"run={run}"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _count(engine, crawls) >= 1 and _count(engine, sql) >= probes:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the crawl ended before the kill point ({point})"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)
    done = _committed(engine, run)
    before = len(net.connections())

    result = crawl(domains, settings, f"run={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    time.sleep(0.5)
    snis = defaultdict(set)
    for ip, sni in done:
        snis[ip].add(sni)
    # A connection without TLS shows no SNI: any to a committed IP counts.
    again = [
        (c["ip"], c["sni"])
        for c in net.connections()[before:]
        if c["ip"] in snis and (c["sni"] is None or c["sni"] in snis[c["ip"]])
    ]
    assert again == [], f"connected again after the kill ({point}) to committed servers"
    assert views(engine, run) == baseline
    assert compare(spec, engine, run_id(engine, run)) == []
    with engine.connect() as conn:
        statuses = conn.execute(
            text(
                "SELECT c.status FROM crawls c JOIN runs r ON r.id = c.run_id"
                " WHERE r.name = :n ORDER BY c.id"
            ),
            {"n": run},
        ).scalars()
        assert list(statuses) == ["running", "finished"]  # the killed one never closed


def test_a_second_crawl_of_a_finished_run_connects_to_nothing(net, spec, domains, tmp_path):
    """Resuming a complete run (same -a run=) asks nothing of any mail server."""
    settings = {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}"}
    first = crawl(domains, settings, "run=again")
    assert first.returncode == 0, first.stderr[-3000:]
    time.sleep(0.5)
    before = len(net.connections())
    second = crawl(domains, settings, "run=again")
    assert second.returncode == 0, second.stderr[-3000:]
    time.sleep(0.5)
    assert net.connections()[before:] == []
    # Every domain is taken as answered, but a DNS failure: that one is asked again.
    failed = {"dns_timeout", "servfail"}
    answered = [d for d, s in spec.expected_domains().items() if str(s) not in failed]
    assert f"'mxcensus/domains/resumed': {len(answered)}," in second.stderr
    assert f"'mxcensus/domains/requested': {len(spec.expected_domains()) - len(answered)}," in (
        second.stderr
    )
    engine = engine_for(settings["DATABASE_URL"])
    assert compare(spec, engine, run_id(engine, "again")) == []


def test_a_crawl_that_does_not_fit_the_run_is_refused(net, domains, tmp_path):
    settings = {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}"}
    first = crawl(domains, {**settings, "SMTP_SNI_PROBES": "1"}, "run=mixed", "shard=1/2")
    assert first.returncode == 0, first.stderr[-3000:]
    other = tmp_path / "other.txt"
    other.write_text("strict.test\n")
    for args, extra, why in [
        (("shard=2/3",), {"SMTP_SNI_PROBES": "1"}, "shard count is 3, the run's is 2"),
        (("shard=2/2",), {}, "SMTP_SNI_PROBES is '4', the run's is '1'"),
    ]:
        result = crawl(domains, {**settings, **extra}, "run=mixed", *args, timeout=60)
        assert result.returncode != 0
        assert why in result.stderr, result.stderr[-2000:]
    result = crawl(other, {**settings, "SMTP_SNI_PROBES": "1"}, "run=mixed", "shard=2/2")
    assert result.returncode != 0 and "its list (sha256" in result.stderr


# --- the store under concurrency and faults -------------------------------------------


def _run_with_crawls(engine: Engine, name: str, crawls: int) -> tuple[int, list[int]]:
    """A run and its crawl rows, written straight to a migrated database."""
    from schema.migrate import upgrade

    upgrade(engine)
    with engine.begin() as conn:
        rid = conn.execute(
            text("INSERT INTO runs (name, created_at) VALUES (:n, CURRENT_TIMESTAMP) RETURNING id"),
            {"n": name},
        ).scalar_one()
        crawl_ids = [
            conn.execute(
                text(
                    "INSERT INTO crawls (run_id, source, started_at, status, versions, settings)"
                    " VALUES (:r, :n, CURRENT_TIMESTAMP, 'running', '{}', '{}') RETURNING id"
                ),
                {"r": rid, "n": name},
            ).scalar_one()
            for _ in range(crawls)
        ]
    return rid, crawl_ids


def _writer(url: str, run_id: int, crawl_id: int) -> StorePipeline:
    project = {k: v for k, v in vars(project_settings).items() if k.isupper()}
    crawler = get_crawler(
        settings_dict={**project, "DATABASE_URL": url, "DATABASE_RETRY_FOR": "60"}
    )
    crawler.stats.open_spider()
    store = StorePipeline(crawler)
    store.engine = engine_for(url)
    store.run_id, store.crawl_id = run_id, crawl_id
    return store


def _batch(rng: random.Random, run_id: int, crawl_id: int, n: int, shared: int, tag: str) -> dict:
    """Domains naming MX hosts shared with the other writer, in a random order."""
    hosts = [f"mx{i}.shared.test" for i in range(shared)]
    rng.shuffle(hosts)
    domains, records, names, addresses = [], [], [], []
    for i in range(n):
        domain = f"d{i}-{tag}.test"
        host = hosts[i % shared]
        domains.append(
            {
                "run_id": run_id,
                "domain": domain,
                "crawl_id": crawl_id,
                "label": None,
                "weight": None,
                "line": i,
                "status": "ok",
                "null_mx": False,
                "implicit_mx": False,
                "mx_count": 1,
                "mx_rrset": [f"10 {host}."],
                "dns_detail": None,
            }
        )
        records.append(
            {
                "run_id": run_id,
                "domain": domain,
                "mx_host": host,
                "preference": 10,
                "implicit": False,
            }
        )
    for host in hosts:
        names.append(
            {
                "run_id": run_id,
                "name": host,
                "canonical_name": None,
                "dns_outcome": "ok",
                "dns_detail": None,
                "ip_literal": False,
            }
        )
        addresses.append(
            {"run_id": run_id, "mx_host": host, "ip": "192.0.2.1", "family": 4, "skip_reason": None}
        )
    return {"domains": domains, "mx_records": records, "mx_hosts": names, "mx_addresses": addresses}


def test_two_writers_racing_on_shared_mx_hosts_lose_nothing(pg_database, spec):
    """The store's own batch writer from two threads, each batch naming the same
    20 MX hosts in a different order (PostgreSQL deadlocked these before)."""
    engine = engine_for(pg_database)
    rid, crawl_ids = _run_with_crawls(engine, "race", 2)
    errors: list[BaseException] = []
    pairs = 20

    def write(k: int) -> None:
        store = _writer(pg_database, rid, crawl_ids[k])
        rng = random.Random(k)
        try:
            for b in range(pairs):
                store._write(_batch(rng, rid, crawl_ids[k], 200, 20, f"{k}-{b}"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT COUNT(*) FROM domains WHERE run_id = :r),"
                " (SELECT COUNT(*) FROM mx_records WHERE run_id = :r),"
                " (SELECT COUNT(*) FROM mx_hosts WHERE run_id = :r)"
            ),
            {"r": rid},
        ).one()
    assert tuple(counts) == (2 * pairs * 200, 2 * pairs * 200, 20)


def test_a_dropped_database_connection_is_survived(net, spec, domains, pg_database):
    """Every connection of the crawl killed mid-crawl (a failover): it reconnects,
    retries the batch, and the run is whole."""
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": pg_database,
        "DATABASE_BATCH_SIZE": "5",
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "CONCURRENT_REQUESTS": "8",
    }
    engine = engine_for(pg_database)
    name = engine.url.database
    process = subprocess.Popen(
        crawl_command(domains, settings, "run=dropped"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sql = "SELECT COUNT(*) FROM probes p JOIN runs r ON r.id = p.run_id WHERE r.name = 'dropped'"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _count(engine, sql) < 10:
        time.sleep(0.05)
    admin = engine_for(pg_database.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :d AND pid <> pg_backend_pid()"
            ),
            {"d": name},
        ).scalar_one()
    _, stderr = process.communicate(timeout=300)
    assert killed >= 1
    assert process.returncode == 0, stderr[-3000:]
    assert "retrying in" in stderr
    engine.dispose()  # this test's own connections were killed too
    assert compare(spec, engine, run_id(engine, "dropped")) == []


def test_a_database_that_stays_away_fails_the_crawl(net, domains, pg_server_url, tmp_path):
    """When the database refuses connections for longer than DATABASE_RETRY_FOR, the
    crawl stops, says why in one line, and exits 1: never `finished`; what it could not
    write is kept in its spool."""
    import secrets

    name = f"mxcensus_away_{secrets.token_hex(3)}"
    admin = engine_for(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = engine_for(pg_server_url).url.set(database=name).render_as_string(hide_password=False)
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": url,
        "DATABASE_BATCH_SIZE": "5",
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "DATABASE_RETRY_FOR": "3",
        "DATABASE_SPOOL_DIR": str(tmp_path),
        "CONCURRENT_REQUESTS": "4",
    }
    engine = engine_for(url)
    try:
        process = subprocess.Popen(
            crawl_command(domains, settings, "run=away"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _count(engine, "SELECT COUNT(*) FROM probes") < 3:
            time.sleep(0.05)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": name},
            )
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 1, stderr[-3000:]
        assert "the crawl is failed" in stderr
        assert "'finish_reason': 'database_failed'" in stderr
        assert list(tmp_path.glob("mxcensus-spool-*.jsonl"))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _probe_row(run_id: int, crawl_id: int, outcome: str, error: str | None) -> dict[str, Any]:
    from sqlalchemy import inspect as sa_inspect  # every column, NULL unless given

    from schema.models import Probe

    row: dict[str, Any] = {c.key: None for c in sa_inspect(Probe).columns if c.key != "id"}
    row.update(
        run_id=run_id,
        crawl_id=crawl_id,
        ip="192.0.2.1",
        port=25,
        sni="mx.merge.test",
        started_at=datetime.now(UTC),
        attempt_count=1,
        wire_outcome=outcome,
        error=error,
        quit_sent=True,
        timings={},
        transcript=[],
        attempts=[],
    )
    return row


def _domain_row(run_id: int, crawl_id: int, status: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "domain": "merge.test",
        "crawl_id": crawl_id,
        "label": None,
        "weight": None,
        "line": 1,
        "status": status,
        "null_mx": False,
        "implicit_mx": False,
        "mx_count": 0,
        "mx_rrset": [],
        "dns_detail": None,
    }


def _target_row(run_id: int, sni: str, category: str, flags: str | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "mx_host": "mx.merge.test",
        "ip": "192.0.2.1",
        "port": 25,
        "sni": sni,
        "category": category,
        "reasons": "hostname_mismatch" if category == "opportunistic" else None,
        "error": None,
        "error_stage": None,
        "flags": flags,
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(
    ("table", "first", "second", "stays"),
    [
        ("probes", ("error", "connection_timeout"), ("tls", None), "second"),
        ("probes", ("tls", None), ("error", "connection_timeout"), "first"),
        ("probes", ("none", None), ("failure", "starttls_rejected"), "first"),
        ("domains", "dns_timeout", "ok", "second"),
        ("domains", "ok", "servfail", "first"),
        ("domains", "nxdomain", "ok", "first"),
        (
            "targets",
            ("mx.other.test", "opportunistic", None),
            ("mx.merge.test", "strict", None),
            "second",
        ),
        (
            "targets",
            ("mx.merge.test", "strict", None),
            ("mx.other.test", "opportunistic", None),
            "first",
        ),
        (
            "targets",
            ("mx.other.test", "opportunistic", None),
            ("mx.other.test", "opportunistic", "sni_probes_exhausted"),
            "second",
        ),
    ],
)
def test_when_two_crawls_write_one_fact_the_merge_rule_decides(
    request, tmp_path, backend, table, first, second, stays
):
    """Crawl 1 commits a fact, crawl 2 the same fact judged otherwise: an answered
    probe beats a lesser one (a tie keeps the first), an answer beats a failed
    lookup, a verdict by the target's own SNI (or flagged past the cap) wins."""
    from tests.conftest import database_url

    url = database_url(backend, request, tmp_path)
    engine = engine_for(url)
    rid, (c1, c2) = _run_with_crawls(engine, f"merge-{table}-{first}-{second}", 2)
    rows = {
        "probes": lambda crawl_id, v: _probe_row(rid, crawl_id, *v),
        "domains": lambda crawl_id, v: _domain_row(rid, crawl_id, v),
        "targets": lambda crawl_id, v: _target_row(rid, *v),
    }[table]
    for crawl_id, value in ((c1, first), (c2, second)):
        _writer(url, rid, crawl_id)._write({table: [rows(crawl_id, value)]})
    column = {"probes": "wire_outcome", "domains": "status", "targets": "sni"}[table]
    with engine.connect() as conn:
        stored = (
            conn.execute(text(f"SELECT {column} FROM {table} WHERE run_id = :r"), {"r": rid})
            .scalars()
            .all()
        )
    want = first if stays == "first" else second
    assert stored == [want[0] if isinstance(want, tuple) else want]
