"""The public SQL views and the example queries, on SQLite and PostgreSQL:
every number equals what the test network's declarations imply (tests/expected.py)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from schema.examples import names, run_query
from tests.expected import ANSWERED, Expected

BOOLEAN = {"starttls_any", "answered", "implicit_mx", "all_strict", "implicit", "forward_secrecy"}


def plain(row: dict) -> dict:
    """SQLite gives booleans as 0/1 and PostgreSQL as bools: compare them as bools."""
    return {k: (bool(v) if k in BOOLEAN and v is not None else v) for k, v in row.items()}


@pytest.fixture(scope="module")
def expected(spec) -> Expected:
    return Expected(spec)


def view(scan, name: str, key: str, columns) -> dict:
    rows = scan.rows(f"SELECT * FROM {name} WHERE run_id = :run")
    return {r[key]: {c: plain(dict(r))[c] for c in columns} for r in rows}


def test_mx_results(scan, expected):
    want = expected.mx_results()
    columns = next(iter(want.values())).keys()
    assert view(scan, "mx_results", "mx_host", columns) == want


def test_ip_results(scan, expected):
    want = expected.ip_results()
    columns = next(iter(want.values())).keys()
    assert view(scan, "ip_results", "ip", columns) == want


def test_domain_results(scan, expected):
    want = expected.domain_results()
    columns = next(iter(want.values())).keys()
    assert view(scan, "domain_results", "domain", columns) == want
    labels = {r["label"] for r in scan.rows("SELECT label FROM domain_results WHERE run_id = :run")}
    assert labels == {"testnet"}


def test_domain_mx_links_domains_to_mx_hosts(scan, expected, spec):
    rows = scan.rows(
        "SELECT domain, mx_host, preference, implicit FROM domain_mx WHERE run_id = :run"
    )
    got = {(r["domain"], r["mx_host"], r["preference"], bool(r["implicit"])) for r in rows}
    want = {
        (d, h, p, implicit)
        for d, s in spec.expected_domains().items()
        if s in ("ok", "mx_without_address")
        for h, p, implicit in expected.domain_hosts(d)
    }
    assert got == want


def test_the_example_queries_all_run(scan):
    for name in names():
        run_query(scan.engine, name, scan.run_id)


def test_italian_table(scan, expected, spec):
    mx = expected.mx_results()
    probed = {h: r for h, r in mx.items() if r["answered"] is not None}
    covered = {
        d
        for d in spec.domains
        for h, _, _ in expected.domain_hosts(d)
        if mx.get(h, {}).get("starttls_any")
    }
    (row,) = run_query(scan.engine, "italian_table", scan.run_id)
    assert row == {
        "domains": len(spec.domains),
        "unique_mx": len(probed),
        "mx_with_starttls": sum(1 for r in probed.values() if r["starttls_any"]),
        "domains_covered": len(covered),
        "connection_errors": sum(1 for r in probed.values() if not r["answered"]),
        "no_starttls": sum(1 for r in probed.values() if r["answered"] and not r["starttls_any"]),
        "not_probed": len(mx) - len(probed),
    }
    assert (
        row["unique_mx"] == row["mx_with_starttls"] + row["connection_errors"] + row["no_starttls"]
    )


def test_figure1_categories_by_unit(scan, expected):
    want = Counter()
    for unit, rows, column in (
        ("domain", expected.domain_results(), "primary_category"),
        ("mx_host", expected.mx_results(), "category"),
        ("ip", expected.ip_results(), "category"),
    ):
        for row in rows.values():
            if row[column] in ANSWERED:
                want[unit, row[column]] += 1
    rows = run_query(scan.engine, "figure1_categories", scan.run_id)
    assert {(r["unit"], r["category"]): r["n"] for r in rows} == dict(want)
    for unit in ("domain", "mx_host", "ip"):
        assert sum(r["share"] for r in rows if r["unit"] == unit) == pytest.approx(1.0)


def test_figure2_failure_reasons(scan, expected):
    by_mx, by_ip = defaultdict(list), defaultdict(list)
    for t in expected.targets:
        if t.category == "opportunistic":
            by_mx[t.mx_host].append(",".join(t.reasons))
            by_ip[t.ip].append(",".join(t.reasons))
    mx, ips = expected.mx_results(), expected.ip_results()
    want = Counter()
    for host, reasons in by_mx.items():
        if mx[host]["category"] == "opportunistic":
            want["mx_host", min(reasons)] += 1
    for ip, reasons in by_ip.items():
        if ips[ip]["category"] == "opportunistic":
            want["ip", min(reasons)] += 1
    rows = run_query(scan.engine, "figure2_reasons", scan.run_id)
    assert {(r["unit"], r["reasons"]): r["n"] for r in rows} == dict(want)
    assert ("mx_host", "expired,hostname_mismatch") in want  # combined reasons occur


def test_connection_errors(scan, expected):
    want = Counter(
        (str(t.error), str(t.error_stage)) for t in expected.targets if t.category == "error"
    )
    rows = run_query(scan.engine, "connection_errors", scan.run_id)
    assert {(r["error"], r["error_stage"]): r["targets"] for r in rows} == dict(want)


def test_verification_results(scan, expected):
    want = Counter(
        ",".join(t.reasons) or "ok"
        for t in expected.targets
        if t.category in ("strict", "opportunistic")
    )
    rows = run_query(scan.engine, "verification_results", scan.run_id)
    assert {r["result"]: r["targets"] for r in rows} == dict(want)


def test_tls_tables_agree_with_the_servers_own_log(scan, spec):
    """Versions, ciphers and forward secrecy per IP, against what each server logged
    for the IP's first TLS session (an independent witness)."""
    first_session = {}
    for conn in sorted(scan.connections, key=lambda c: c["start"]):
        if conn["tls"]:
            first_session.setdefault(conn["ip"], conn)
    first_probe_sni = {
        r["ip"]: r["sni"]
        for r in scan.rows(
            "SELECT ip, sni FROM probes p WHERE run_id = :run AND id = "
            "(SELECT MIN(id) FROM probes q WHERE q.run_id = p.run_id AND q.ip = p.ip)"
        )
    }
    sessions = {ip: c for ip, c in first_session.items() if c["sni"] == first_probe_sni[ip]}
    versions = Counter(c["tls_version"] for c in sessions.values())
    rows = run_query(scan.engine, "protocol_versions", scan.run_id)
    assert {r["tls_version"]: r["ips"] for r in rows} == dict(versions)
    ciphers = Counter(c["cipher"] for c in sessions.values())
    rows = run_query(scan.engine, "cipher_suites", scan.run_id)
    assert {r["cipher"]: r["n"] for r in rows if r["unit"] == "ip"} == dict(ciphers)
    fs = sum(
        1
        for c in sessions.values()
        if c["tls_version"] == "TLSv1.3" or c["cipher"].startswith(("ECDHE-", "DHE-"))
    )
    (row,) = run_query(scan.engine, "forward_secrecy", scan.run_id)
    assert (row["ips_with_tls"], row["with_forward_secrecy"]) == (len(sessions), fs)
    assert 0 < fs < len(sessions)


def test_key_sizes(scan, spec):
    """Leaf keys as the test network's certificates were made, for the chain each
    target's probe was served (chosen by its SNI)."""
    kinds = {
        "rsa1024": ("RSA", 1024),
        "rsa2048": ("RSA", 2048),
        "ec256": ("EC", 256),
        "ec384": ("EC", 384),
    }
    hosts, ips = defaultdict(set), defaultdict(set)
    for row in scan.rows(
        "SELECT mx_host, ip, sni FROM target_results WHERE run_id = :run"
        " AND tls_version IS NOT NULL"
    ):
        tls = spec.server_at(row["ip"]).esmtp.tls
        leaf = spec.certs[tls.sni.get(row["sni"], tls.chain)[0]]
        hosts[kinds[leaf.key]].add(row["mx_host"])
        ips[kinds[leaf.key]].add(row["ip"])
    rows = run_query(scan.engine, "key_sizes", scan.run_id)
    assert {(r["key_type"], r["key_bits"]): (r["mx_hosts"], r["ips"]) for r in rows} == {
        k: (len(hosts[k]), len(ips[k])) for k in hosts
    }
    assert ("RSA", 1024) in hosts
