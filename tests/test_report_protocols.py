"""The report's protocol support section (issue 11), on a real `-a depth=protocols` crawl
of the test network, on SQLite and PostgreSQL: every number of its tables is what the
network's hand-written protocol matrices (`Spec.expected_protocols()`) and its targets'
declarations imply (tests/expected.py `Protocols`); the cipher suites are those the
servers logged for the pinned conversations. Text, CSV, JSON and the HTML chart; a run
without the depth shows none of it, only the one line saying how to get it."""

from __future__ import annotations

import csv
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from schema.db import engine_for
from schema.examples import run_query
from testnet.spec import Spec
from testnet.state import State
from tests.conftest import Scan, run_scan
from tests.expected import VERSIONS, Expected, Protocols
from tests.test_report import (
    Tables,
    browser_or_skip,
    number,
    parse_text,
    rendered_images,
    report,
    report_json,
)

TABLES = (
    "protocol_support",
    "protocol_hosts",
    "protocol_range",
    "protocol_ciphers",
    "protocol_forward_secrecy",
)
HOW = "crawl with -a depth=protocols"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own (the session's PostgreSQL database holds the other report
    tests' runs, and some of them read "the latest run")."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('protocols') / 'scan.sqlite'}"
        return
    server = request.getfixturevalue("pg_server_url")
    name = f"mxcensus_protocols_{secrets.token_hex(4)}"
    admin = engine_for(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield engine_for(server).url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def crawled(
    database: str, net: State, spec: Spec, tmp_path_factory: pytest.TempPathFactory
) -> Scan:
    directory = tmp_path_factory.mktemp("protocols-crawl")
    return run_scan(net, spec, database, directory, "label=testnet", "depth=protocols")


@pytest.fixture(scope="module")
def protocols(spec: Spec) -> Protocols:
    return Protocols(Expected(spec), spec.expected_protocols())


@pytest.fixture(scope="module")
def tables(crawled: Scan) -> dict[str, list[dict[str, Any]]]:
    return report_json(crawled.url, "--run", str(crawled.run_id))


def picked(crawled: Scan, protocols: Protocols) -> dict[str, dict[str, str]]:
    """{ip: {version: cipher}} for each version an IP accepts, from the servers' own log
    of the pinned conversation (the one whose ClientHello offered only that version)."""
    found: dict[str, dict[str, str]] = {}
    for ip, versions in protocols.matrix.items():
        for v, status in versions.items():
            if status != "supported":
                continue
            sessions = [
                c
                for c in sorted(crawled.connections, key=lambda c: c["start"])
                if c["ip"] == ip
                and c["tls"]
                and c["tls_version"] == v
                and c.get("offered", [v]) == [v]
            ]
            assert sessions, (ip, v)
            found.setdefault(ip, {})[v] = sessions[-1]["cipher"]
    return found


# -- every table from the declarations ----------------------------------------------------


def test_protocol_support_by_version(tables, protocols):
    """Per version, the MX hosts / IPs tried, accepting, refusing, failing; shares of
    those tried. SSLv3 (which this scanner's OpenSSL cannot offer) is untestable: no
    counts at all, never 0 %."""
    want = protocols.support()
    rows = {r["version"]: r for r in tables["protocol_support"]}
    assert list(rows) == VERSIONS
    for v, row in rows.items():
        tried = {unit: want[unit, v]["tried"] for unit in ("mx_host", "ip")}
        if not any(tried.values()):
            assert row["tested"] == "untestable" and want["ip", v]["untestable"], v
            assert {k: x for k, x in row.items() if k not in ("version", "tested")} == {
                k: None for k in row if k not in ("version", "tested")
            }
            continue
        assert row["tested"] == "tested", v
        for unit in ("mx_host", "ip"):
            w = want[unit, v]
            got = {k: row[f"{unit}_{k}"] for k in ("tried", "supported", "not_supported", "error")}
            assert got == {k: w[k] for k in got}, (unit, v)
            assert row[f"{unit}_share"] == pytest.approx(w["supported"] / w["tried"]), (unit, v)
    assert rows["SSLv3"]["tested"] == "untestable"  # today's OpenSSL: see the README
    # The test network holds servers at each of TLS 1.0 ... 1.3, each version accepted.
    assert all(rows[v]["ip_supported"] for v in VERSIONS[1:])


def test_the_query_file_gives_the_same_counts(crawled, protocols):
    want = protocols.support()
    rows = run_query(crawled.engine, "protocol_support", crawled.run_id)
    got = {
        (r["unit"], r["version"]): {
            k: r[k] for k in ("tried", "supported", "not_supported", "error", "untestable")
        }
        for r in rows
    }
    assert got == {k: {s: w[s] for s in got[k]} for k, w in want.items() if k in got}
    assert set(got) == {k for k, w in want.items() if w["tried"] or w["untestable"]}


def test_hosts_accepting_none_are_shown_apart(tables, protocols):
    want = protocols.hosts()
    rows = {r["measure"]: r for r in tables["protocol_hosts"]}
    for unit in ("mx_host", "ip"):
        assert {m: r[unit] for m, r in rows.items()} == want[unit], unit
        tried = want[unit]["tried"]
        assert rows["accept_none"][f"{unit}_share"] == pytest.approx(
            want[unit]["accept_none"] / tried
        )
        assert want[unit]["tried"] == want[unit]["starttls"]  # every STARTTLS unit tried
    assert want["mx_host"]["accept_none"]  # the network has servers that accept none


def test_highest_and_lowest_version(tables, protocols):
    want = protocols.range()
    rows = {r["version"]: r for r in tables["protocol_range"]}
    for unit in ("mx_host", "ip"):
        for bound in ("highest", "lowest"):
            counts = want[unit, bound]
            total = sum(counts.values())
            for v, row in rows.items():
                if v == "SSLv3":  # untestable: no count
                    assert row[f"{unit}_{bound}"] is None
                    continue
                assert row[f"{unit}_{bound}"] == counts[v], (unit, bound, v)
                assert row[f"{unit}_{bound}_share"] == pytest.approx(counts[v] / total)
    assert (
        sum(r["mx_host_highest"] or 0 for r in rows.values())
        == protocols.hosts()["mx_host"]["accept_any"]
    )


def test_ciphers_and_forward_secrecy_per_version(tables, crawled, protocols):
    chosen = picked(crawled, protocols)
    want = protocols.ciphers(chosen)
    got = {
        (r["version"], r["cipher"]): {"ips": r["ips"], "mx_hosts": r["mx_hosts"]}
        for r in tables["protocol_ciphers"]
    }
    assert got == want
    for r in tables["protocol_ciphers"]:
        accepting = sum(w["ips"] for (v, _), w in want.items() if v == r["version"])
        assert r["ips_share"] == pytest.approx(r["ips"] / accepting)
        assert r["forward_secrecy"] == (
            r["version"] == "TLSv1.3" or r["cipher"].startswith(("ECDHE-", "DHE-"))
        )
    fs = protocols.forward_secrecy(chosen)
    for row in tables["protocol_forward_secrecy"]:
        v = row["version"]
        for unit in ("mx_host", "ip"):
            if v == "SSLv3":
                assert row[f"{unit}_accept"] is None
                continue
            assert (row[f"{unit}_accept"], row[f"{unit}_fs"]) == fs[unit, v], (unit, v)
    # The no-forward-secrecy server (RSA key exchange only) shows at TLS 1.2.
    assert fs["ip", "TLSv1.2"][1] < fs["ip", "TLSv1.2"][0]


# -- the outputs ---------------------------------------------------------------------------


def test_text_shows_the_protocol_tables(crawled, tables):
    result = report(crawled.url, "--run", str(crawled.run_id))
    assert result.returncode == 0, result.stderr
    shown = parse_text(result.stdout)
    assert HOW not in result.stdout  # the depth ran: no advice to run it
    for name in TABLES:
        assert len(shown[name]) == len(tables[name]), name
        for cells, row in zip(shown[name], tables[name], strict=True):
            numeric = [
                v
                for k, v in row.items()
                if k != "measure" and isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            numbers = [c for c in cells if re.fullmatch(r"-?[\d.]+%?", c)]
            assert len(numbers) == len(numeric), (name, cells, row)
            for got, want in zip(numbers, numeric, strict=True):
                assert number(got) == pytest.approx(want, abs=0.00006), (name, cells, row)
                assert not got.endswith("%") or re.fullmatch(r"\d+\.\d\d%", got), got
    sslv3 = next(r for r in shown["protocol_support"] if r[0] == "SSLv3")
    assert sslv3[1] == "untestable" and set(sslv3[2:]) == {"-"}


def test_csv_holds_the_protocol_tables(crawled, tables, tmp_path):
    result = report(
        crawled.url, "--run", str(crawled.run_id), "--format", "csv", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    for name in TABLES:
        with (tmp_path / f"{name}.csv").open(newline="", encoding="utf-8") as f:
            got = list(csv.DictReader(f))
        assert [list(r) for r in got] == [list(r) for r in tables[name]], name
        for line, row in zip(got, tables[name], strict=True):
            for key, value in row.items():
                if value is None:
                    assert line[key] == "", (name, key)
                elif isinstance(value, bool):
                    assert line[key] == str(value), (name, key)
                elif isinstance(value, (int, float)):
                    assert float(line[key]) == pytest.approx(value), (name, key)
                else:
                    assert line[key] == value, (name, key)


def test_html_section_and_chart(crawled, tables, tmp_path):
    result = report(crawled.url, "--run", str(crawled.run_id), "--html", str(tmp_path))
    assert result.returncode == 0, result.stderr
    page = tmp_path / "index.html"
    html = page.read_text(encoding="utf-8")
    parser = Tables()
    parser.feed(html)
    assert "protocol_support.png" in parser.images
    assert (tmp_path / "protocol_support.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '<section id="protocol_support">' in html and 'href="#protocol_support"' in html
    for name in TABLES:
        assert len(parser.tables[name]) == len(tables[name]) + 1, name  # header, then rows
    support = {r[0]: r for r in parser.tables["protocol_support"][1:]}
    row = next(r for r in tables["protocol_support"] if r["version"] == "TLSv1.2")
    assert support["TLSv1.2"][2:5] == [
        str(row["mx_host_tried"]),
        str(row["mx_host_supported"]),
        f"{100 * row['mx_host_share']:.2f}%",
    ]
    browser_or_skip()
    assert rendered_images(page) == {"images": len(parser.images), "broken": []}


def test_a_run_without_the_depth_says_how_to_get_it(scan, tmp_path):
    """The other report tests' crawl ran without -a depth=protocols: no protocol table,
    no chart, no section; one line, under the negotiated versions, says how."""
    data = report_json(scan.url, "--run", str(scan.run_id))
    assert not set(TABLES) & set(data)
    result = report(scan.url, "--run", str(scan.run_id))
    assert result.stdout.count(HOW) == 1
    assert report(scan.url, "--run", str(scan.run_id), "--html", str(tmp_path)).returncode == 0
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "protocol_support" not in html and not (tmp_path / "protocol_support.png").exists()


def test_a_run_with_the_depth_and_no_starttls_server_reports_zeros(tmp_path):
    """The depth ran but no IP advertised STARTTLS (or the crawl stopped at once): the
    section is there with nothing tried, every version 'not tried' (never 0 % accepted),
    and no chart."""
    from datetime import UTC, datetime

    from schema.migrate import upgrade
    from schema.models import Crawl, Run

    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    engine = engine_for(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(Run.__table__.insert(), [{"name": "empty", "created_at": now}])
        conn.execute(
            Crawl.__table__.insert(),
            [
                {
                    "run_id": 1,
                    "source": "empty.txt",
                    "started_at": now,
                    "status": "finished",
                    "versions": {},
                    "settings": {},
                    "depth": "protocols",
                }
            ],
        )
    data = report_json(url, "--run", "1")
    assert {r["version"]: r["tested"] for r in data["protocol_support"]} == {
        v: "not tried" for v in VERSIONS
    }
    assert all(r["mx_host_share"] is None for r in data["protocol_support"])
    assert {r["measure"]: (r["mx_host"], r["ip"]) for r in data["protocol_hosts"]} == {
        m: (0, 0)
        for m in ("starttls", "tried", "accept_any", "accept_none", "refuse_all", "no_answer")
    }
    assert data["protocol_ciphers"] == []
    html = tmp_path / "html"
    assert report(url, "--run", "1", "--html", str(html)).returncode == 0
    page = (html / "index.html").read_text(encoding="utf-8")
    assert '<section id="protocol_support">' in page
    assert not (html / "protocol_support.png").exists()


def test_a_version_some_scanners_could_not_offer_is_partly_untestable():
    """Shards of one run on machines with different OpenSSL builds: where one could offer
    SSLv3 and another could not, the share is of the units tried, and the version says
    it was only partly testable; where no unit could be offered it, no count at all."""
    from reports.protocols import support_table

    def counts(unit, version, tried, supported, untestable):
        return {
            "unit": unit,
            "version": version,
            "tried": tried,
            "supported": supported,
            "not_supported": tried - supported,
            "error": 0,
            "untestable": untestable,
        }

    result = [
        counts("mx_host", "SSLv3", 2, 1, 3),
        counts("ip", "SSLv3", 2, 1, 4),
        counts("mx_host", "TLSv1.2", 5, 5, 0),
        counts("ip", "TLSv1.2", 6, 6, 0),
        counts("mx_host", "TLSv1.3", 0, 0, 5),
        counts("ip", "TLSv1.3", 0, 0, 6),
    ]
    rows = {r["version"]: r for r in support_table(result).rows}
    assert rows["SSLv3"]["tested"] == "partly untestable"
    assert (rows["SSLv3"]["ip_tried"], rows["SSLv3"]["ip_share"]) == (2, 0.5)
    assert rows["TLSv1.2"]["tested"] == "tested" and rows["TLSv1.2"]["mx_host_share"] == 1.0
    assert rows["TLSv1.3"]["tested"] == "untestable"
    assert rows["TLSv1.3"]["mx_host_supported"] is None and rows["TLSv1.3"]["ip_share"] is None
    assert rows["TLSv1"]["tested"] == "not tried"  # no row at all
