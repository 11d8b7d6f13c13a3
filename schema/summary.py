"""The short summary of a run: its crawls and shards, domains by status, targets by
outcome, list counts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from crawler.progress_line import duration
from crawler.scheduling import CrawlRecord, ShardState, record_state, shards_of_run, utc
from schema.models import Crawl

DEFAULT_LEASE = 300.0  # RUN_LEASE's default: seconds without a heartbeat before a crawl is dead

# (shard "K/N", state, node, scrapyd job id)
ShardRow = tuple[str, ShardState, str | None, str | None]


@dataclass(frozen=True)
class Summary:
    run_id: int
    run_name: str
    crawls: list[dict[str, Any]]
    domains: list[tuple[str, int]]  # (status, count)
    targets: list[tuple[str, str, int]]  # (outcome, code, count)
    probes: int
    shards: list[ShardRow] = field(default_factory=list)  # empty for an unsharded run


def find_run(engine: Engine, run: str | None = None) -> tuple[int, str] | None:
    """A run by id or name; the latest run when none is given."""
    with engine.connect() as conn:
        if run is None:
            row = conn.execute(text("SELECT id, name FROM runs ORDER BY id DESC LIMIT 1")).first()
        elif run.isdigit():
            row = conn.execute(
                text("SELECT id, name FROM runs WHERE id = :r"), {"r": int(run)}
            ).first()
        else:
            row = conn.execute(
                text("SELECT id, name FROM runs WHERE name = :r"), {"r": run}
            ).first()
    return (row[0], row[1]) if row else None


TARGETS_SQL = """
SELECT COALESCE(category, skip_reason, 'not_probed') AS outcome,
       COALESCE(error, reasons, '') AS code, COUNT(*) AS n
FROM target_results
WHERE run_id = :run
GROUP BY 1, 2
ORDER BY 1, 2
"""


def database_now(conn: Connection) -> datetime:
    """The time heartbeats are judged by: the database server's on PostgreSQL, where
    crawls write them with its clock; ours on SQLite, which is on this machine."""
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.now())).scalar_one()
    return datetime.now(UTC)


def summarize(
    engine: Engine,
    run_id: int,
    run_name: str,
    lease: float = DEFAULT_LEASE,
    now: datetime | None = None,
) -> Summary:
    """`lease` is RUN_LEASE: a `running` crawl silent for longer is shown dead."""
    params = {"run": run_id}
    with engine.connect() as conn:
        now = now or database_now(conn)
        domains = conn.execute(
            text(
                "SELECT status, COUNT(*) FROM domains WHERE run_id = :run GROUP BY status"
                " ORDER BY COUNT(*) DESC, status"
            ),
            params,
        ).all()
        targets = conn.execute(text(TARGETS_SQL), params).all()
        probes = conn.execute(text("SELECT COUNT(*) FROM probes WHERE run_id = :run"), params)
        stored = {table: _per_crawl(conn, table, run_id) for table in ("domains", "probes")}
        crawls = (
            conn.execute(  # through the model, so JSON comes back parsed
                select(
                    Crawl.id,
                    Crawl.status,
                    Crawl.finish_reason,
                    Crawl.counts,
                    Crawl.shard,
                    Crawl.started_at,
                    Crawl.heartbeat_at,
                    Crawl.job,
                    Crawl.node,
                )
                .where(Crawl.run_id == run_id)
                .order_by(Crawl.id)
            )
            .mappings()
            .all()
        )
    records = [_record(c) for c in crawls]
    return Summary(
        run_id,
        run_name,
        [
            {
                **c,
                "state": record_state(r, now, lease),
                "stored": {table: by_crawl.get(c["id"], 0) for table, by_crawl in stored.items()},
                "elapsed": (now - utc(c["started_at"])).total_seconds() if c["started_at"] else 0,
            }
            for c, r in zip(crawls, records, strict=True)
        ],
        [(s, n) for s, n in domains],
        [(o, c, n) for o, c, n in targets],
        probes.scalar_one(),
        [
            (label, state, record and record.node, record and record.job)
            for label, state, record in shards_of_run(records, now, lease)
        ],
    )


def _per_crawl(conn: Connection, table: str, run_id: int) -> dict[int, int]:
    """Rows each crawl of the run stored: how far a running one has come."""
    rows = conn.execute(
        text(f"SELECT crawl_id, COUNT(*) FROM {table} WHERE run_id = :run GROUP BY crawl_id"),
        {"run": run_id},
    )
    return dict(rows.all())


def _record(crawl: Any) -> CrawlRecord:
    return CrawlRecord(**{f.name: crawl[f.name] for f in fields(CrawlRecord)})


def _so_far(crawl: dict[str, Any]) -> str:
    """A running crawl's progress from what it stored (the log says more, every
    PROGRESS_INTERVAL)."""
    domains, probes = crawl["stored"]["domains"], crawl["stored"]["probes"]
    elapsed = max(crawl["elapsed"], 1e-9)
    return (
        f"{domains:,} domains and {probes:,} probes stored in {duration(elapsed)} "
        f"({domains / elapsed:.1f} domains/s)"
    )


def render_shards(rows: Iterable[ShardRow]) -> str:
    """A run's shards, one a line: shard, state, node, scrapyd job."""
    lines = [f"  {'shard':<8}{'state':<13}{'node':<32}job"]
    lines += [
        f"  {label:<8}{state:<13}{node or '-':<32}{job or '-'}" for label, state, node, job in rows
    ]
    return "\n".join(lines)


def render(summary: Summary) -> str:
    lines = [f"run {summary.run_id} ({summary.run_name})"]
    for crawl in summary.crawls:
        listed = (crawl["counts"] or {}).get("list", {})
        status, reason = crawl["status"], crawl["finish_reason"] or "running"
        if crawl["state"] is ShardState.DEAD:
            status, reason = "dead", "running, without a heartbeat"
        if crawl["state"] is ShardState.RUNNING:  # its counts come when it ends
            lines.append(f"  crawl {crawl['id']}: running; {_so_far(crawl)}")
            continue
        lines.append(
            f"  crawl {crawl['id']}: {status} ({reason}); "
            f"list: {listed.get('entries', '?')} domains, {listed.get('invalid', '?')} invalid, "
            f"{listed.get('duplicates', '?')} duplicate lines"
        )
    if summary.shards:
        lines.append(f"\nshards ({len(summary.shards)})")
        lines.append(render_shards(summary.shards))
    lines.append(f"\ndomains by status ({sum(n for _, n in summary.domains)})")
    lines += [f"  {status:<22}{n:>8}" for status, n in summary.domains]
    total = sum(n for *_, n in summary.targets)
    lines.append(f"\ntargets (MX host, IP) by category ({total}; {summary.probes} probes)")
    lines += [f"  {outcome:<20}{code:<34}{n:>6}" for outcome, code, n in summary.targets]
    return "\n".join(lines)
