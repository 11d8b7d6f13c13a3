"""Store items in SQL: batched, off the reactor thread, flushed on close, never lost.

Rows are buffered per table and written by one worker thread in short
transactions, so a slow database never stalls the reactor into false
timeouts. Several crawls of one run may write the same facts at once, so every
batch is written in one global order (tables in `MERGES` order, rows by key):
two writers never wait on each other in a cycle, so PostgreSQL never deadlocks
them. A transient database error (deadlock, serialization failure, a dropped
connection, a failover) is retried with backoff for `DATABASE_RETRY_FOR`
seconds; a batch that still cannot be written fails the crawl (exit 1), never
silently. How each table takes a fact another crawl wrote first is declared
once, in `MERGES`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from sqlalchemy import Engine, Table, text
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from crawler.coordination import STATUS_STAT, run_coordinator
from crawler.items import DomainItem, ProbeItem, ProtocolsItem, StoredProbesItem, TargetsItem
from crawler.policy import DomainPolicyItem
from crawler.recent import RecentSet
from pipelines.certinfo import describe, sha256_hex
from pipelines.dane import judge_run
from pipelines.rows import (
    Rows,
    domain_rows,
    policy_rows,
    probe_rows,
    protocol_rows,
    target_rows,
)
from pipelines.spool import append, batches, spool_path, spooled
from schema.db import engine_for, first_line, merge_statement, retrying
from schema.models import Base

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Merge:
    """A table's natural key, and when a row another crawl wrote first gives way
    (an SQL condition over `excluded` and the table); None: the first one stays."""

    key: tuple[str, ...]
    better: str | None = None
    in_key_order: bool = True  # False: rows keep the order they were made in


def _rank(row: str) -> str:
    """How far a probe got: an answered probe never loses to a lesser one."""
    return (
        f"CASE {row}.wire_outcome WHEN 'tls' THEN 3 WHEN 'none' THEN 2 "
        "WHEN 'failure' THEN 2 ELSE 1 END"
    )


_FAILED_DNS = "('dns_timeout', 'servfail', 'timeout')"
# Written in this order, each batch's rows sorted by key (see the module's docstring).
MERGES: dict[str, Merge] = {
    "certificates": Merge(("sha256",)),
    # An answer beats a failed lookup (a timeout or SERVFAIL is asked again).
    "domains": Merge(
        ("run_id", "domain"),
        f"domains.status IN {_FAILED_DNS} AND excluded.status NOT IN {_FAILED_DNS}",
    ),
    "mx_hosts": Merge(
        ("run_id", "name"),
        f"mx_hosts.dns_outcome IN {_FAILED_DNS} AND excluded.dns_outcome NOT IN {_FAILED_DNS}",
    ),
    "mx_records": Merge(("run_id", "mx_host", "domain")),
    "mx_addresses": Merge(("run_id", "mx_host", "ip")),
    # Probes keep the order they were made in: an IP's first probe has the lowest id
    # (the first TLS session of ip_results). Claims keep two crawls off one key.
    "probes": Merge(
        ("run_id", "ip", "port", "sni"),
        f"{_rank('excluded')} > {_rank('probes')}",
        in_key_order=False,
    ),
    # A verdict by the target's own SNI beats one by another name's certificate;
    # past the SNI cap, the flagged verdict beats the unflagged one of the same probe.
    "targets": Merge(
        ("run_id", "mx_host", "ip"),
        "(excluded.sni = excluded.mx_host AND targets.sni <> targets.mx_host)"
        " OR (excluded.sni = targets.sni AND excluded.flags IS NOT NULL"
        " AND targets.flags IS NULL)",
    ),
    # One crawl at a time holds an IP:port's claim, so a second writer is rare (a
    # crawl killed between commit and release): the first stays.
    "protocol_probes": Merge(("run_id", "ip", "port", "version")),
    # -a depth=policy (pipelines/dane.py writes target_dane itself, on close).
    "domain_policies": Merge(("run_id", "domain")),
}
# How a crawl ended, from Scrapy's finish reason; anything unforeseen (e.g. the
# list could not be read) is a failure.
CRAWL_STATUS = {"finished": "finished", "shutdown": "interrupted"}
BACKLOG_BATCHES = 20  # batches queued for the writer before process_item waits


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


class StorePipeline:
    def __init__(self, crawler: Any):
        self.crawler = crawler
        settings = crawler.settings
        self.url = settings.get("DATABASE_URL")
        self.batch_size = settings.getint("DATABASE_BATCH_SIZE")
        self.flush_interval = settings.getfloat("DATABASE_FLUSH_INTERVAL")
        self.retry_for = settings.getfloat("DATABASE_RETRY_FOR")
        self.spool_dir = settings.get("DATABASE_SPOOL_DIR") or "."
        self.engine: Engine | None = None
        self.run = run_coordinator(crawler)
        self.run_id = self.crawl_id = 0
        self.lost = 0  # batches that could not be written
        self._closing = False
        self._buffer: Rows = defaultdict(list)
        self._buffered = 0
        # Per table, keys of shared rows written lately: a provider's MX hosts, addresses
        # and certificates recur on every customer. Bounded; the INSERT ignores a repeat.
        remembered = settings.getint("DATABASE_DEDUP_CACHE")
        self._seen: dict[str, RecentSet[Any]] = defaultdict(lambda: RecentSet(remembered))
        self._writing: Any = None  # the Deferred chain of the writes in order
        self._queued = 0  # batches handed to the writer and not yet written
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="mxcensus-store")
        self._timer: Any = None
        self._ending: Any = None  # the Deferred recording the crawl's end, once started
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> StorePipeline:
        return cls(crawler)

    # --- lifecycle -----------------------------------------------------------

    async def open_spider(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.task import LoopingCall

        self._pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        # A second Ctrl-C stops the reactor at once, before the spider closes: what is
        # buffered is still written and the crawl recorded, never left `running`.
        reactor.addSystemEventTrigger("before", "shutdown", self._forced_stop)
        self.run_id, self.crawl_id = await self.run.open(self.crawler.spider)
        self.engine = engine_for(self.url)
        try:
            if await self._in_thread(self._replay):
                await self.run.reload_resume()  # the replayed rows count as done
        except (SQLAlchemyError, OSError) as e:  # kept for the next crawl; this one goes on
            logger.error("could not replay the run's spool: %s", first_line(e))
        logger.info(
            "storing run %s (crawl %s) in %s",
            self.run_id,
            self.crawl_id,
            self.engine.url.render_as_string(hide_password=True),
        )
        self._timer = LoopingCall(self._flush)
        self._timer.start(self.flush_interval, now=False)

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, DomainItem):
            self._add(domain_rows(item, self.run_id, self.crawl_id))
        elif isinstance(item, ProbeItem):
            self._add(probe_rows(item, self.run_id, self.crawl_id))
            self._add({"certificates": self._new_certificates(item)})
        elif isinstance(item, StoredProbesItem | TargetsItem):
            self._add({"targets": target_rows(item.verdicts, self.run_id)})
        elif isinstance(item, ProtocolsItem):
            self._add(protocol_rows(item, self.run_id, self.crawl_id))
        elif isinstance(item, DomainPolicyItem):
            self._add(policy_rows(item, self.run_id, self.crawl_id))
        if self._buffered >= self.batch_size:
            self._flush()
        if self._queued >= BACKLOG_BATCHES:
            # The database is behind: let the writer catch up before taking more.
            await maybe_deferred_to_future(self._writing)
        return item

    async def close_spider(self) -> None:
        self._closing = True
        if self._timer and self._timer.running:
            self._timer.stop()
        await maybe_deferred_to_future(self._flush())
        if getattr(self.crawler.spider, "policy_depth", False) and self.engine and not self.lost:
            await self._judge_dane()

    async def _judge_dane(self) -> None:
        """DANE verdicts from the run's stored facts, once this crawl's are in."""

        def judge() -> int:
            return retrying(
                judge_run,
                self.engine,
                self.run_id,
                retry_for=self.retry_for,
                on_retry=self._retrying,
            )

        try:
            judged = await self._in_thread(judge)
        except Exception as e:
            # Nothing to spool: the verdicts follow from stored facts, and the run's next
            # crawl judges the whole run again.
            self.lost += 1
            self.crawler.stats.inc_value("mxcensus/store/lost_batches")
            logger.error(
                "could not write the DANE verdicts to %s: %s; the crawl is failed. The same "
                "command with -a run=RUN judges them again",
                self._shown_url(),
                first_line(e),
            )
            return
        self.crawler.stats.set_value("mxcensus/dane/targets", judged)

    async def spider_closed(self, spider: Any, reason: str) -> None:
        """Record how the crawl ended (the reason is known only now)."""
        if self.engine is None or self._ending is not None:
            return
        status = CRAWL_STATUS.get(reason, "interrupted" if "closespider" in reason else "failed")
        self._ending = deferred_from_coro(self._record_end(status, reason, analyze=True))
        await maybe_deferred_to_future(self._ending)

    def _forced_stop(self) -> Any:
        """Before the reactor stops: the crawl's end is recorded, or being recorded."""
        if self.engine is None:
            return None
        if self._ending is None:  # the reactor stops before the spider closed
            logger.warning("stopping at once: writing what is buffered, then the crawl's record")
            self._ending = deferred_from_coro(self._record_end("interrupted", "forced_shutdown"))
        waited: Any = Deferred()
        self._ending.addBoth(lambda result: (waited.callback(None), result)[1])
        return waited

    async def _record_end(self, status: str, reason: str, analyze: bool = False) -> None:
        assert self.engine is not None
        if not self._closing:  # close_spider never ran
            await self.close_spider()
        # A lost batch, or a request that failed (its targets stay unjudged): the
        # run is not whole. Run the same command again to finish it.
        if self.lost or self.crawler.stats.get_value("mxcensus/requests/failed"):
            status = "failed"
        try:
            await self.run.close(status, reason, self._counts(self.crawler.spider))
        except SQLAlchemyError as e:  # the database is gone or full: say so, in one line
            logger.error(
                "could not record the crawl's end (%s) in %s: %s; it shows as `running` there "
                "until RUN_LEASE lapses, then as dead (scrapy summary)",
                status,
                self._shown_url(),
                first_line(e),
            )
            self.crawler.stats.set_value(STATUS_STAT, "failed")
            analyze = False
        if analyze:
            try:
                await self._in_thread(self._analyze)
            except Exception as e:  # statistics only speed up the views
                logger.warning("ANALYZE failed: %s", e)
        self.engine.dispose()

    # --- buffering -----------------------------------------------------------

    def _add(self, rows: Rows) -> None:
        for table, table_rows in rows.items():
            for row in table_rows:
                key = self._dedup_key(table, row)
                if key is not None and not self._seen[table].add(key):
                    continue
                self._buffer[table].append(row)
                self._buffered += 1

    @staticmethod
    def _dedup_key(table: str, row: dict[str, Any]) -> Any:
        if table == "mx_hosts":  # a failed lookup may be followed by an answer
            return row["name"], row["dns_outcome"]
        if table == "mx_addresses":
            return row["mx_host"], row["ip"]
        if table == "certificates":
            return row["sha256"]
        return None

    def _new_certificates(self, item: ProbeItem) -> list[dict[str, Any]]:
        tls = item.probe.final.tls
        if tls is None:
            return []
        seen = self._seen["certificates"]
        # Parse only certificates not yet stored: a provider's chain repeats on every IP.
        return [describe(der) for der in tls.chain_der if sha256_hex(der) not in seen]

    def _flush(self) -> Any:
        """Hand the buffered rows to the writer thread; returns the write's Deferred."""
        from twisted.internet.defer import succeed

        if not self._buffered:
            return self._writing or succeed(None)
        batch, self._buffer, self._buffered = self._buffer, defaultdict(list), 0
        previous = self._writing

        def write(_: Any = None) -> Any:
            return self._in_thread_deferred(self._write_or_spool, batch)

        def written(result: Any) -> Any:
            self._queued -= 1
            return result

        def committed(written_to_database: bool) -> None:
            # The run may now see these probes as done: their claims can go. An IP:port's
            # protocol conversations were one grant, however many versions.
            if written_to_database:
                self.run.done((row["ip"], row["port"]) for row in batch.get("probes", ()))
                protocols = batch.get("protocol_probes", ())
                self.run.done({(row["ip"], row["port"]) for row in protocols})

        # Writes stay in order: each waits for the one before it.
        self._queued += 1
        self._writing = previous.addCallback(write) if previous else write()
        self._writing.addCallbacks(committed, self._write_failed, errbackArgs=(batch,))
        self._writing.addBoth(written)
        return self._writing

    def _write_failed(self, failure: Any, batch: Rows) -> None:
        rows = sum(len(r) for r in batch.values())
        self.lost += 1
        self.crawler.stats.inc_value("mxcensus/store/lost_batches")
        kept = self._spool(batch)
        logger.error(
            "could not write %d rows to %s: %s; the crawl is failed. %s",
            rows,
            self._shown_url(),
            failure.getErrorMessage().splitlines()[0],
            f"The rows are kept in {kept}: the same command with -a run=RUN (scrapy summary "
            "names it) replays them first, once the database can be written"
            if kept
            else "The rows are lost",
        )
        if not self._closing:  # nothing more can be stored: stop probing now
            self._closing = True
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="database_failed"))

    # --- the writer thread ---------------------------------------------------

    def _in_thread_deferred(self, fn: Any, *args: Any) -> Any:
        from twisted.internet import reactor

        return deferToThreadPool(reactor, self._pool, fn, *args)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await maybe_deferred_to_future(self._in_thread_deferred(fn, *args))

    def _write(self, batch: Rows) -> None:
        """Write one batch in one transaction, retrying what a database may recover from."""
        assert self.engine is not None
        retrying(self._write_once, batch, retry_for=self.retry_for, on_retry=self._retrying)

    def _write_or_spool(self, batch: Rows) -> bool:
        """True when written; once the database is lost, later batches go straight to the
        spool (each would otherwise wait DATABASE_RETRY_FOR in turn)."""
        if self.lost:
            self._spool(batch)
            return False
        self._write(batch)
        return True

    # --- the spool: rows kept when the database is lost ------------------------

    def _spool(self, batch: Rows) -> Path | None:
        """Keep a batch the database would not take; the file, or None if it cannot be."""
        path = spool_path(self.spool_dir, self.url, self.run_id, self.crawl_id)
        rows = sum(len(r) for r in batch.values())
        try:
            append(path, batch)
        except OSError as e:
            logger.error("could not keep %d rows in %s either: %s", rows, path, e.strerror or e)
            self.crawler.stats.inc_value("mxcensus/store/lost_rows", rows)
            return None
        self.crawler.stats.inc_value("mxcensus/store/spooled_rows", rows)
        return path

    def _replay(self) -> int:
        """Write what earlier crawls of the run spooled, oldest first; returns the rows.
        A file goes once all of it is written."""
        replayed = 0
        for path in spooled(self.spool_dir, self.url, self.run_id):
            rows = 0
            for batch in batches(path):
                self._write(batch)
                rows += sum(len(r) for r in batch.values())
            path.unlink()
            logger.info("replayed %d rows from %s", rows, path)
            replayed += rows
        return replayed

    def _shown_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True) if self.engine else self.url

    def _write_once(self, batch: Rows) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            for name, merge in MERGES.items():
                if batch.get(name):
                    rows = _one_per_key(batch[name], merge.key, merge.in_key_order)
                    statement = merge_statement(self.engine, _table(name), merge.key, merge.better)
                    conn.execute(statement, rows)

    def _retrying(self, error: Exception, wait: float) -> None:
        self.crawler.stats.inc_value("mxcensus/store/retried_batches")
        logger.warning("database write failed, retrying in %g s: %s", wait, first_line(error))

    def _analyze(self) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            # Fresh statistics let the views' joins use the indexes at any size.
            conn.execute(text("ANALYZE"))

    def _counts(self, spider: Any) -> dict[str, Any]:
        stats = self.crawler.stats.get_stats()
        counts = {
            k.removeprefix("mxcensus/"): v for k, v in stats.items() if k.startswith("mxcensus/")
        }
        domain_list = getattr(spider, "domain_list", None)
        if domain_list is not None:
            counts["list"] = domain_list.stats.as_dict()
        return counts


def _one_per_key(
    rows: list[dict[str, Any]], key: tuple[str, ...], in_key_order: bool
) -> list[dict[str, Any]]:
    """One row per key (PostgreSQL will not update a row twice in one statement;
    a crawl's later row is its better one), sorted so writers lock in one order."""
    latest = {tuple(row[k] for k in key): row for row in rows}
    return [latest[k] for k in sorted(latest)] if in_key_order else list(latest.values())
