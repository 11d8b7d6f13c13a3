"""`scrapy report`, run for real as a subprocess against crawls of the test network, on
SQLite and PostgreSQL: every number of every table is what the network's hand-written
declarations imply (tests/expected.py), in the text, CSV and JSON outputs; `--label`,
`--compare` against a second run that differs in declared ways, the error paths, and
the HTML page loaded in a real headless browser."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import certifi
import pytest
from sqlalchemy.engine import make_url

from demo.scan import ROOT, crawl, scanner_settings
from testnet.spec import Spec
from tests.conftest import latest_run
from tests.expected import ANSWERED, Expected

CATEGORIES = ANSWERED
# The second run's list leaves these out: slow servers (timeouts make a crawl long) and a
# few others, each the only domain reaching its MX hosts and IPs, so every unit left
# keeps the same members and the two runs differ only in declared ways.
LEFT_OUT = {
    "blackhole.test", "tarpit.test", "drip.test", "hangup.test", "greeting-421.test",
    "not-smtp.test", "huge-line.test", "huge-reply.test", "ehlo-421.test",
    "ehlo-helo-550.test", "ehlo-silent.test", "ehlo-close.test", "helo-silent.test",
    "helo-close.test", "ehlo-garbage.test", "starttls-silent.test", "tls-silent.test",
    "slow-greeting.test", "slower-greeting.test", "dns-timeout.test", "plain.test",
    "self-signed.test", "tls13.test",
}  # fmt: skip
COUNTRIES = ("it", "de", "fr")


# -- what the declarations imply ------------------------------------------------------------


@dataclasses.dataclass
class Untrusted(Expected):
    """The network scanned without its test CA in the trust store: every strict target is
    opportunistic (untrusted_ca), everything else as declared."""

    def category(self, t):  # type: ignore[no-untyped-def]
        category = super().category(t)
        return "opportunistic" if category == "strict" else category


# The per-label counts of the comparison across labels (the Italian table's, per label).
LABEL_COUNTS = (
    "domains",
    "domains_covered",
    "unique_mx",
    "mx_with_starttls",
    "connection_errors",
    "no_starttls",
)


def categories(rows: Iterable[dict[str, Any]], column: str) -> dict[str, int]:
    counts = Counter(r[column] for r in rows)
    return {c: counts[c] for c in CATEGORIES}


def italian(ex: Expected) -> dict[str, int]:
    mx = ex.mx_results()
    probed = {h: r for h, r in mx.items() if r["answered"] is not None}
    covered = {
        d for d in ex.spec.domains for h, _, _ in ex.domain_hosts(d) if mx[h]["starttls_any"]
    }
    return {
        "domains": len(ex.spec.domains),
        "unique_mx": len(probed),
        "mx_with_starttls": sum(1 for r in probed.values() if r["starttls_any"]),
        "domains_covered": len(covered),
        "connection_errors": sum(1 for r in probed.values() if not r["answered"]),
        "no_starttls": sum(1 for r in probed.values() if r["answered"] and not r["starttls_any"]),
        "not_probed": len(mx) - len(probed),
    }


def figure1(ex: Expected, weights: dict[str, float] | None = None) -> dict[str, dict[str, Any]]:
    """Per unit: counts of the four categories, and the units counted apart."""
    domains, mx, ips = ex.domain_results(), ex.mx_results(), ex.ip_results()
    units = {
        "domain": {
            **categories(domains.values(), "primary_category"),
            "error": sum(1 for r in domains.values() if r["primary_category"] == "error"),
            "not_probed": sum(
                1 for r in domains.values() if r["status"] == "ok" and not r["primary_category"]
            ),
            "not_ok": sum(1 for r in domains.values() if r["status"] != "ok"),
        },
        **{
            unit: {
                **categories(rows.values(), "category"),
                "error": sum(1 for r in rows.values() if r["category"] == "error"),
                "not_probed": sum(1 for r in rows.values() if r["category"] is None),
                "not_ok": None,
            }
            for unit, rows in (("mx_host", mx), ("ip", ips))
        },
    }
    if weights:
        weighed = defaultdict(float)
        for d, r in domains.items():
            if d in weights:
                key = r["primary_category"] or ("not_probed" if r["status"] == "ok" else "not_ok")
                weighed[key] += weights[d]
        units["all_email"] = {k: weighed[k] for k in (*CATEGORIES, "error", "not_probed", "not_ok")}
    return units


def figure2(ex: Expected) -> dict[str, dict[str, int]]:
    by_mx, by_ip = defaultdict(list), defaultdict(list)
    for t in ex.targets:
        if ex.category(t) == "opportunistic":
            by_mx[t.mx_host].append(",".join(t.reasons))
            by_ip[t.ip].append(",".join(t.reasons))
    mx, ips = ex.mx_results(), ex.ip_results()
    return {
        "mx_hosts": Counter(
            min(r) for h, r in by_mx.items() if mx[h]["category"] == "opportunistic"
        ),
        "ips": Counter(min(r) for ip, r in by_ip.items() if ips[ip]["category"] == "opportunistic"),
    }


def by_label(ex: Expected, labels: dict[str, str | None]) -> dict[str | None, dict[str, Any]]:
    """The labels and label_categories tables: per label, its domains and the probed MX
    hosts they name."""
    domains, mx = ex.domain_results(), ex.mx_results()
    found: dict[str | None, dict[str, Any]] = {}
    for label in set(labels.values()):
        mine = [d for d in ex.spec.domains if labels[d] == label]
        hosts = {h for d in mine for h, _, _ in ex.domain_hosts(d) if mx[h]["answered"] is not None}
        rows = [mx[h] for h in hosts]
        found[label] = {
            "domains": len(mine),
            "domains_covered": sum(
                1 for d in mine if any(mx[h]["starttls_any"] for h, _, _ in ex.domain_hosts(d))
            ),
            "unique_mx": len(hosts),
            "mx_with_starttls": sum(1 for r in rows if r["starttls_any"]),
            "connection_errors": sum(1 for r in rows if not r["answered"]),
            "no_starttls": sum(1 for r in rows if r["answered"] and not r["starttls_any"]),
            "domain": categories((domains[d] for d in mine), "primary_category"),
            "domain_error": sum(1 for d in mine if domains[d]["primary_category"] == "error"),
            "mx_host": categories(rows, "category"),
            "mx_host_error": sum(1 for r in rows if r["category"] == "error"),
        }
    return found


def tls_facts(scan, spec: Spec) -> dict[str, Any]:
    """Versions, ciphers and forward secrecy per IP from what each server logged for the
    IP's first session; key sizes from the certificates the network made (as in
    test_views.py: the database only says which SNI each probe used)."""
    first_probe_sni = {
        r["ip"]: r["sni"]
        for r in scan.rows(
            "SELECT ip, sni FROM probes p WHERE run_id = :run AND id = "
            "(SELECT MIN(id) FROM probes q WHERE q.run_id = p.run_id AND q.ip = p.ip)"
        )
    }
    first: dict[str, dict[str, Any]] = {}
    for conn in sorted(scan.connections, key=lambda c: c["start"]):
        if conn["tls"]:
            first.setdefault(conn["ip"], conn)
    sessions = {ip: c for ip, c in first.items() if c["sni"] == first_probe_sni[ip]}
    kinds = {"rsa1024": ("RSA", 1024), "rsa2048": ("RSA", 2048), "ec256": ("EC", 256),
             "ec384": ("EC", 384)}  # fmt: skip
    keys_mx, keys_ip, cipher_mx = defaultdict(set), defaultdict(set), defaultdict(set)
    for row in scan.rows(
        "SELECT mx_host, ip, sni, cipher FROM target_results WHERE run_id = :run"
        " AND tls_version IS NOT NULL"
    ):
        tls = spec.server_at(row["ip"]).esmtp.tls
        key = kinds[spec.certs[tls.sni.get(row["sni"], tls.chain)[0]].key]
        keys_mx[key].add(row["mx_host"])
        keys_ip[key].add(row["ip"])
    for row in scan.rows(
        "SELECT mx_host, sni, ip FROM target_results WHERE run_id = :run AND cipher IS NOT NULL"
    ):  # an MX host counts once per cipher its addresses negotiated (the server's log)
        for conn in scan.connections:
            if conn["ip"] == row["ip"] and conn["sni"] == row["sni"] and conn["tls"]:
                cipher_mx[conn["cipher"]].add(row["mx_host"])
    fs = sum(
        1
        for c in sessions.values()
        if c["tls_version"] == "TLSv1.3" or c["cipher"].startswith(("ECDHE-", "DHE-"))
    )
    return {
        "versions": Counter(c["tls_version"] for c in sessions.values()),
        "ciphers": Counter(c["cipher"] for c in sessions.values()),
        "cipher_mx": {c: len(h) for c, h in cipher_mx.items()},
        "fs": (len(sessions), fs),
        "keys": {k: (len(keys_mx[k]), len(keys_ip[k])) for k in keys_mx},
    }


# -- running the command ---------------------------------------------------------------------


def report(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "scrapy", "report", "-s", f"DATABASE_URL={url}", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


def report_json(url: str, *args: str) -> dict[str, list[dict[str, Any]]]:
    result = report(url, *args, "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def parse_text(out: str) -> dict[str, list[list[str]]]:
    """The text layout (reports/text.py): `== Title  [name]`, a header, rows with cells
    separated by two or more spaces, then a blank line."""
    tables: dict[str, list[list[str]]] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        found = re.match(r"== .*  \[(\w+)\]$", line)
        if not found:
            continue
        rows = []
        for row in lines[i + 2 :]:
            if not row.strip() or row.startswith("=="):
                break
            rows.append(re.split(r"\s{2,}", row.strip()))
        tables[found.group(1)] = [] if rows == [["(none)"]] else rows
    return tables


def number(text: str) -> float | None:
    """A text cell back to a number: '-' is None, '12.5%' is 0.125."""
    if text == "-":
        return None
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def by(rows: list[dict[str, Any]], *keys: str) -> dict[Any, dict[str, Any]]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def assert_shares(row: dict[str, Any], counts: dict[str, float]) -> None:
    total = sum(counts[c] for c in CATEGORIES)
    for c in CATEGORIES:
        assert row[c] == pytest.approx(counts[c]), c
        assert row[f"{c}_share"] == pytest.approx(counts[c] / total if total else None), c


# -- fixtures ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Second:
    """A second run in the same database: the list without LEFT_OUT, labelled by a country
    column (one domain without a label), weighted (one domain without a weight), scanned
    with certifi's trust store instead of the test CA."""

    run_id: int
    expected: Untrusted
    labels: dict[str, str | None]
    weights: dict[str, float]


@pytest.fixture(scope="module")
def expected(spec) -> Expected:
    return Expected(spec)


@pytest.fixture(scope="module")
def second(scan, net, spec, tmp_path_factory) -> Second:
    kept = [d for d in spec.domains if d not in LEFT_OUT]
    labels = {d: None if i == 5 else COUNTRIES[i % 3] for i, d in enumerate(kept)}
    weights = {d: float(i % 5 + 1) for i, d in enumerate(kept) if i != 7}
    lines = ["domain,country,volume"] + [
        f"{d},{labels[d] or ''},{weights.get(d, '')}" for d in kept
    ]
    path = tmp_path_factory.mktemp("second") / "list.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": scan.url,
        "TLS_CA_BUNDLE": certifi.where(),
    }
    result = crawl(path, settings, "label_column=country", "weight_column=volume")
    assert result.returncode == 0, result.stderr[-5000:]
    subset = dataclasses.replace(
        spec, domains={d: spec.domains[d] for d in kept}, invalid_lines=(), duplicate_lines=()
    )
    return Second(latest_run(scan.engine), Untrusted(subset), labels, weights)


@pytest.fixture(scope="module")
def first_json(scan) -> dict[str, list[dict[str, Any]]]:
    return report_json(scan.url, "--run", str(scan.run_id))


@pytest.fixture(scope="module")
def second_json(scan, second) -> dict[str, list[dict[str, Any]]]:
    return report_json(scan.url, "--run", str(second.run_id))


# -- one run: every table ---------------------------------------------------------------------


def test_run_tables(first_json, scan, spec):
    (run,) = first_json["run"]
    assert (run["run_id"], run["domains"], run["labels"], run["weighted_domains"]) == (
        scan.run_id,
        len(spec.domains),
        1,
        0,
    )
    (crawl_row,) = first_json["crawls"]
    assert (crawl_row["status"], crawl_row["entries"], crawl_row["invalid"]) == (
        "finished",
        len(spec.domains),
        spec.expected_invalid,
    )
    assert crawl_row["duplicates"] == spec.expected_duplicates
    statuses = Counter(spec.expected_domains().values())
    assert {r["status"]: r["domains"] for r in first_json["domain_status"]} == statuses


def test_italian_table(first_json, expected):
    want = italian(expected)
    rows = by(first_json["italian_table"], "measure")
    assert {m: r["n"] for m, r in rows.items()} == want
    assert rows["mx_with_starttls"]["share"] == pytest.approx(
        want["mx_with_starttls"] / want["unique_mx"]
    )
    assert rows["domains_covered"]["share"] == pytest.approx(
        want["domains_covered"] / want["domains"]
    )
    assert rows["domains"]["share"] is None


def test_figure1(first_json, expected):
    want = figure1(expected)
    rows = by(first_json["figure1"], "unit")
    assert set(rows) == {"domain", "mx_host", "ip"}  # no weights: no "all email" bar
    for unit, counts in want.items():
        assert_shares(rows[unit], counts)
        assert rows[unit]["counted"] == sum(counts[c] for c in CATEGORIES)
        for apart in ("error", "not_probed", "not_ok"):
            assert rows[unit][apart] == counts[apart], (unit, apart)


def test_figure2(first_json, expected):
    want = figure2(expected)
    rows = by(first_json["figure2"], "reasons")
    assert set(rows) == set(want["mx_hosts"]) | set(want["ips"])
    for unit, counts in want.items():
        total = sum(counts.values())
        for reasons, row in rows.items():
            assert row[unit] == counts[reasons], (unit, reasons)
            assert row[f"{unit}_share"] == pytest.approx(counts[reasons] / total)
    assert "expired,hostname_mismatch" in rows  # combined reasons occur


def test_certificate_tables(first_json, expected, scan, spec):
    facts = tls_facts(scan, spec)
    keys = {
        (r["key_type"], r["key_bits"]): (r["mx_hosts"], r["ips"]) for r in first_json["key_sizes"]
    }
    assert keys == facts["keys"]
    tls = [t for t in expected.targets if expected.category(t) in ("strict", "opportunistic")]
    results = Counter(",".join(t.reasons) or "ok" for t in tls)
    hosts = defaultdict(set)
    for t in tls:
        hosts[",".join(t.reasons) or "ok"].add(t.mx_host)
    assert {
        r["result"]: (r["targets"], r["mx_hosts"]) for r in first_json["verification_results"]
    } == {k: (n, len(hosts[k])) for k, n in results.items()}


def test_protocols_ciphers_and_forward_secrecy(first_json, scan, spec):
    facts = tls_facts(scan, spec)
    total = sum(facts["versions"].values())
    assert {r["tls_version"]: (r["ips"], r["share"]) for r in first_json["protocol_versions"]} == {
        v: (n, pytest.approx(n / total)) for v, n in facts["versions"].items()
    }
    assert {r["cipher"]: (r["ips"], r["mx_hosts"]) for r in first_json["cipher_suites"]} == {
        c: (facts["ciphers"].get(c, 0), n) for c, n in facts["cipher_mx"].items()
    }
    (fs,) = first_json["forward_secrecy"]
    assert (fs["ips_with_tls"], fs["with_forward_secrecy"]) == facts["fs"]
    assert fs["share"] == pytest.approx(facts["fs"][1] / facts["fs"][0])


def test_connection_errors(first_json, expected):
    errors = [t for t in expected.targets if t.category == "error"]
    want = defaultdict(lambda: [0, set(), set()])
    for t in errors:
        entry = want[str(t.error), str(t.error_stage)]
        entry[0] += 1
        entry[1].add(t.mx_host)
        entry[2].add(t.ip)
    got = {
        (r["error"], r["error_stage"]): (r["targets"], r["mx_hosts"], r["ips"])
        for r in first_json["connection_errors"]
    }
    assert got == {k: (n, len(h), len(i)) for k, (n, h, i) in want.items()}


def test_one_label(first_json, expected, spec):
    labels = {d: "testnet" for d in spec.domains}
    want = by_label(expected, labels)["testnet"]
    ((row,), cats) = first_json["labels"], by(first_json["label_categories"], "unit")
    assert row["label"] == "testnet"
    for key in LABEL_COUNTS:
        assert row[key] == want[key], key
    assert row["domains_covered"] == italian(expected)["domains_covered"]
    assert_shares(cats["domain"], want["domain"])
    assert_shares(cats["mx_host"], want["mx_host"])
    assert (cats["domain"]["error"], cats["mx_host"]["error"]) == (
        want["domain_error"],
        want["mx_host_error"],
    )


# -- the second run: labels, weights -----------------------------------------------------------


def test_labels_compared(second_json, second):
    want = by_label(second.expected, second.labels)
    rows = by(second_json["labels"], "label")
    assert set(rows) == {*COUNTRIES, None}
    assert [r["label"] for r in second_json["labels"]][-1] is None  # no label last
    for label, w in want.items():
        row = rows[label]
        for key in LABEL_COUNTS:
            assert row[key] == w[key], (label, key)
        assert row["mx_share"] == pytest.approx(w["mx_with_starttls"] / w["unique_mx"])
        assert row["domains_share"] == pytest.approx(w["domains_covered"] / w["domains"])
    cats = by(second_json["label_categories"], "label", "unit")
    for label, w in want.items():
        assert_shares(cats[label, "domain"], w["domain"])
        assert_shares(cats[label, "mx_host"], w["mx_host"])
    assert sum(r["strict"] for r in second_json["label_categories"]) == 0  # no test CA


def test_weighted_all_email_bar(second_json, second):
    want = figure1(second.expected, second.weights)
    rows = by(second_json["figure1"], "unit")
    assert list(rows) == ["all_email", "domain", "mx_host", "ip"]
    for unit, counts in want.items():
        assert_shares(rows[unit], counts)
        for apart in ("error", "not_probed", "not_ok"):
            assert rows[unit][apart] == pytest.approx(counts[apart]), (unit, apart)
    (run,) = second_json["run"]
    assert run["weighted_domains"] == len(second.weights)
    assert run["labels"] == len(COUNTRIES)  # COUNT(DISTINCT) leaves out the missing label


def test_label_picks_the_latest_run_holding_it(scan, second):
    for label, run_id in (("testnet", scan.run_id), ("de", second.run_id)):
        data = report_json(scan.url, "--label", label)
        assert data["run"][0]["run_id"] == run_id, label
    assert report_json(scan.url)["run"][0]["run_id"] == second.run_id  # default: the latest


# -- the outputs agree ------------------------------------------------------------------------


def test_text_shows_the_json_numbers(scan, first_json):
    result = report(scan.url, "--run", str(scan.run_id))
    assert result.returncode == 0, result.stderr
    assert f"run {scan.run_id} (" in result.stdout.splitlines()[0]
    text = parse_text(result.stdout)
    assert set(text) == set(first_json)
    for name, rows in first_json.items():
        assert len(text[name]) == len(rows), name
        for cells, row in zip(text[name], rows, strict=True):
            numbers = [v for k, v in row.items() if k not in ("measure", "unit")]
            numeric = [
                v for v in numbers if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            shown = [c for c in cells if re.fullmatch(r"-?[\d.]+%?", c)]
            assert len(shown) == len(numeric), (name, cells, row)
            for got, want in zip(shown, numeric, strict=True):
                # Shares with two decimals, as the studies print theirs (25.76%).
                assert re.fullmatch(r"\d+\.\d\d%", got) or not got.endswith("%"), got
                close = 0.00006 if got.endswith("%") else 0.005
                assert number(got) == pytest.approx(want, abs=close), (name, cells, row)
    italian_rows = {r[0]: r for r in text["italian_table"]}
    mx = by(first_json["italian_table"], "measure")["mx_with_starttls"]
    assert italian_rows["MX with STARTTLS"][1:] == [str(mx["n"]), f"{100 * mx['share']:.2f}%"]


def test_csv_one_file_per_table(scan, first_json, tmp_path):
    result = report(
        scan.url, "--run", str(scan.run_id), "--format", "csv", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert {p.stem for p in tmp_path.glob("*.csv")} == set(first_json)
    for name, rows in first_json.items():
        with (tmp_path / f"{name}.csv").open(newline="", encoding="utf-8") as f:
            got = list(csv.DictReader(f))
        assert len(got) == len(rows), name
        for line, row in zip(got, rows, strict=True):
            assert list(line) == list(row), name
            for key, value in row.items():
                if value is None:
                    assert line[key] == "", (name, key)
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    assert float(line[key]) == pytest.approx(value), (name, key)
                else:
                    assert line[key] == str(value), (name, key)


def test_json_to_a_file(scan, first_json, tmp_path):
    result = report(
        scan.url, "--run", str(scan.run_id), "--format", "json", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert written.keys() == first_json.keys()
    assert written["italian_table"] == first_json["italian_table"]


# -- two runs ---------------------------------------------------------------------------------


def units(ex: Expected) -> dict[str, dict[str, str | None]]:
    return {
        "domain": {d: r["primary_category"] for d, r in ex.domain_results().items()},
        "mx_host": {h: r["category"] for h, r in ex.mx_results().items()},
        "ip": {ip: r["category"] for ip, r in ex.ip_results().items()},
    }


def test_compare(scan, expected, second):
    then, now = units(expected), units(second.expected)
    data = report_json(scan.url, "--compare", str(scan.run_id), str(second.run_id))
    changed = {
        (unit, name, old, new)
        for unit in then
        for name, old in then[unit].items()
        if name in now[unit] and (new := now[unit][name]) != old
    }
    assert {(r["unit"], r["name"], r["old"], r["new"]) for r in data["changed"]} == changed
    assert {(r["unit"], r["old"], r["new"]): r["n"] for r in data["transitions"]} == Counter(
        (u, o, n) for u, _, o, n in changed
    )
    assert {(o, n) for _, _, o, n in changed} == {("strict", "opportunistic")}  # the only change
    assert {r["unit"]: (r["both_runs"], r["only_a"], r["only_b"]) for r in data["coverage"]} == {
        u: (
            len(then[u].keys() & now[u].keys()),
            len(then[u].keys() - now[u].keys()),
            len(now[u].keys() - then[u].keys()),
        )
        for u in then
    }
    vanished = then["mx_host"].keys() - now["mx_host"].keys()
    named = Counter(h for d in expected.spec.domains for h, _, _ in expected.domain_hosts(d))
    mx = expected.mx_results()
    assert {
        r["mx_host"]: (r["category"], r["ip_count"], r["domains"])
        for r in data["vanished_mx_hosts"]
    } == {h: (mx[h]["category"], mx[h]["ip_count"], named[h]) for h in vanished}
    assert data["new_mx_hosts"] == []
    italian_rows = by(data["italian_table"], "measure")
    a, b = italian(expected), italian(second.expected)
    assert {m: (r["a"], r["b"], r["change"]) for m, r in italian_rows.items()} == {
        m: (a[m], b[m], b[m] - a[m]) for m in a
    }
    f_a, f_b = figure1(expected), figure1(second.expected, second.weights)
    rows = by(data["figure1"], "unit", "category")
    for unit in ("domain", "mx_host", "ip"):
        for c in CATEGORIES:
            assert (rows[unit, c]["a_n"], rows[unit, c]["b_n"]) == (f_a[unit][c], f_b[unit][c])
    assert rows["all_email", "strict"]["a_n"] is None  # the first run had no weights


def test_compare_the_other_way_lists_new_hosts(scan, expected, second):
    """Later run first: the hosts the subset left out are new, and categories go back."""
    data = report_json(scan.url, "--compare", str(second.run_id), str(scan.run_id))
    then = units(expected)["mx_host"]
    new = then.keys() - units(second.expected)["mx_host"].keys()
    assert {r["mx_host"] for r in data["new_mx_hosts"]} == new
    assert {r["mx_host"]: r["category"] for r in data["new_mx_hosts"]} == {h: then[h] for h in new}
    assert data["vanished_mx_hosts"] == []
    assert {(r["old"], r["new"]) for r in data["transitions"]} == {("opportunistic", "strict")}


def test_compare_text_caps_its_lists(scan, second):
    result = report(scan.url, "--compare", str(scan.run_id), str(second.run_id), "--limit", "2")
    assert result.returncode == 0, result.stderr
    text = parse_text(result.stdout)
    assert Counter(r[0] for r in text["changed"]) == {"domain": 2, "mx_host": 2, "ip": 2}
    assert len(text["vanished_mx_hosts"]) == 2
    assert re.search(r"\n  6 of \d+ shown \(at most 2 per unit\)", result.stdout)
    assert "then" in text["runs"][0] and "now" in text["runs"][1]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "1", "--label", "x"], "give --run or --label, not both"),
        (["--compare", "1", "2", "--run", "1"], "--compare names its two runs"),
        (["--compare", "1"], "expected 2 arguments"),
        (["--format", "xml"], "--format must be one of text, csv, json, not 'xml'"),
        (["--format", "csv"], "--format csv writes one file per table: give --output DIR"),
        (["surplus"], "unexpected arguments: surplus"),
        (["--limit", "-3"], "--limit must be 0 or more"),
        (["--html", "setup.py"], "--html setup.py exists and is not a directory"),
    ],
)
def test_bad_arguments(args, message):
    result = report("sqlite:///unused.sqlite", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (ROOT / "unused.sqlite").exists()


def test_compare_needs_two_runs(scan):
    result = report(scan.url, "--compare", str(scan.run_id), str(scan.run_id))
    assert result.returncode == 2
    assert "--compare needs two different runs" in result.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["--run", "999"], "no run 999 in"),
        (["--run", "no-such-run"], "no run no-such-run in"),
        (["--label", "xx"], "no run labelled 'xx' in"),
        (["--compare", "1", "999"], "no run 999 in"),
    ],
)
def test_unknown_run_names_the_database(scan, args, what):
    result = report(scan.url, *args)
    assert result.returncode == 1
    shown = make_url(scan.url).render_as_string(hide_password=True)
    assert f"{what} {shown}" in result.stderr


def test_missing_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.sqlite'}"
    result = report(url)
    assert result.returncode == 1
    assert f"no database at {tmp_path / 'none.sqlite'}" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()  # not created by looking


# -- the HTML page ----------------------------------------------------------------------------

CHARTS = {
    "starttls_mx",
    "figure1",
    "figure2",
    "certificates",
    "protocols",
    "ciphers",
    "errors",
    "labels",
}
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# Injected into a copy of the page: after load, list the images that did not render.
CHECK = """<script>
window.addEventListener('load', () => {
  const broken = [...document.images]
    .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const out = document.createElement('pre');
  out.id = 'img-check';
  out.textContent = JSON.stringify({images: document.images.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""


class Tables(HTMLParser):
    """Each table of the page (keyed by the id of the heading before it): cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._id: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h3" and (a.get("id") or "").startswith("table-"):
            self._id = a["id"][len("table-") :]
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._id:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def rendered_images(page: Path) -> dict[str, Any]:
    """Load a copy of the page with CHECK injected; what the browser says of its images."""
    check = page.with_name(f"check-{page.name}")
    check.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"))
    result = chromium("--virtual-time-budget=10000", "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="img-check">(.*?)</pre>', result.stdout)
    assert found, result.stderr[-3000:]
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def page(scan, second, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("html")
    result = report(scan.url, "--run", str(second.run_id), "--html", str(directory))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {directory / 'index.html'}"
    return directory / "index.html"


def test_html_charts_exist_and_are_referenced(page, second_json):
    parser = Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    assert set(parser.images) == {f"{c}.png" for c in CHARTS}
    assert {p.name for p in page.parent.glob("*.png")} == set(parser.images)
    for name in parser.images:
        assert (page.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every number on a chart is in a table of the page: the tables hold the report's.
    assert set(parser.tables) == set(second_json)
    for name, rows in second_json.items():
        assert len(parser.tables[name]) == len(rows) + 1, name  # a header row, then rows
    figure1 = {r[0]: r for r in parser.tables["figure1"][1:]}
    row = by(second_json["figure1"], "unit")["mx_host"]
    assert figure1["MX host"][1:3] == [str(row["strict"]), f"{100 * row['strict_share']:.2f}%"]
    assert "http://" not in page.read_text() and "https://" not in page.read_text()


def browser_or_skip() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("MXCENSUS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MXCENSUS_REQUIRE_BROWSER=1 but there is no {CHROMIUM}")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium) to render the HTML report")


def test_html_renders_in_a_browser(page, tmp_path):
    browser_or_skip()
    shot = tmp_path / "report.png"
    result = chromium(f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert shot.exists(), result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # the page has no script: any console message is a load error
    assert "ERR_FILE_NOT_FOUND" not in result.stderr
    from PIL import Image  # with matplotlib

    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text and charts, not a blank page
    assert rendered_images(page) == {"images": len(CHARTS), "broken": []}


def test_the_browser_check_sees_a_broken_image(page):
    """The check above would notice: the same page with one missing image."""
    browser_or_skip()
    broken = page.with_name("broken.html")
    broken.write_text(page.read_text().replace("<nav>", '<nav><img src="missing.png">'))
    assert rendered_images(broken) == {"images": len(CHARTS) + 1, "broken": ["missing.png"]}


def test_compare_html(scan, second, tmp_path):
    result = report(
        scan.url, "--compare", str(scan.run_id), str(second.run_id), "--html", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    parser = Tables()
    parser.feed((tmp_path / "index.html").read_text(encoding="utf-8"))
    assert parser.images == ["compare_figure1.png"]
    assert (tmp_path / "compare_figure1.png").exists()
    assert {"italian_table", "figure1", "changed", "new_mx_hosts", "vanished_mx_hosts"} <= set(
        parser.tables
    )


def test_runs_with_nothing_probed_report_zeros(tmp_path):
    """An empty run (every domain failed DNS, or the crawl was stopped at once) has
    no MX host to count: its tables say 0, and --compare and --html work on it."""
    from datetime import UTC, datetime

    from schema.db import engine_for
    from schema.migrate import upgrade
    from schema.models import Run

    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    engine = engine_for(url)
    upgrade(engine)
    with engine.begin() as conn:
        now = datetime.now(UTC)
        conn.execute(Run.__table__.insert(), [{"name": n, "created_at": now} for n in "ab"])
    tables = report_json(url, "--run", "1")
    assert {row["measure"]: row["n"] for row in tables["italian_table"]} == {
        "domains": 0,
        "unique_mx": 0,
        "mx_with_starttls": 0,
        "domains_covered": 0,
        "connection_errors": 0,
        "no_starttls": 0,
        "not_probed": 0,
    }
    assert report(url, "--compare", "1", "2").returncode == 0
    assert report(url, "--run", "2", "--html", str(tmp_path / "html")).returncode == 0
