"""Time `scrapy report` on a synthetic 100,000-domain run.

Builds a scratch SQLite database straight through the tables of schema/models.py
(bulk inserts, no scan): a few providers whose MX hosts and IPs serve most domains,
a long tail of self-hosted MX hosts, every category, reason, error and status, labels
and weights. A second run repeats the first with a known share of changes, so
`--compare` is timed too. Then it runs the real command (text, json, html, compare)
as subprocesses and prints the wall time of each.

    python -m benchmarks.report_100k [--domains 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

from schema.db import engine_for
from schema.migrate import upgrade
from schema.models import (
    Certificate,
    Crawl,
    Domain,
    MxAddress,
    MxHost,
    MxRecord,
    Probe,
    Run,
    Target,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, tzinfo=UTC)
LABELS = ["it", "de", "fr", "es", "at", "ch", "nl", "be"]
# (category, weight) of a self-hosted IP; providers are mostly strict.
TAIL = [("strict", 30), ("opportunistic", 35), ("failure", 2), ("none", 18), ("error", 15)]
REASONS = [
    "hostname_mismatch",
    "self_signed",
    "untrusted_ca",
    "expired",
    "expired,hostname_mismatch",
    "hostname_mismatch,self_signed",
    "weak_key",
]
ERRORS = [
    ("connection_timeout", "connect"),
    ("connection_refused", "connect"),
    ("timeout", "banner"),
    ("greeting_rejected", "banner"),
    ("ehlo_rejected", "ehlo"),
]
FAILURES = [("starttls_rejected", "starttls"), ("tls_handshake_failed", "tls")]
SESSIONS = [  # (tls_version, cipher, forward secrecy)
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384", True),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256", True),
    ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", True),
    ("TLSv1.2", "AES256-GCM-SHA384", False),
    ("TLSv1", "ECDHE-RSA-AES256-SHA", True),
]
KEYS = [("RSA", 2048), ("RSA", 4096), ("EC", 256), ("RSA", 1024)]


def chunks(rows: list[dict[str, Any]], size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


class Universe:
    """One run's rows: domains → MX hosts → IPs, with a verdict per target."""

    def __init__(self, domains: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.rows: dict[str, list[dict[str, Any]]] = {
            t: [] for t in ("domains", "mx_records", "mx_hosts", "mx_addresses", "targets")
        }
        self.probes: list[dict[str, Any]] = []
        self.certs: dict[str, dict[str, Any]] = {}
        self.ip_verdict: dict[str, tuple[str, str | None, str | None, str | None]] = {}
        self.next_ip = 0
        providers = [
            self.host(f"mx{j}.provider{i}.example", i < 3) for i in range(40) for j in (1, 2)
        ]
        tail_hosts = max(1, domains // 3)
        tail = [self.host(f"mail.site{i}.example", False) for i in range(tail_hosts)]
        for n in range(domains):
            name = f"d{n}.example"
            status = self.rng.choices(
                ["ok", "nxdomain", "null_mx", "servfail", "no_mx_no_address"], [92, 4, 2, 1, 1]
            )[0]
            hosts: list[tuple[str, int]] = []
            if status == "ok":
                if self.rng.random() < 0.6:  # a provider: its two MX hosts
                    p = self.rng.randrange(40) * 2
                    hosts = [(providers[p], 10), (providers[p + 1], 20)]
                else:
                    hosts = [(self.rng.choice(tail), 10)]
                    if self.rng.random() < 0.3:
                        hosts.append((self.rng.choice(providers), 20))
            self.rows["domains"].append(
                {
                    "run_id": 0,
                    "domain": name,
                    "crawl_id": 0,
                    "label": LABELS[n % len(LABELS)],
                    "weight": None if n % 50 == 0 else float(self.rng.randint(1, 1000)),
                    "line": n + 1,
                    "status": status,
                    "null_mx": status == "null_mx",
                    "implicit_mx": False,
                    "mx_count": len(hosts),
                    "mx_rrset": [],
                    "dns_detail": None,
                }
            )
            for host, pref in hosts:
                self.rows["mx_records"].append(
                    {
                        "run_id": 0,
                        "domain": name,
                        "mx_host": host,
                        "preference": pref,
                        "implicit": False,
                    }
                )

    def host(self, name: str, big: bool) -> str:
        ips = [self.ip() for _ in range(self.rng.randint(4, 8) if big else self.rng.randint(1, 2))]
        self.rows["mx_hosts"].append(
            {
                "run_id": 0,
                "name": name,
                "canonical_name": None,
                "dns_outcome": "ok",
                "dns_detail": None,
                "ip_literal": False,
            }
        )
        for ip in ips:
            self.rows["mx_addresses"].append(
                {"run_id": 0, "mx_host": name, "ip": ip, "family": 4, "skip_reason": None}
            )
            self.target(name, ip, big)
        return name

    def ip(self) -> str:
        self.next_ip += 1
        n = self.next_ip
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"

    def target(self, host: str, ip: str, big: bool) -> None:
        rng = self.rng
        category = "strict" if big else rng.choices(*zip(*TAIL, strict=True))[0]
        reasons = rng.choice(REASONS) if category == "opportunistic" else None
        error, stage = (
            rng.choice(ERRORS)
            if category == "error"
            else rng.choice(FAILURES)
            if category == "failure"
            else (None, None)
        )
        self.rows["targets"].append(
            {
                "run_id": 0,
                "mx_host": host,
                "ip": ip,
                "port": 25,
                "sni": host,
                "category": category,
                "reasons": reasons,
                "error": error,
                "error_stage": stage,
            }
        )
        tls = category in ("strict", "opportunistic")
        version, cipher, fs = SESSIONS[0] if big else rng.choice(SESSIONS)
        cert = None
        if tls:
            key_type, bits = KEYS[0] if big else rng.choice(KEYS)
            cert = f"{zlib.crc32(host.encode()) if big else len(self.certs) + 2**32:064x}"
            self.certs.setdefault(
                cert,
                {
                    "sha256": cert,
                    "der": b"",
                    "subject": None,
                    "issuer": None,
                    "not_before": None,
                    "not_after": None,
                    "key_type": key_type,
                    "key_bits": bits,
                    "san_dns": None,
                    "parse_error": None,
                },
            )
        self.probes.append(
            {
                "run_id": 0,
                "crawl_id": 0,
                "ip": ip,
                "port": 25,
                "sni": host,
                "started_at": NOW,
                "attempt_count": 1,
                "wire_outcome": "tls" if tls else category,
                "error": error,
                "error_stage": stage,
                "starttls_advertised": category in ("strict", "opportunistic", "failure"),
                "tls_version": version if tls else None,
                "cipher": cipher if tls else None,
                "forward_secrecy": fs if tls else None,
                "cert_sha256": cert,
                "quit_sent": True,
                "timings": {},
                "transcript": [],
                "attempts": [],
            }
        )


def build(engine: Engine, domains: int) -> None:
    """Run 1 from the universe; run 2 = run 1 with 5 % of self-hosted targets re-judged
    and 1 % of domains gone (the study's "almost unchanged" second look)."""
    upgrade(engine)
    universe = Universe(domains)
    with engine.begin() as conn:
        for run_id in (1, 2):
            conn.execute(
                insert(Run), [{"id": run_id, "name": f"bench-{run_id}", "created_at": NOW}]
            )
            conn.execute(
                insert(Crawl),
                [
                    {
                        "id": run_id,
                        "run_id": run_id,
                        "label": None,
                        "source": "synthetic",
                        "started_at": NOW,
                        "finished_at": NOW,
                        "status": "finished",
                        "finish_reason": "finished",
                        "versions": {},
                        "settings": {},
                        "counts": {},
                    }
                ],
            )
        conn.execute(insert(Certificate), list(universe.certs.values()))
        tables = {
            "domains": Domain,
            "mx_records": MxRecord,
            "mx_hosts": MxHost,
            "mx_addresses": MxAddress,
            "targets": Target,
        }
        for name, model in tables.items():
            for chunk in chunks(universe.rows[name]):
                conn.execute(insert(model), [{**r, "run_id": 1} | crawl(r, 1) for r in chunk])
        for chunk in chunks(universe.probes):
            conn.execute(insert(Probe), [{**r, "run_id": 1, "crawl_id": 1} for r in chunk])
        copy_run(conn)


def crawl(row: dict[str, Any], crawl_id: int) -> dict[str, Any]:
    return {"crawl_id": crawl_id} if "crawl_id" in row else {}


def copy_run(conn: Any) -> None:
    """Run 2 in SQL: the same rows, then a few deliberate changes."""
    columns = {
        "domains": "domain, crawl_id, label, weight, line, status, null_mx, implicit_mx, "
        "mx_count, mx_rrset, dns_detail",
        "mx_records": "domain, mx_host, preference, implicit",
        "mx_hosts": "name, canonical_name, dns_outcome, dns_detail, ip_literal",
        "mx_addresses": "mx_host, ip, family, skip_reason",
        "targets": "mx_host, ip, port, sni, category, reasons, error, error_stage",
    }
    for table, cols in columns.items():
        select = cols.replace("crawl_id", "2")
        conn.execute(text(f"INSERT INTO {table} (run_id, {cols}) SELECT 2, {select} FROM {table}"))
    probe_cols = (
        "ip, port, sni, started_at, attempt_count, wire_outcome, error, error_stage, "
        "starttls_advertised, tls_version, cipher, forward_secrecy, cert_sha256, quit_sent, "
        "timings, transcript, attempts"
    )
    conn.execute(
        text(
            f"INSERT INTO probes (run_id, crawl_id, {probe_cols}) SELECT 2, 2, {probe_cols} "
            "FROM probes WHERE run_id = 1"
        )
    )
    # Changes: some self-hosted targets fixed their certificates, some stopped answering.
    conn.execute(
        text(
            "UPDATE targets SET category = 'strict', reasons = NULL WHERE run_id = 2"
            " AND category = 'opportunistic' AND mx_host LIKE 'mail.site%'"
            " AND abs(length(ip) * 7 + unicode(substr(ip, -1))) % 20 = 0"
        )
    )
    conn.execute(
        text(
            "UPDATE targets SET category = 'error', error = 'connection_timeout',"
            " error_stage = 'connect', reasons = NULL WHERE run_id = 2 AND category = 'none'"
            " AND unicode(substr(ip, -1)) % 10 = 3"
        )
    )
    for table, key in (("mx_records", "domain"), ("domains", "domain")):
        conn.execute(text(f"DELETE FROM {table} WHERE run_id = 2 AND {key} LIKE 'd%99.example'"))


def timed(label: str, command: list[str]) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode:
        sys.exit(f"{label} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    print(f"  {label:<34}{elapsed:7.1f} s")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build the database and HTML here and keep them")
    opts = parser.parse_args()
    directory = opts.keep or Path(tempfile.mkdtemp(prefix="report-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "bench.sqlite"
    for stale in directory.glob("bench.sqlite*"):
        stale.unlink()
    url = f"sqlite:///{database}"
    started = time.monotonic()
    build(engine_for(url), opts.domains)
    print(f"synthesised {opts.domains} domains, 2 runs, in {time.monotonic() - started:.1f} s")
    with engine_for(url).connect() as conn:
        for table in ("domains", "mx_hosts", "mx_addresses", "probes"):
            n = conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE run_id = 1")).scalar_one()
            print(f"  run 1: {n:>8} {table}")
    report = [sys.executable, "-m", "scrapy", "report", "-s", f"DATABASE_URL={url}"]
    timed("report --run 1 (text)", [*report, "--run", "1"])
    timed("report --run 1 --format json", [*report, "--run", "1", "--format", "json"])
    timed("report --run 1 --html", [*report, "--run", "1", "--html", str(directory / "html")])
    timed("report --compare 1 2", [*report, "--compare", "1", "2"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
