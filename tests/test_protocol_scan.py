"""`-a depth=protocols`, crawled for real over the whole test network (SQLite and
PostgreSQL): each STARTTLS server's stored matrix of TLS versions is what the network
declares by hand; the conversations are polite and happen once per IP in a run, however
many crawls share it; a version this OpenSSL cannot offer is never `not_supported`."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import defaultdict
from itertools import pairwise

import pytest
from sqlalchemy import text

from crawler.smtp.tls import pinned_context
from demo.scan import EHLO_NAME, ROOT, crawl, crawl_command, scanner_settings
from schema.db import engine_for
from schema.vocab import ProtocolStatus, TlsVersion
from tests.conftest import Scan, database_url, json_value, run_scan
from tests.test_crawl import CLOSE_SLACK, FORBIDDEN_VERBS
from tests.test_run_coordination import FAST_RUN, _count

OFFERABLE = [v for v in TlsVersion if pinned_context(v) is not None]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def protocol_scan(request, net, spec, tmp_path_factory) -> Scan:
    directory = tmp_path_factory.mktemp(f"protocols-{request.param}")
    url = database_url(request.param, request, directory)
    return run_scan(net, spec, url, directory, "label=testnet", "depth=protocols")


def matrix(scan: Scan, run_id: int | None = None) -> dict[str, dict[str, str]]:
    rows = scan.rows(
        "SELECT ip, version, status FROM ip_protocols WHERE run_id = :run",
        run=run_id or scan.run_id,
    )
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        found[row["ip"]][row["version"]] = row["status"]
    return dict(found)


def pinned(connections: list[dict]) -> dict[str, list[dict]]:
    """The servers' log of conversations offering one TLS version only, by IP."""
    found = defaultdict(list)
    for conn in connections:
        if len(conn.get("offered") or ()) == 1:
            found[conn["ip"]].append(conn)
    return found


def test_every_starttls_server_shows_its_declared_matrix(protocol_scan, spec):
    assert matrix(protocol_scan) == spec.expected_protocols()


def test_only_ips_whose_probe_saw_starttls_are_tried(protocol_scan):
    advertised = protocol_scan.rows(
        "SELECT DISTINCT ip FROM probes WHERE run_id = :run AND wire_outcome IN ('tls', 'failure')"
    )
    assert set(matrix(protocol_scan)) == {r["ip"] for r in advertised}


def test_a_version_this_openssl_cannot_offer_is_untestable_and_never_tried(protocol_scan):
    assert TlsVersion.SSLV3 not in OFFERABLE  # cryptography's OpenSSL has no SSLv3
    rows = protocol_scan.rows("SELECT * FROM protocol_probes WHERE run_id = :run")
    for row in rows:
        offerable = TlsVersion(row["version"]) in OFFERABLE
        assert (row["status"] == ProtocolStatus.UNTESTABLE) == (not offerable), row
        if not offerable:
            assert row["started_at"] is None and row["transcript"] is None
    offered = {v for conn in protocol_scan.connections for v in conn.get("offered") or ()}
    assert offered and not offered - {str(v) for v in OFFERABLE}


def test_each_status_is_explained_by_its_stored_facts(protocol_scan):
    """supported: the session, its version as pinned; not_supported: a handshake that
    failed after the 220 to STARTTLS, with OpenSSL's words; error: anything earlier,
    or a timeout."""
    rows = protocol_scan.rows("SELECT * FROM protocol_probes WHERE run_id = :run")
    seen = set()
    for row in rows:
        status = row["status"]
        seen.add(status)
        if status == ProtocolStatus.SUPPORTED:
            assert row["tls_version"] == row["version"] and row["cipher"], row
            assert row["starttls_code"] == 220 and row["error"] is None
            fs = row["version"] == "TLSv1.3" or row["cipher"].startswith(("ECDHE", "DHE"))
            assert bool(row["forward_secrecy"]) == fs, row
        elif status == ProtocolStatus.NOT_SUPPORTED:
            assert row["starttls_code"] == 220 and row["tls_version"] is None
            assert (row["error"], row["error_stage"]) == ("tls_handshake_failed", "tls")
            assert row["error_detail"], row
        elif status == ProtocolStatus.ERROR:
            assert row["tls_version"] is None
            assert row["error_stage"] != "tls" or row["error"] == "timeout", row
    assert seen == set(ProtocolStatus)


def test_the_static_rsa_server_has_no_forward_secrecy(protocol_scan, spec):
    nofs = spec.servers["nofs"]
    rows = protocol_scan.rows(
        "SELECT * FROM ip_protocols WHERE run_id = :run AND ip = :ip AND status = 'supported'",
        ip=nofs.ip,
    )
    assert [(r["version"], r["cipher"]) for r in rows] == [("TLSv1.2", nofs.esmtp.tls.ciphers)]
    assert rows[0]["forward_secrecy"] in (False, 0)


def test_the_conversations_are_ehlo_starttls_handshake_quit(protocol_scan):
    for row in protocol_scan.rows(
        "SELECT transcript, quit_sent FROM protocol_probes WHERE run_id = :run"
        " AND status = 'supported'"
    ):
        sent = [line for direction, line in json_value(row["transcript"]) if direction == ">"]
        assert sent == [f"EHLO {EHLO_NAME}", "STARTTLS", "QUIT"], sent
        assert row["quit_sent"]


def test_the_protocol_conversations_are_polite(protocol_scan, spec):
    """From the servers' own log: at most one conversation pinned to each version per
    IP, none to IPs without STARTTLS, never two connections to one IP at once, QUIT
    after every completed handshake, never MAIL FROM."""
    tried = matrix(protocol_scan)
    by_ip = pinned(protocol_scan.connections)
    # Polite servers log what each ClientHello offered (hostile scripts do not).
    handshakes = {
        s.ip
        for s in spec.servers.values()
        if s.esmtp and s.esmtp.starttls and s.esmtp.on_starttls != "reject"
    }
    assert set(by_ip) == handshakes & set(tried) and len(by_ip) >= 30
    for ip, conns in by_ip.items():
        versions = [c["offered"][0] for c in conns]
        assert sorted(versions) == sorted(str(v) for v in OFFERABLE), (ip, versions)
        for conn in conns:
            verbs = [c.split(" ", 1)[0].upper() for c in conn["commands"]]
            assert not FORBIDDEN_VERBS & set(verbs), (ip, verbs)
            if conn["tls"]:
                assert verbs[-1] == "QUIT", (ip, verbs)
    everything = defaultdict(list)
    for conn in protocol_scan.connections:
        everything[conn["ip"]].append((conn["start"], conn["end"]))
    for spans in everything.values():
        spans.sort()
        assert all(a_end - CLOSE_SLACK <= b_start for (_, a_end), (b_start, _) in pairwise(spans))


def test_the_crawl_records_its_depth_and_counts(protocol_scan):
    crawl_record = protocol_scan.crawl_record()
    assert crawl_record["depth"] == "protocols"
    tried = protocol_scan.rows(
        "SELECT COUNT(*) AS n FROM protocol_probes WHERE run_id = :run AND started_at IS NOT NULL"
    )[0]["n"]
    assert crawl_record["counts"]["protocols/connections"] == tried
    assert crawl_record["counts"]["protocols/scanned"] == len(matrix(protocol_scan))


def test_a_crawl_without_depth_tries_no_version(scan):
    assert scan.rows("SELECT COUNT(*) AS n FROM protocol_probes WHERE run_id = :run")[0]["n"] == 0
    assert scan.crawl_record()["depth"] == ""


def test_shards_at_once_try_each_ip_once_in_the_run(net, spec, pg_database, tmp_path):
    """Three shards of one run with depth=protocols started together: each IP's
    versions are tried once in the run, by whichever crawl holds its claim, and the
    run's matrix is the declared one."""
    domains = tmp_path / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    settings = {**scanner_settings(net), "DATABASE_URL": pg_database, **FAST_RUN}
    before = len(net.connections())
    shards = [
        subprocess.Popen(
            crawl_command(domains, settings, "run=p-sharded", f"shard={k}/3", "depth=protocols"),
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
    for ip, conns in pinned(connections).items():
        versions = [c["offered"][0] for c in conns]
        assert len(versions) == len(set(versions)), (ip, versions)
    engine = engine_for(pg_database)
    scan = Scan(pg_database, engine, 0, "", "", connections)
    (run,) = scan.rows("SELECT id FROM runs WHERE name = 'p-sharded'")
    assert matrix(scan, run["id"]) == spec.expected_protocols()


def test_a_killed_crawl_resumed_does_not_try_committed_versions_again(net, spec, tmp_path):
    """SIGKILL while the versions are being tried, then the same command again: no IP
    whose conversations were committed is tried again, the run's matrix is the declared
    one, and a crawl of another depth may not join the run."""
    domains = tmp_path / "domains.txt"
    domains.write_text("\n".join(spec.domain_lines) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    settings = {
        **scanner_settings(net),
        **FAST_RUN,
        "DATABASE_URL": url,
        "DATABASE_BATCH_SIZE": "7",
        "DATABASE_FLUSH_INTERVAL": "0.2",
        "CONCURRENT_REQUESTS": "8",
    }
    engine = engine_for(url)
    process = subprocess.Popen(
        crawl_command(domains, settings, "run=killed", "depth=protocols"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _count(engine, "SELECT COUNT(DISTINCT ip) FROM protocol_probes") >= 10:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the crawl ended before the kill"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)
    with engine.connect() as conn:
        done = set(conn.execute(text("SELECT DISTINCT ip FROM protocol_probes")).scalars())
    before = len(net.connections())

    resumed = crawl(domains, settings, "run=killed", "depth=protocols")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    time.sleep(0.5)
    again = [ip for ip in pinned(net.connections()[before:]) if ip in done]
    assert again == [], "versions tried again after they were committed"
    scan = Scan(url, engine, 0, "", "", [])
    (run,) = scan.rows("SELECT id FROM runs WHERE name = 'killed'")
    assert matrix(scan, run["id"]) == spec.expected_protocols()

    plain = crawl(domains, settings, "run=killed", timeout=60)
    assert plain.returncode == 2, plain.stderr[-2000:]
    assert "its depth (-a depth=) is '', the run's is 'protocols'" in plain.stderr


def test_an_unknown_depth_is_one_line_and_exit_2(net, spec, tmp_path):
    domains = tmp_path / "domains.txt"
    domains.write_text("strict.test\n", encoding="utf-8")
    settings = {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}"}
    result = crawl(domains, settings, "depth=everything", timeout=60)
    assert result.returncode == 2
    assert "unknown depth 'everything'; known: protocols" in result.stderr.splitlines()[-1]
