"""The run, not the process: crawl records, claims, heartbeat, and what a joining crawl resumes.

Several crawls (scrapyd shards, a crawl resumed after a kill) may feed one run.
Before connecting to an IP:port a crawl claims it in the database (insert if
absent), so one crawl at a time talks to a server and `SMTP_MAX_PER_IP` holds
across the run. Committed probes, not claims, say what is done: a probe whose
facts are committed is never made again in the run. A claim lapses when its
crawl has not heartbeated for `RUN_LEASE` seconds (killed, or its machine gone)
and is then taken over. All database work runs on one thread of its own, so a
slow database never stalls the reactor and claims never queue behind a batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scrapy.exceptions import UsageError
from scrapy.utils.defer import deferred_to_future, maybe_deferred_to_future
from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, text, tuple_, update
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from crawler.digests import DigestSet
from crawler.domainnames import domain_hash
from crawler.items import StoredProbe
from crawler.record import settings_record, versions
from schema.db import engine_for, first_line, insert_ignore, retrying
from schema.migrate import upgrade
from schema.models import (
    Claim,
    Crawl,
    Domain,
    DomainPolicy,
    MxAddress,
    Probe,
    ProtocolProbe,
    Run,
    Target,
)
from schema.vocab import DomainStatus

logger = logging.getLogger(__name__)

ASK_BATCH = 500  # asks answered in one transaction at most
# Seconds asks gather after a batch before the next goes: a transaction costs about
# the same for 10 asks as for 100, and a probe waits this long at most.
ASK_GATHER = 0.1

# The stat holding how this crawl's record ended (finished | interrupted | failed): the
# crawl command's exit status follows it. Outside `mxcensus/`, which the record counts.
STATUS_STAT = "crawl_status"

# A domain with these is asked again when its run is resumed: the answer may come now.
RETRIED_STATUSES = (str(DomainStatus.DNS_TIMEOUT), str(DomainStatus.SERVFAIL))


def _now() -> datetime:
    return datetime.now(UTC)


def _clock(conn: Connection) -> Any:
    """The time leases are measured by: the database server's on PostgreSQL, so
    crawls on machines whose clocks differ still agree (SQLite is one machine)."""
    return func.now() if conn.dialect.name == "postgresql" else _now()


@dataclass
class Resume:
    """What the run already holds, for a crawl that joins it."""

    done_domains: DigestSet = field(default_factory=DigestSet)  # domain_hash of answered ones
    # (MX host, IP) targets of stored domains still without a final verdict
    pending_targets: list[tuple[str, str]] = field(default_factory=list)
    # (IP, port, first SNI) whose first probe saw STARTTLS, versions not yet tried
    # (asked for only when the crawl runs with -a depth=protocols)
    pending_protocols: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Grant:
    """The coordinator's answer before a probe: the run's committed probes of the
    IP:port (id order), and whether this crawl may connect now."""

    committed: tuple[StoredProbe, ...]
    claimed: bool  # this crawl holds the IP:port: probe it
    held_by: int | None = None  # another live crawl holds it: ask again later


def run_coordinator(crawler: Any) -> RunCoordinator:
    """The crawl's one coordinator, shared by the spider, handlers and pipelines."""
    coordinator = getattr(crawler, "_mxcensus_run", None)
    if coordinator is None:
        coordinator = crawler._mxcensus_run = RunCoordinator(crawler)
    return coordinator


class RunCoordinator:
    def __init__(self, crawler: Any):
        self.crawler = crawler
        settings = crawler.settings
        self.url = settings.get("DATABASE_URL")
        self.lease = settings.getfloat("RUN_LEASE")
        self.heartbeat_interval = settings.getfloat("RUN_HEARTBEAT")
        self.retry_for = settings.getfloat("DATABASE_RETRY_FOR")
        if self.lease <= 0 or not 0 < self.heartbeat_interval < self.lease:
            raise ValueError("RUN_LEASE must be > 0 and 0 < RUN_HEARTBEAT < RUN_LEASE")
        self.engine: Engine | None = None
        self.run_id = self.crawl_id = 0
        self.resume = Resume()
        # The crawl's -a depth (known at open): what a resumed run must still do.
        self.protocols = self.policy = False
        self._held: dict[tuple[str, int], int] = {}  # ip:port -> probes not yet committed
        self._busy: dict[tuple[str, int], asyncio.Future[Any]] = {}  # an ask or release
        self._asks: dict[tuple[str, int], _Ask] = {}  # not yet sent
        self._flush_call: Any = None
        self._asking = False  # a batch of asks is in the database thread
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="mxcensus-run")
        self._heartbeat: Any = None
        self._opened: Any = None  # the Deferred of open(), shared by every caller

    # --- lifecycle -----------------------------------------------------------

    async def open(self, spider: Any) -> tuple[int, int]:
        """Open the run and this crawl's record once; later callers wait for it."""
        from twisted.internet import reactor

        if self._opened is None:
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
            d = self._in_thread_deferred(self._open, spider)
            d.addCallback(self._start_heartbeat)
            self._opened = deferred_to_future(d)  # an asyncio future: many may await it
        await self._opened
        return self.run_id, self.crawl_id

    async def reload_resume(self) -> None:
        """Load again what the run holds (rows replayed from a spool were added to it)."""
        await self._in_thread(self._reload_resume)

    def _reload_resume(self) -> None:
        assert self.engine is not None
        with self.engine.connect() as conn:
            self.resume = _load_resume(conn, self.run_id, self.protocols, self.policy)

    async def list_read(self, sha256: str) -> None:
        """A list fetched by URL is known only now: check it against the run's."""
        await self._in_thread(self._list_read, sha256)

    async def record(self, **values: Any) -> None:
        """Add facts learnt at start (e.g. whether the resolver validates) to the crawl's row."""
        await self._in_thread(self._record, values)

    def _record(self, values: dict[str, Any]) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(update(Crawl).where(Crawl.id == self.crawl_id).values(**values))

    def _start_heartbeat(self, result: Any) -> Any:
        from twisted.internet.task import LoopingCall

        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.start(self.heartbeat_interval, now=False)
        return result

    def _beat(self) -> Any:
        d = self._in_thread_deferred(self._write_heartbeat)
        d.addErrback(lambda f: logger.warning("heartbeat failed: %s", f.getErrorMessage()))
        return d

    async def close(self, status: str, reason: str, counts: dict[str, Any]) -> None:
        """Record how the crawl ended and give back its claims (all are committed or
        abandoned now: an abandoned one is free for the next crawl of the run)."""
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self.engine is None:
            return
        await self._in_thread(self._close, status, reason, counts)
        self.crawler.stats.set_value(STATUS_STAT, status)
        self._held.clear()
        self.engine.dispose()

    # --- claims --------------------------------------------------------------

    async def grant(
        self, ip: str, port: int, sni: str, first: bool, cap: int, protocols: bool = False
    ) -> Grant:
        """May this crawl probe IP:port with `sni` now?

        Not when the run has committed that probe already, or, for an IP's first
        probe, any probe of it (SNI is the name that first reached the IP), or
        `cap` probes of it; then the committed probes answer instead. With
        `protocols`, the ask is for the conversations pinned to each TLS version,
        not granted once the run holds them. Otherwise the IP:port is claimed for
        this crawl (or it waits for another's claim). Asks are gathered for a
        moment and answered together, in one transaction.
        """
        key = (ip, port)
        if self.engine is None:  # a handler used outside a crawl (its own tests): no run
            return Grant((), claimed=True)
        # One ask or release of an IP:port in flight at a time keeps `_held` and
        # the claims table in step.
        while (busy := self._busy.get(key)) is not None:
            await busy
        if key in self._held:  # nobody else has probed it since this crawl claimed it
            self._held[key] += 1
            if protocols and await self._in_thread(self._protocols_tried, key):
                # Held for an SNI probe of its own; another crawl tried the versions
                # before this one claimed the IP:port.
                self.done([key])
                return Grant((), claimed=False)
            return Grant((), claimed=True)
        answer = self._busy[key] = asyncio.get_running_loop().create_future()
        self._asks[key] = _Ask(sni, first, cap, protocols)
        self._schedule_flush()
        return await answer

    def done(self, keys: Iterable[tuple[str, int]]) -> None:
        """Probes of these IP:ports are committed: release the claims no longer needed."""
        released = []
        for key in keys:
            left = self._held.get(key)
            if left is None:
                continue
            if left <= 1:
                del self._held[key]
                released.append(key)
            else:
                self._held[key] = left - 1
        if not released or self.engine is None:
            return
        loop = asyncio.get_running_loop()
        for key in released:
            self._busy[key] = loop.create_future()
        d = self._in_thread_deferred(self._release, released)
        d.addErrback(lambda f: logger.warning("releasing claims: %s", f.getErrorMessage()))
        d.addBoth(lambda _: self._free(released))

    def _free(self, keys: Iterable[tuple[str, int]]) -> None:
        for key in keys:
            busy = self._busy.pop(key, None)
            if busy is not None and not busy.done():
                busy.set_result(None)

    def _schedule_flush(self, gather: float = 0.0) -> None:
        """One batch in flight at a time: asks made meanwhile gather for the next one,
        so batches grow with the load and an ask on an idle crawl goes at once."""
        from twisted.internet import reactor

        if self._flush_call is None and not self._asking:
            self._flush_call = reactor.callLater(gather, self._flush_asks)

    def _flush_asks(self) -> None:
        self._flush_call = None
        asks = dict(list(self._asks.items())[:ASK_BATCH])
        for key in asks:
            del self._asks[key]
        if not asks:
            return
        self._asking = True
        self.crawler.stats.inc_value("mxcensus/run/claim_batches")
        self.crawler.stats.inc_value("mxcensus/run/claim_asks", len(asks))
        d = self._in_thread_deferred(self._grant_many, asks)
        d.addCallbacks(self._granted, self._grant_failed, errbackArgs=(asks,))
        d.addBoth(self._next_batch)

    def _next_batch(self, _: Any) -> None:
        self._asking = False
        if self._asks:
            self._schedule_flush(ASK_GATHER)

    def _granted(self, grants: dict[tuple[str, int], Grant]) -> None:
        for key, granted in grants.items():
            if granted.claimed:
                self._held[key] = 1
            answer = self._busy.pop(key)
            answer.set_result(granted)

    def _grant_failed(self, failure: Any, asks: dict[tuple[str, int], Any]) -> None:
        for key in asks:
            answer = self._busy.pop(key)
            answer.set_exception(failure.value)

    # --- the database thread ---------------------------------------------------

    def _in_thread_deferred(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` on the coordinator's thread, tried again on transient errors."""
        from twisted.internet import reactor

        return deferToThreadPool(
            reactor, self._pool, retrying, fn, *args, retry_for=self.retry_for, on_retry=_warn
        )

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await maybe_deferred_to_future(self._in_thread_deferred(fn, *args))

    def _open(self, spider: Any) -> None:
        self.engine = engine_for(self.url)
        upgrade(self.engine)  # an older database is migrated, never recreated
        settings = self.crawler.settings
        name = spider.run_name or spider.new_run_name()
        record = {
            "versions": versions(settings),
            "settings": settings_record(settings),
            "shard": "/".join(map(str, spider.shard)) if spider.shard else None,
            "source_sha256": spider.list_sha256,
            "depth": ",".join(sorted(spider.depth)),
        }
        with self.engine.begin() as conn:
            conn.execute(
                insert_ignore(self.engine, Run.__table__), [{"name": name, "created_at": _now()}]
            )
            self.run_id = conn.execute(select(Run.id).where(Run.name == name)).scalar_one()
            if conn.dialect.name == "postgresql":
                # Two crawls joining one run at once check against each other in turn.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.run_id})
            _check_compatible(conn, self.run_id, record)
            self.crawl_id = conn.execute(
                Crawl.__table__.insert().values(heartbeat_at=_clock(conn)).returning(Crawl.id),
                {
                    **record,
                    "run_id": self.run_id,
                    "label": spider.label,
                    "source": spider.source,
                    "started_at": _now(),
                    "status": "running",
                    "job": getattr(spider, "_job", None),
                    "node": socket.getfqdn(),
                },
            ).scalar_one()
            self.protocols, self.policy = spider.protocols, spider.policy_depth
            self.resume = _load_resume(conn, self.run_id, self.protocols, self.policy)
        resume = self.resume
        if resume.done_domains or resume.pending_targets or resume.pending_protocols:
            logger.info(
                "run %s resumed: %d domains already answered, %d targets to finish, "
                "%d IPs whose TLS versions are still to try",
                name,
                len(resume.done_domains),
                len(resume.pending_targets),
                len(resume.pending_protocols),
            )

    def _write_heartbeat(self) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(
                update(Crawl).where(Crawl.id == self.crawl_id).values(heartbeat_at=_clock(conn))
            )

    def _close(self, status: str, reason: str, counts: dict[str, Any]) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.execute(delete(Claim).where(Claim.crawl_id == self.crawl_id))
            conn.execute(
                update(Crawl)
                .where(Crawl.id == self.crawl_id)
                .values(status=status, finish_reason=reason, finished_at=_now(), counts=counts)
            )

    def _list_read(self, sha256: str) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self.run_id})
            earlier = conn.execute(
                select(Crawl.source_sha256).where(
                    Crawl.run_id == self.run_id,
                    Crawl.id != self.crawl_id,
                    Crawl.source_sha256.is_not(None),
                )
            ).first()
            if earlier is not None and earlier[0] != sha256:
                raise UsageError(
                    f"this crawl cannot join the run: its list (sha256 {sha256[:12]}…) is not "
                    f"the run's ({earlier[0][:12]}…); use the same list, or start a new run"
                )
            conn.execute(
                update(Crawl).where(Crawl.id == self.crawl_id).values(source_sha256=sha256)
            )

    def _grant_many(self, asks: dict[tuple[str, int], _Ask]) -> dict[tuple[str, int], Grant]:
        """Claim every asked IP:port that is free or whose crawl died, then read the
        run's committed probes of them: an ask they answer gives its claim back."""
        assert self.engine is not None
        keys = sorted(asks)  # one order for every crawl: no deadlock between them
        with self.engine.begin() as conn:
            holders = self._claim(conn, keys)
            probe_keys = [key for key in keys if not asks[key].protocols]
            committed = _stored_probes(conn, self.run_id, probe_keys) if probe_keys else {}
            protocol_keys = [key for key in keys if asks[key].protocols]
            tried = _tried_protocols(conn, self.run_id, protocol_keys) if protocol_keys else set()
            grants, answered = {}, []
            for key in keys:
                ask = asks[key]
                probes = committed.get(key, ())
                done = key in tried if ask.protocols else _answered(probes, ask)
                if done:
                    grants[key] = Grant(probes, claimed=False)
                    if holders[key] == self.crawl_id:
                        answered.append(key)
                elif holders[key] == self.crawl_id:
                    grants[key] = Grant(probes, claimed=True)
                else:
                    grants[key] = Grant(probes, claimed=False, held_by=holders[key])
            self._delete_claims(conn, answered)
        return grants

    def _protocols_tried(self, key: tuple[str, int]) -> bool:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return key in _tried_protocols(conn, self.run_id, [key])

    def _claim(self, conn: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Insert the claims that are absent, take over those of crawls whose lease
        lapsed; returns the crawl that holds each IP:port now (0: none could be
        read, as when another crawl released it between the insert and the look)."""
        holders: dict[tuple[str, int], int] = {}
        missing = keys
        for _ in range(3):  # a claim released meanwhile is free: insert it again
            holders |= self._claim_once(conn, missing)
            missing = [key for key in missing if key not in holders]
            if not missing:
                break
        return {key: holders.get(key, 0) for key in keys}

    def _claim_once(
        self, conn: Connection, keys: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        now = _now()
        rows = [
            {
                "run_id": self.run_id,
                "ip": ip,
                "port": port,
                "crawl_id": self.crawl_id,
                "claimed_at": now,
            }
            for ip, port in keys
        ]
        statement = insert_ignore(self.engine, Claim.__table__)
        if conn.dialect.insert_executemany_returning:
            # The claims inserted come back: only the others need looking up.
            inserted = conn.execute(statement.returning(Claim.ip, Claim.port), rows)
            holders = {(ip, port): self.crawl_id for ip, port in inserted}
            if len(holders) < len(keys):
                holders |= self._holders(conn, [key for key in keys if key not in holders])
        else:
            conn.execute(statement, rows)
            holders = self._holders(conn, keys)
        others = [key for key, crawl in holders.items() if crawl != self.crawl_id]
        if not others:  # the usual case: nobody else had any of them
            return holders
        stale = _clock(conn) - timedelta(seconds=self.lease)
        dead = select(Crawl.id).where(or_(Crawl.status != "running", Crawl.heartbeat_at < stale))
        taken = conn.execute(
            update(Claim)
            .where(Claim.run_id == self.run_id, _these(Claim, others))
            .where(Claim.crawl_id != self.crawl_id, Claim.crawl_id.in_(dead))
            .values(crawl_id=self.crawl_id, claimed_at=now)
        )
        return holders | self._holders(conn, others) if taken.rowcount else holders

    def _holders(self, conn: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The crawl holding each of these IP:ports (absent: no claim)."""
        rows = conn.execute(
            select(Claim.ip, Claim.port, Claim.crawl_id).where(
                Claim.run_id == self.run_id, _these(Claim, keys)
            )
        )
        return {(ip, port): crawl_id for ip, port, crawl_id in rows}

    def _release(self, keys: list[tuple[str, int]]) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            self._delete_claims(conn, sorted(keys))

    def _delete_claims(self, conn: Connection, keys: list[tuple[str, int]]) -> None:
        if keys:
            conn.execute(
                delete(Claim).where(
                    Claim.run_id == self.run_id,
                    _these(Claim, keys),
                    Claim.crawl_id == self.crawl_id,
                )
            )


def _these(table: Any, keys: list[tuple[str, int]]) -> Any:
    """Rows of these IP:ports. The IP list lets SQLite search the (run_id, ip, …) index:
    with a row-value IN alone it scans every row of the run, in each batch."""
    ips = sorted({ip for ip, _ in keys})
    return and_(table.ip.in_(ips), tuple_(table.ip, table.port).in_(keys))


def _warn(error: Exception, wait: float) -> None:
    logger.warning("database unavailable, retrying in %g s: %s", wait, first_line(error))


@dataclass(frozen=True, slots=True)
class _Ask:
    """What a request asks of the run before connecting to an IP:port."""

    sni: str
    first: bool  # the IP's first probe: any committed probe answers it
    cap: int  # SMTP_SNI_PROBES
    protocols: bool = False  # the conversations pinned to each TLS version


def _answered(committed: tuple[StoredProbe, ...], ask: _Ask) -> bool:
    """Whether the committed probes already answer for this request."""
    snis = {p.sni for p in committed}
    return ask.sni in snis or (ask.first and bool(snis)) or len(snis) >= ask.cap


def _tried_protocols(
    conn: Connection, run_id: int, keys: list[tuple[str, int]]
) -> set[tuple[str, int]]:
    """The IP:ports whose protocol conversations the run has committed."""
    rows = conn.execute(
        select(ProtocolProbe.ip, ProtocolProbe.port)
        .where(ProtocolProbe.run_id == run_id, _these(ProtocolProbe, keys))
        .distinct()
    )
    return {(ip, port) for ip, port in rows}


def _stored_probes(
    conn: Connection, run_id: int, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[StoredProbe, ...]]:
    """The run's committed probes of these IP:ports, each in the order they were made."""
    rows = conn.execute(
        select(
            Probe.ip,
            Probe.port,
            Probe.sni,
            Probe.wire_outcome,
            Probe.error,
            Probe.error_stage,
            Probe.chain_reasons,
            Probe.verify_error,
            Probe.cert_parse_error,
            Probe.leaf_names,
        )
        .where(Probe.run_id == run_id, _these(Probe, keys))
        .order_by(Probe.id)
    )
    found: dict[tuple[str, int], list[StoredProbe]] = {}
    for r in rows:
        found.setdefault((r.ip, r.port), []).append(
            StoredProbe(
                r.ip,
                r.port,
                r.sni,
                r.wire_outcome,
                r.error,
                r.error_stage,
                tuple(r.chain_reasons.split(",")) if r.chain_reasons else (),
                r.verify_error,
                r.cert_parse_error,
                tuple(r.leaf_names or ()),
            )
        )
    return {key: tuple(probes) for key, probes in found.items()}


def _load_resume(conn: Connection, run_id: int, protocols: bool, policy: bool) -> Resume:
    resume = Resume()
    answered = select(Domain.domain).where(
        Domain.run_id == run_id, Domain.status.not_in(RETRIED_STATUSES)
    )
    if policy:
        # With -a depth=policy every answered domain gets its policy row: one without
        # (a crawl killed between the two) is asked again, its probes answered by the run.
        answered = answered.where(
            select(DomainPolicy.domain)
            .where(DomainPolicy.run_id == Domain.run_id, DomainPolicy.domain == Domain.domain)
            .exists()
        )
    answered = conn.execute(answered)
    resume.done_domains = DigestSet(domain_hash(d) for (d,) in answered)
    # A target is final when judged by its own SNI's probe, or flagged, or any
    # verdict that a certificate's names cannot change.
    unjudged = conn.execute(
        select(MxAddress.mx_host, MxAddress.ip)
        .outerjoin(
            Target,
            and_(
                Target.run_id == MxAddress.run_id,
                Target.mx_host == MxAddress.mx_host,
                Target.ip == MxAddress.ip,
            ),
        )
        .where(
            MxAddress.run_id == run_id,
            MxAddress.skip_reason.is_(None),
            or_(
                Target.mx_host.is_(None),
                and_(
                    Target.sni != Target.mx_host,
                    Target.flags.is_(None),
                    func.coalesce(Target.reasons, "").like("%hostname_mismatch%"),
                ),
            ),
        )
        .order_by(MxAddress.ip, MxAddress.mx_host)
    )
    resume.pending_targets = [(host, ip) for host, ip in unjudged]
    if protocols:
        resume.pending_protocols = _untried_protocols(conn, run_id)
    return resume


def _untried_protocols(conn: Connection, run_id: int) -> list[tuple[str, int, str]]:
    """IP:ports whose first probe (the lowest id) saw STARTTLS advertised and whose
    versions the run has not tried: a crawl killed between the two."""
    first = (
        select(func.min(Probe.id).label("id"))
        .where(Probe.run_id == run_id)
        .group_by(Probe.ip, Probe.port)
        .subquery()
    )
    tried = select(ProtocolProbe.ip).where(
        ProtocolProbe.run_id == run_id,
        ProtocolProbe.ip == Probe.ip,
        ProtocolProbe.port == Probe.port,
    )
    rows = conn.execute(
        select(Probe.ip, Probe.port, Probe.sni)
        .join(first, Probe.id == first.c.id)
        .where(Probe.wire_outcome.in_(("tls", "failure")), ~tried.exists())
        .order_by(Probe.ip, Probe.port)
    )
    return [(ip, port, sni) for ip, port, sni in rows]


# What a crawl joining a run must share with the run's earlier crawls.
def _compatibility(record: dict[str, Any]) -> dict[str, Any]:
    versions_, settings = record["versions"], record["settings"]
    shard = record["shard"]
    return {
        "mxcensus version": versions_.get("mxcensus"),
        "trust store (TLS_CA_BUNDLE)": (versions_.get("trust_store") or {}).get("sha256"),
        "SMTP_IPV6": settings.get("SMTP_IPV6"),
        "SMTP_PORT": settings.get("SMTP_PORT"),
        "SMTP_SNI_PROBES": settings.get("SMTP_SNI_PROBES"),
        "shard count": int(shard.split("/")[1]) if shard else None,
        "list (sha256)": record["source_sha256"],
        # A run's facts are one depth: a shard without protocols would leave holes.
        "depth (-a depth=)": record["depth"],
    }


def _check_compatible(conn: Connection, run_id: int, record: dict[str, Any]) -> None:
    """Refuse, in one line, a crawl that would mix incomparable facts into the run."""
    earlier = conn.execute(
        select(Crawl.versions, Crawl.settings, Crawl.shard, Crawl.source_sha256, Crawl.depth)
        .where(Crawl.run_id == run_id)
        .order_by(Crawl.id)
        .limit(1)
    ).first()
    if earlier is None:
        return
    theirs = _compatibility(
        {
            "versions": earlier.versions or {},
            "settings": earlier.settings or {},
            "shard": earlier.shard,
            "source_sha256": earlier.source_sha256,
            "depth": earlier.depth,
        }
    )
    for what, mine in _compatibility(record).items():
        known = what == "shard count" or (theirs[what] is not None and mine is not None)
        if known and theirs[what] != mine:
            raise UsageError(
                f"this crawl cannot join the run: its {what} is {mine!r}, the run's is "
                f"{theirs[what]!r}; use the same, or start a new run (-a run=OTHER)"
            )


def file_sha256(path: str | Path) -> str:
    """The list's identity, hashed before the crawl so that shards can be compared."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
