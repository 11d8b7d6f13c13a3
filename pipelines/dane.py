"""target_dane: each target's DANE verdict (RFC 7672), judged from the run's stored facts.

Judged once the crawl's rows are written (the store calls it on close, `-a depth=policy`
only), over the whole run: a target's verdict needs its MX host's TLSA RRset, whether the
host's addresses validated, and the chain of the probe that judged the target, and in a
run of several crawls (shards, resumes) these may come from different crawls. DANE
applies only when the TLSA RRset is `secure`, the addresses validated, and TLS was
negotiated; other targets get no row (target_results.dane NULL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from crawler.dane import TlsaRecord, judge
from crawler.dnssec import SMTP_TLSA_PREFIX
from schema.db import merge_statement
from schema.models import Base

# A recomputed verdict replaces the stored one only if it differs.
BETTER = "excluded.dane <> target_dane.dane"
_APPLIES = """
SELECT t.mx_host, t.ip, h.tlsa, h.tlsa_name, p.chain, p.started_at
FROM targets t
JOIN mx_hosts h ON h.run_id = t.run_id AND h.name = t.mx_host
JOIN probes p ON p.run_id = t.run_id AND p.ip = t.ip AND p.port = t.port AND p.sni = t.sni
WHERE t.run_id = :run AND h.tlsa_status = 'secure' AND h.dnssec AND p.wire_outcome = 'tls'
ORDER BY t.mx_host, t.ip
"""


def judge_run(engine: Engine, run_id: int) -> int:
    """Write the run's target_dane rows; returns how many targets DANE applies to."""
    with engine.begin() as conn:
        rows = list(_verdicts(conn, run_id))
        if rows:
            table = Base.metadata.tables["target_dane"]
            keys = ("run_id", "mx_host", "ip")
            conn.execute(merge_statement(engine, table, keys, BETTER), rows)
    return len(rows)


def _verdicts(conn: Connection, run_id: int) -> Iterator[dict[str, Any]]:
    targets = conn.execute(text(_APPLIES), {"run": run_id}).mappings().all()
    ders = _certificates(conn, {sha for t in targets for sha in _chain(t["chain"])})
    for target in targets:
        records = [TlsaRecord.parse(r) for r in (target["tlsa"] or "").split(",") if r]
        chain = [ders[sha] for sha in _chain(target["chain"]) if sha in ders]
        base = (target["tlsa_name"] or "").removeprefix(SMTP_TLSA_PREFIX)
        verdict = judge(records, chain, (target["mx_host"], base), _when(target["started_at"]))
        yield {
            "run_id": run_id,
            "mx_host": target["mx_host"],
            "ip": target["ip"],
            "dane": str(verdict.dane),
            "matched": verdict.matched,
            "detail": verdict.detail,
        }


def _when(value: Any) -> datetime | None:
    """probes.started_at: a datetime from PostgreSQL, text (or naive) from SQLite."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _chain(value: Any) -> list[str]:
    """probes.chain (SHA-256 of each certificate as sent): a JSON list, parsed by
    psycopg2, text from SQLite."""
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or ())


def _certificates(conn: Connection, digests: set[str]) -> dict[str, bytes]:
    if not digests:
        return {}
    found: dict[str, bytes] = {}
    ordered = sorted(digests)
    for start in range(0, len(ordered), 500):
        batch = ordered[start : start + 500]
        marks = ", ".join(f":d{i}" for i in range(len(batch)))
        result = conn.execute(
            text(f"SELECT sha256, der FROM certificates WHERE sha256 IN ({marks})"),
            {f"d{i}": sha for i, sha in enumerate(batch)},
        )
        found.update({sha: bytes(der) for sha, der in result})
    return found
