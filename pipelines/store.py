"""Store items in SQL: batched, off the reactor thread, flushed on close.

Rows are buffered per table and written by one worker thread in short
transactions, so a slow database never stalls the reactor into false
timeouts. Facts shared by many domains (MX hosts, addresses, certificates)
are written once per crawl here and once per run by ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from scrapy import signals
from scrapy.utils.defer import maybe_deferred_to_future
from sqlalchemy import Engine, Table, select, text, update
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from crawler.items import DomainItem, ProbeItem
from pipelines.certinfo import describe, sha256_hex
from pipelines.record import settings_record, versions
from pipelines.rows import Rows, domain_rows, probe_rows
from schema.db import engine_for, insert_ignore, upsert
from schema.models import Base, Crawl, Run
from schema.views import create_views

logger = logging.getLogger(__name__)

TABLES = ("domains", "mx_records", "mx_hosts", "mx_addresses", "certificates")
# Re-judged or re-made facts, by their natural key: the last one wins, so a
# target's verdict and the probe it names always come from the same crawl.
REPLACED = {
    "probes": ["run_id", "ip", "port", "sni"],
    "targets": ["run_id", "mx_host", "ip"],
}
# How a crawl ended, from Scrapy's finish reason; anything unforeseen (e.g. the
# list could not be read) is a failure.
CRAWL_STATUS = {"finished": "finished", "shutdown": "interrupted"}
BACKLOG_BATCHES = 20  # batches queued for the writer before process_item waits


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _now() -> datetime:
    return datetime.now(UTC)


class StorePipeline:
    def __init__(self, crawler: Any):
        self.crawler = crawler
        settings = crawler.settings
        self.url = settings.get("DATABASE_URL")
        self.batch_size = settings.getint("DATABASE_BATCH_SIZE")
        self.flush_interval = settings.getfloat("DATABASE_FLUSH_INTERVAL")
        self.engine: Engine | None = None
        self.run_id = self.crawl_id = 0
        self._buffer: Rows = defaultdict(list)
        self._buffered = 0
        self._seen: dict[str, set[Any]] = defaultdict(set)  # per table: keys written this crawl
        self._writing: Any = None  # the Deferred chain of the writes in order
        self._queued = 0  # batches handed to the writer and not yet written
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="mxcensus-store")
        self._timer: Any = None
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
        spider = self.crawler.spider
        self.engine = engine_for(self.url)
        self.run_id, self.crawl_id = await self._in_thread(self._open_run, spider)
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
        if self._buffered >= self.batch_size:
            self._flush()
        if self._queued >= BACKLOG_BATCHES:
            # The database is behind: let the writer catch up before taking more.
            await maybe_deferred_to_future(self._writing)
        return item

    async def close_spider(self) -> None:
        if self._timer and self._timer.running:
            self._timer.stop()
        await maybe_deferred_to_future(self._flush())

    async def spider_closed(self, spider: Any, reason: str) -> None:
        """Record how the crawl ended (the reason is known only now)."""
        if self.engine is None:
            return
        status = CRAWL_STATUS.get(reason, "interrupted" if "closespider" in reason else "failed")
        counts = self._counts(spider)
        await self._in_thread(self._close_crawl, status, reason, counts)
        self.engine.dispose()

    # --- buffering -----------------------------------------------------------

    def _add(self, rows: Rows) -> None:
        for table, table_rows in rows.items():
            for row in table_rows:
                key = self._dedup_key(table, row)
                if key is not None:
                    if key in self._seen[table]:
                        continue
                    self._seen[table].add(key)
                self._buffer[table].append(row)
                self._buffered += 1

    @staticmethod
    def _dedup_key(table: str, row: dict[str, Any]) -> Any:
        if table == "mx_hosts":
            return row["name"]
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
            return self._in_thread_deferred(self._write, batch)

        def written(result: Any) -> Any:
            self._queued -= 1
            return result

        # Writes stay in order: each waits for the one before it.
        self._queued += 1
        self._writing = previous.addCallback(write) if previous else write()
        self._writing.addErrback(self._write_failed, batch)
        self._writing.addBoth(written)
        return self._writing

    def _write_failed(self, failure: Any, batch: Rows) -> None:
        logger.error("writing to %s failed: %s", self.url, failure.getTraceback())
        self.crawler.stats.inc_value("mxcensus/store/failed_batches")
        # Shared facts of a lost batch were never stored: let a later item bring them.
        for table, rows in batch.items():
            for row in rows:
                self._seen[table].discard(self._dedup_key(table, row))

    # --- the writer thread ---------------------------------------------------

    def _in_thread_deferred(self, fn: Any, *args: Any) -> Any:
        from twisted.internet import reactor

        return deferToThreadPool(reactor, self._pool, fn, *args)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await maybe_deferred_to_future(self._in_thread_deferred(fn, *args))

    def _write(self, batch: Rows) -> None:
        assert self.engine is not None
        with self.engine.begin() as conn:
            for name in TABLES:
                if batch.get(name):
                    conn.execute(insert_ignore(self.engine, _table(name)), batch[name])
            for name, keys in REPLACED.items():
                if batch.get(name):
                    # One row per key and statement: PostgreSQL will not update a row twice.
                    latest = {tuple(row[k] for k in keys): row for row in batch[name]}
                    conn.execute(upsert(self.engine, _table(name), keys), list(latest.values()))

    def _open_run(self, spider: Any) -> tuple[int, int]:
        assert self.engine is not None
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Shards starting together on one database: one creates the schema.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('mxcensus schema'))"))
            Base.metadata.create_all(conn)
            create_views(conn)
        name = spider.run_name or self._new_run_name(spider)
        settings = self.crawler.settings
        with self.engine.begin() as conn:
            conn.execute(
                insert_ignore(self.engine, Run.__table__), [{"name": name, "created_at": _now()}]
            )
            run_id = conn.execute(select(Run.id).where(Run.name == name)).scalar_one()
            shard = "/".join(map(str, spider.shard)) if spider.shard else None
            crawl_id = conn.execute(
                Crawl.__table__.insert().returning(Crawl.id),
                {
                    "run_id": run_id,
                    "label": spider.label,
                    "source": spider.source,
                    "shard": shard,
                    "started_at": _now(),
                    "status": "running",
                    "versions": versions(settings),
                    "settings": settings_record(settings),
                },
            ).scalar_one()
        return run_id, crawl_id

    @staticmethod
    def _new_run_name(spider: Any) -> str:
        stamp = _now().strftime("%Y%m%dT%H%M%SZ")
        return f"{spider.label or 'run'}-{stamp}-{secrets.token_hex(2)}"

    def _counts(self, spider: Any) -> dict[str, Any]:
        stats = self.crawler.stats.get_stats()
        counts = {
            k.removeprefix("mxcensus/"): v for k, v in stats.items() if k.startswith("mxcensus/")
        }
        domain_list = getattr(spider, "domain_list", None)
        if domain_list is not None:
            counts["list"] = domain_list.stats.as_dict()
        return counts

    def _close_crawl(self, status: str, reason: str, counts: dict[str, Any]) -> None:
        assert self.engine is not None
        domain_list = getattr(self.crawler.spider, "domain_list", None)
        with self.engine.begin() as conn:
            conn.execute(
                update(Crawl)
                .where(Crawl.id == self.crawl_id)
                .values(
                    status=status,
                    finish_reason=reason,
                    finished_at=_now(),
                    counts=counts,
                    source_sha256=domain_list.sha256 if domain_list is not None else None,
                )
            )
        with self.engine.begin() as conn:
            # Fresh statistics let the views' joins use the indexes at any size.
            conn.execute(text("ANALYZE"))
