"""How a run is cut into scrapyd jobs, and what state each shard is in.

scrapyd lists a job that exited 1 as "finished" (docs/design.md, "Known pitfalls"): a
shard's state is judged from the run's own records, the `crawls` rows, with
scrapyd's view of the job only filling in what the records cannot know (queued,
started but not yet recorded, gone without closing its record). Pure: no HTTP,
no SQL, no clock; `scrapy census` and `scrapy summary` are the I/O around it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class ShardState(StrEnum):
    PENDING = "pending"  # in scrapyd's queue, or its node cannot be reached for now
    RUNNING = "running"  # started; its crawl's heartbeat is fresh
    FINISHED = "finished"  # its crawl finished
    INTERRUPTED = "interrupted"  # its crawl was stopped (Ctrl-C, cancel.json, CLOSESPIDER_*)
    FAILED = "failed"  # its crawl failed, or its job ended without a crawl record
    DEAD = "dead"  # its crawl is `running` without a heartbeat for RUN_LEASE, or its job is gone
    MISSING = "missing"  # no crawl record and no job


# What the follower acts on: these are scheduled again (up to --retries).
RETRYABLE = frozenset({ShardState.FAILED, ShardState.DEAD, ShardState.MISSING})
# Shown in every progress line, in this order; other states only when they occur.
PROGRESS = (ShardState.PENDING, ShardState.RUNNING, ShardState.FINISHED, ShardState.FAILED)

# scrapyd's listjobs.json sections, plus what the follower knows when it cannot ask.
JOB_PENDING, JOB_RUNNING, JOB_FINISHED = "pending", "running", "finished"
JOB_UNKNOWN = "unknown"  # the job's node did not answer


@dataclass(frozen=True)
class CrawlRecord:
    """The columns of a `crawls` row that say how its process is doing."""

    id: int
    shard: str | None  # "K/N"
    status: str  # running | finished | interrupted | failed
    finish_reason: str | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    job: str | None = None  # scrapyd's `_job`
    node: str | None = None  # the crawler machine's FQDN


def utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; the store writes UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def record_state(record: CrawlRecord, now: datetime, lease: float) -> ShardState:
    """A crawl's state from its own row: a `running` row whose heartbeat (or start,
    before the first beat) is older than the lease belongs to a dead process."""
    if record.status == "running":
        last = utc(record.heartbeat_at or record.started_at)
        if last is not None and (now - last).total_seconds() > lease:
            return ShardState.DEAD
        return ShardState.RUNNING
    try:
        return ShardState(record.status)
    except ValueError:
        return ShardState.FAILED  # a status this version does not know did not finish


def job_state(
    job: str | None, record: CrawlRecord | None, now: datetime, lease: float
) -> ShardState:
    """One job's shard state from scrapyd's word on the job (`job`: pending, running,
    finished, unknown, or None when its node answers without listing it) and the
    crawl row the job wrote (None: not yet, or never).

    The row decides whenever there is one. scrapyd only says what happened before
    the crawl could write its row, or after its process stopped without closing it.
    """
    if record is not None:
        state = record_state(record, now, lease)
        if state is ShardState.RUNNING and job == JOB_FINISHED:
            return ShardState.DEAD  # the process is gone and never closed its row (kill -9, OOM)
        if state is ShardState.INTERRUPTED and job == JOB_RUNNING:
            return ShardState.RUNNING  # still shutting down
        return state
    if job in (JOB_PENDING, JOB_UNKNOWN):
        return ShardState.PENDING
    if job == JOB_RUNNING:
        return ShardState.RUNNING  # started, not yet at its first write
    if job == JOB_FINISHED:
        return ShardState.FAILED  # ended before recording a crawl: bad argument, egg, database
    return ShardState.MISSING  # its node forgot it (scrapyd restarted) or never had it


def record_for(
    records: Iterable[CrawlRecord], shard: str, job: str | None, after: int = 0
) -> CrawlRecord | None:
    """The crawl row a job wrote: the latest with its job id; failing that (a store
    that does not record `_job`), the latest row of its shard without a job id that
    appeared after the job was scheduled (`after`: the run's highest crawl id then)."""
    rows = [r for r in records if r.shard == shard]
    own = [r for r in rows if job is not None and r.job == job]
    if not own:
        own = [r for r in rows if r.job is None and r.id > after]
    return max(own, key=lambda r: r.id, default=None)


def shard_record(
    records: Iterable[CrawlRecord], now: datetime, lease: float
) -> tuple[ShardState, CrawlRecord]:
    """A shard's state over all its crawls (a shard may be run again): a live crawl
    first, then a finished one (its facts are all in the run), else the latest."""
    ordered = sorted(records, key=lambda r: r.id, reverse=True)
    if not ordered:
        raise ValueError("a shard without crawls is missing, not judged")
    states = [(record_state(r, now, lease), r) for r in ordered]
    for wanted in (ShardState.RUNNING, ShardState.FINISHED):
        for state, record in states:
            if state is wanted:
                return state, record
    return states[0]


def shard_labels(count: int) -> list[str]:
    """The `-a shard=` value of each of COUNT shards, as the spider reads it."""
    return [f"{k}/{count}" for k in range(1, count + 1)]


def shards_of_run(
    records: Iterable[CrawlRecord], now: datetime, lease: float
) -> list[tuple[str, ShardState, CrawlRecord | None]]:
    """Every shard of a run, in order: each K/N seen, and those of the same N
    that no crawl recorded (missing). Crawls without a shard are left out."""
    by_shard: dict[str, list[CrawlRecord]] = {}
    for record in records:
        if record.shard:
            by_shard.setdefault(record.shard, []).append(record)
    counts = {int(label.split("/")[1]) for label in by_shard}
    rows: list[tuple[str, ShardState, CrawlRecord | None]] = []
    for count in sorted(counts):
        for label in shard_labels(count):
            if label in by_shard:
                rows.append((label, *shard_record(by_shard[label], now, lease)))
            else:
                rows.append((label, ShardState.MISSING, None))
    return rows


def node_for(shard: int, attempt: int, nodes: int) -> int:
    """Round-robin: shard K (from 1) on node K-1; each retry moves to the next node."""
    return (shard - 1 + attempt) % nodes


def progress(states: Iterable[ShardState]) -> str:
    """'4 shards: 1 pending, 2 running, 1 finished, 0 failed' (+ any other state)."""
    counts = Counter(states)
    parts = [f"{counts.get(s, 0)} {s}" for s in PROGRESS]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in PROGRESS]
    total = sum(counts.values())
    return f"{total} shard{'s' if total != 1 else ''}: " + ", ".join(parts)


def exit_status(states: Iterable[ShardState]) -> int:
    """docs/design.md's exit statuses, over the shards' final states: 0 every shard
    finished, 1 one failed for good, else 3 when one was interrupted."""
    final = set(states)
    if final & RETRYABLE:
        return 1
    if ShardState.INTERRUPTED in final:
        return 3
    return 0 if final <= {ShardState.FINISHED} else 1


def new_run_name(label: str | None, now: datetime, token: str) -> str:
    """A run name like the store's own default (LABEL-TIMESTAMP-XXXX): every shard
    must join one run, so the scheduler names it when the user did not."""
    return f"{label or 'run'}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{token}"


# --- what may be handed to scrapyd ---------------------------------------------

# Settings naming a local file: scrapyd starts jobs in its own directory.
PATH_SETTINGS = ("EXCLUDE_FILE", "TLS_CA_BUNDLE")


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def job_argument_errors(args: Mapping[str, str], settings: Mapping[str, str]) -> list[str]:
    """Why these spider arguments and settings cannot go to scrapyd, if they cannot.

    Lists and files must be URLs or absolute paths: a job runs in scrapyd's own
    directory, on whichever node it lands. No password may travel in them:
    schedule.json arguments are shown by listjobs.json, in scrapyd's logs and in
    `ps` on the node.
    """
    errors = []
    domains = args.get("domains")
    if not domains:
        errors.append("-a domains=URL_OR_ABSOLUTE_PATH is required")
    elif not is_url(domains) and not os.path.isabs(domains):
        errors.append(
            f"-a domains must be a URL or an absolute path (a scrapyd job runs in "
            f"scrapyd's directory, on any node): {domains!r}"
        )
    for name in PATH_SETTINGS:
        value = settings.get(name)
        if value and not os.path.isabs(value):
            errors.append(f"-s {name} must be an absolute path: {value!r}")
    if "shard" in args:
        errors.append("-a shard is set by census for each job; give --shards N")
    for kind, values in (("-a", args), ("-s", settings)):
        for name, value in values.items():
            if name != "DATABASE_URL" and urlsplit(value).password:
                errors.append(f"{kind} {name} carries a password; job arguments are public")
    errors += database_url_errors(settings.get("DATABASE_URL", ""))
    return errors


def database_url_errors(url: str) -> list[str]:
    """A DATABASE_URL every job can use as given, and that shows no secret."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        return [f"DATABASE_URL is not a database URL: {e}"]
    if parsed.password:
        return [
            "DATABASE_URL carries a password, which scrapyd would show to anyone who can "
            "list its jobs: give it to every node through PGPASSWORD, ~/.pgpass or a "
            "PGSERVICE file instead (docs/distributed.md)"
        ]
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not os.path.isabs(path):
            return [
                "DATABASE_URL must name the run's shared database: postgresql://USER@HOST/DB "
                "(or sqlite:////ABSOLUTE/PATH when every node is this machine)"
            ]
    return []


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """http://user:pass@host:6800 → (http://host:6800/, user, pass): credentials go
    in an Authorization header, never into what is printed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    clean = urlunsplit((parts.scheme, netloc, path, "", ""))
    return clean, parts.username, parts.password


def masked(url: str) -> str:
    """A URL fit to print: any password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
