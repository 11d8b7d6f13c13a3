"""Real crawls of the whole test network (SQLite and PostgreSQL): the stored
facts must be what the network's hand-written declarations imply."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

from demo.check import compare, scanned_domains
from demo.scan import EHLO_NAME
from pipelines.certinfo import sha256_hex
from pipelines.verify import name_matches
from tests.conftest import json_value, run_scan

CLOSE_SLACK = 0.05  # seconds: less than this is not two conversations at once
FORBIDDEN_VERBS = {"MAIL", "RCPT", "DATA", "VRFY", "EXPN", "RSET", "AUTH", "BDAT"}


def test_the_crawl_is_recorded(scan, spec):
    crawl = scan.crawl_record()
    assert crawl["status"] == "finished" and crawl["finish_reason"] == "finished"
    listed = crawl["counts"]["list"]
    assert listed["invalid"] == spec.expected_invalid
    assert listed["duplicates"] == spec.expected_duplicates
    assert listed["entries"] == len(spec.expected_domains())
    assert crawl["label"] == "testnet"
    assert crawl["versions"]["openssl"].startswith("OpenSSL")
    assert crawl["versions"]["scrapy"] == "2.19.0"
    assert crawl["versions"]["trust_store"]["sha256"]
    assert crawl["settings"]["SMTP_EHLO_NAME"] == EHLO_NAME
    assert len(crawl["source_sha256"]) == 64
    # What started the crawl stayed out of its collections (crawler/heap.py).
    assert crawl["counts"]["gc/frozen"] > 100_000
    assert crawl["counts"]["gc/collections/0"] > crawl["counts"]["gc/collections/2"]


def test_every_domain_has_its_declared_status(scan, spec):
    assert scanned_domains(scan.engine, scan.run_id) == {
        d: str(s) for d, s in spec.expected_domains().items()
    }


def test_every_target_shows_what_its_declaration_implies(scan, spec):
    assert compare(spec, scan.engine, scan.run_id) == []


def test_mx_hosts_keep_their_own_dns_outcome(scan, spec):
    rows = scan.rows("SELECT name, dns_outcome, canonical_name FROM mx_hosts WHERE run_id = :run")
    outcomes = {
        r["name"]: r["dns_outcome"]
        for r in rows
        if r["dns_outcome"] != "no_address" or r["name"] in spec.expected_hosts()
    }
    for name, outcome in spec.expected_hosts().items():
        assert outcomes.get(name) == str(outcome), name
    aliases = {r["name"]: r["canonical_name"] for r in rows if r["canonical_name"]}
    declared = {h.name: h.cname for h in spec.names() if h.cname and h.name in outcomes}
    assert declared and all(aliases.get(name) == target for name, target in declared.items())


def test_implicit_and_null_mx_are_flagged(scan, spec):
    rows = {r["domain"]: r for r in scan.rows("SELECT * FROM domains WHERE run_id = :run")}
    for domain, status in spec.expected_domains().items():
        hosts = spec.mx_hosts(domain)
        implicit = status == "ok" and any(is_implicit for _, is_implicit in hosts)
        assert rows[domain]["implicit_mx"] == implicit, domain
        assert rows[domain]["null_mx"] == (status == "null_mx"), domain
    assert any(r["implicit_mx"] for r in rows.values())


def test_each_ip_is_probed_once_per_sni_name_that_needs_it(scan):
    """One probe per IP, with the first MX name as SNI; another only for an MX name
    the first certificate does not name (providers pick certificates by SNI)."""
    probes = scan.rows("SELECT * FROM probes WHERE run_id = :run ORDER BY id")
    by_ip = defaultdict(list)
    for probe in probes:
        by_ip[probe["ip"]].append(probe)
    probed = scan.rows(
        "SELECT DISTINCT ip FROM mx_addresses WHERE run_id = :run AND skip_reason IS NULL"
    )
    assert {r["ip"] for r in probed} == set(by_ip)
    reprobed = 0
    for first, *others in by_ip.values():
        names = json_value(first["leaf_names"]) or []
        for other in others:
            reprobed += 1
            assert other["sni"] != first["sni"]
            assert not name_matches(other["sni"], names), (first["ip"], other["sni"], names)
        assert len({p["sni"] for p in [first, *others]}) == 1 + len(others)
        assert 1 + len(others) <= 4  # SMTP_SNI_PROBES
    assert reprobed >= 1


def test_a_target_is_judged_by_the_probe_with_its_own_name_when_there_is_one(scan):
    rows = scan.rows(
        "SELECT mx_host, ip, sni FROM target_results WHERE run_id = :run AND category IS NOT NULL"
    )
    snis = defaultdict(set)
    for probe in scan.rows("SELECT ip, sni FROM probes WHERE run_id = :run"):
        snis[probe["ip"]].add(probe["sni"])
    for row in rows:
        assert row["sni"] in snis[row["ip"]]
        if row["mx_host"] in snis[row["ip"]]:  # (unless that probe erred: none here did)
            assert row["sni"] == row["mx_host"], row


def test_wire_facts_match_the_servers_configuration(scan, spec):
    """Banner text, EHLO keywords and TLS versions as each polite server is configured."""
    probes = {p["ip"]: p for p in scan.rows("SELECT * FROM probes WHERE run_id = :run")}
    checked = 0
    for server in spec.servers.values():
        probe, esmtp = probes.get(server.ip), server.esmtp
        if probe is None or esmtp is None or probe["banner_code"] != 220 or server.decoy:
            continue
        checked += 1
        assert probe["banner_text"] == "\n".join(esmtp.banner), server.name
        if probe["ehlo_code"] == 250:
            assert probe["starttls_advertised"] == esmtp.starttls, server.name
            keywords = probe["extensions"].split()
            assert ("STARTTLS" in keywords) == esmtp.starttls, server.name
        if probe["tls_version"] and esmtp.tls and esmtp.tls.max_version:
            order = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
            assert order.index(probe["tls_version"]) <= order.index(esmtp.tls.max_version)
    assert checked >= 10


def test_tls_facts_agree_with_what_the_server_saw(scan):
    """The server's own log (version, cipher, SNI) must tell the same story."""
    probes = {(p["ip"], p["sni"]): p for p in scan.rows("SELECT * FROM probes WHERE run_id = :run")}
    sessions = [c for c in scan.connections if c["tls"]]
    assert len(sessions) >= 10
    for conn in sessions:
        probe = probes[conn["ip"], conn["sni"]]
        assert probe["tls_version"] == conn["tls_version"], conn["server"]
        assert probe["cipher"] == conn["cipher"], conn["server"]
        assert probe["sni"] == conn["sni"], conn["server"]
    no_fs = [p for p in probes.values() if p["cipher"] == "AES128-SHA"]
    # SQLite returns booleans from plain SQL as 0/1.
    assert no_fs and all(p["forward_secrecy"] in (False, 0) for p in no_fs)
    assert any(p["tls_version"] == "TLSv1" for p in probes.values())
    assert any(p["tls_version"] == "TLSv1.3" and p["forward_secrecy"] for p in probes.values())


def test_chains_are_stored_once_as_sent(scan):
    probes = scan.rows(
        "SELECT chain, cert_sha256 FROM probes WHERE run_id = :run AND chain IS NOT NULL"
    )
    certs = {r["sha256"]: r for r in scan.rows("SELECT sha256, der FROM certificates")}
    assert probes
    for probe in probes:
        chain = json_value(probe["chain"])
        assert chain[0] == probe["cert_sha256"]
        for fingerprint in chain:
            assert sha256_hex(bytes(certs[fingerprint]["der"])) == fingerprint
    uses = defaultdict(int)
    for probe in probes:
        uses[probe["cert_sha256"]] += 1
    assert max(uses.values()) > 1, "a certificate served on several IPs is stored once"


def test_the_scanner_is_polite(scan, spec):
    """From the servers' own logs: one connection per IP (plus one retry after a
    transient outcome), never two at once, the configured EHLO name, QUIT where
    the conversation allowed it, and never MAIL FROM or any other command."""
    expected = {t.ip: t for t in spec.expected_targets() if t.ip and not t.skip_reason}
    attempts = defaultdict(int)
    for probe in scan.rows("SELECT ip, attempt_count FROM probes WHERE run_id = :run"):
        attempts[probe["ip"]] += probe["attempt_count"]
    by_ip = defaultdict(list)
    for conn in scan.connections:
        by_ip[conn["ip"]].append(conn)
    assert set(by_ip) <= set(expected), "connections to addresses no target names"
    for ip, conns in by_ip.items():
        target = expected[ip]
        assert len(conns) <= attempts[ip], (ip, target.server, len(conns))
        spans = sorted((c["start"], c["end"]) for c in conns)
        # The server logs a close a moment after the client has moved on (CLOSE_SLACK).
        assert all(a_end - CLOSE_SLACK <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
        for conn in conns:
            verbs = [c.split(" ", 1)[0].upper() for c in conn["commands"]]
            assert not FORBIDDEN_VERBS & set(verbs), (ip, verbs)
            ehlos = [c for c in conn["commands"] if c.upper().startswith(("EHLO", "HELO"))]
            assert all(c.split(" ", 1)[1] == EHLO_NAME for c in ehlos), ehlos
            if target.category in ("none", "strict", "opportunistic") and not target.flags:
                assert verbs[-1] == "QUIT", (ip, target.server, verbs)


def test_only_transient_outcomes_are_retried(scan, spec):
    """docs/design.md: a connect timeout, a timeout or close before the EHLO reply, and a
    4xx greeting or EHLO are retried once (SMTP_RETRIES=1); nothing else is."""
    for probe in scan.rows("SELECT * FROM probes WHERE run_id = :run"):
        attempts = json_value(probe["attempts"])
        assert len(attempts) == probe["attempt_count"]
        first = attempts[0]
        transient = first["error"] == "connection_timeout" or (
            first["outcome"] == "error"
            and (
                first["error"] in ("timeout", "connection_closed")
                or any(
                    400 <= (code or 0) < 500
                    for code in (probe["banner_code"], probe["ehlo_code"], probe["helo_code"])
                )
            )
        )
        assert probe["attempt_count"] == (2 if transient else 1), (probe["ip"], first)
    retried = scan.rows(
        "SELECT COUNT(*) AS n FROM probes WHERE run_id = :run AND attempt_count > 1"
    )
    assert retried[0]["n"] >= 3


def test_small_caches_change_no_fact(scan, spec, net, tmp_path):
    """With room for one MX host's answer and one row per table, hosts are looked up
    again and shared rows written again: the stored run must be the same."""
    if scan.url.startswith("postgresql"):
        return  # one backend is enough: the caches sit before the database
    small = run_scan(
        net,
        spec,
        f"sqlite:///{tmp_path / 'small.sqlite'}",
        tmp_path,
        "label=testnet",
        DNS_CACHE_SIZE="1",
        DATABASE_DEDUP_CACHE="1",
    )
    assert compare(spec, small.engine, small.run_id) == []
    # Probes by IP: how many SNI re-probes an IP gets depends on which of its names
    # reached it first (one its certificate does not name, or another), not on caches.
    for table, counted in (
        ("mx_hosts", "*"),
        ("mx_addresses", "*"),
        ("certificates", "*"),
        ("targets", "*"),
        ("probes", "DISTINCT ip"),
    ):
        query = f"SELECT COUNT({counted}) AS n FROM {table}"
        if table != "certificates":
            query += " WHERE run_id = :run"
        assert small.rows(query)[0]["n"] == scan.rows(query)[0]["n"], table
