"""Scrapy's feed exports on a real crawl: `-o items.jsonl` and `-o items.csv` write
every item readably (bytes as hex, nested facts as JSON), and a feed that cannot be
written is refused at start."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from sqlalchemy import text

from demo.scan import crawl, scanner_settings
from schema.db import engine_for


@pytest.fixture
def settings(net, tmp_path) -> dict[str, str]:
    return {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'scan.sqlite'}"}


def test_jsonl_and_csv_feeds_hold_every_item(settings, tmp_path):
    path = tmp_path / "some.txt"
    path.write_text("strict.test\nplain.test\nexpired.test\nrefused.test\n")
    jsonl, table = tmp_path / "items.jsonl", tmp_path / "items.csv"
    result = crawl(
        path, settings, "depth=protocols", timeout=120, extra=("-o", str(jsonl), "-o", str(table))
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Error" not in result.stderr
    items = [json.loads(line) for line in jsonl.read_text().splitlines()]
    rows = list(csv.DictReader(table.open(newline="")))
    assert [r["item"] for r in rows] == [i["item"] for i in items]
    domains = {i["dns"]["domain"] for i in items if i["item"] == "DomainItem"}
    assert domains == {"strict.test", "plain.test", "expired.test", "refused.test"}
    probes = {i["probe"]["ip"]: i for i in items if i["item"] == "ProbeItem"}
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        stored = dict(conn.execute(text("SELECT ip, cert_sha256 FROM probes")).all())
    assert probes.keys() == stored.keys()
    for ip, item in probes.items():
        tls = item["probe"]["attempts"][-1]["tls"]
        leaf = bytes.fromhex(tls["chain_der"][0]) if tls else None
        assert (leaf and hashlib.sha256(leaf).hexdigest()) == stored[ip]
    # The protocol scans (STARTTLS servers only): a version per try, its attempt or none.
    scans = {i["scan"]["ip"]: i["scan"] for i in items if i["item"] == "ProtocolsItem"}
    starttls = {ip for ip, item in probes.items() if item["probe"]["attempts"][-1]["tls"]}
    assert scans.keys() == starttls
    for scan in scans.values():
        tried = {version: attempt for version, attempt in scan["tries"]}
        assert tried["SSLv3"] is None and tried["TLSv1.2"]["tls"]["version"] == "TLSv1.2"
    for row, item in zip(rows, items, strict=True):  # the CSV's cells: the same facts
        for name, value in item.items():
            cell = row[name]
            if isinstance(value, (dict, list)):
                assert json.loads(cell) == value
            else:
                assert cell == ("" if value is None else str(value))


def test_a_feed_that_cannot_be_written_is_refused_at_start(settings, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("plain.test\n")
    result = crawl(path, settings, timeout=120, extra=("-o", "/proc/nope/items.jsonl"))
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "-o /proc/nope/items.jsonl: cannot create /proc/nope: " in last
    assert "Traceback" not in result.stderr
