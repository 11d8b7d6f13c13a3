"""`tld_mx`: domains of a list → MX hosts → addresses → one SMTP/STARTTLS probe per IP.

    scrapy crawl tld_mx -a domains=PATH_OR_URL [-a label=… | -a label_column=…]
                        [-a column=…] [-a weight_column=…] [-a run=NAME] [-a shard=K/N]

The spider only routes: the `dns` handler resolves, the `smtp` handler
probes, pipelines judge and store. The list is read lazily, as the scheduler
drains, so a million-line list never becomes a million requests in memory.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy import signals
from scrapy.exceptions import UsageError

from crawler.domainlist import DomainList, Entry, ListError, parse_shard, read_domains
from crawler.handlers.dns import DnsResponse, build_resolver
from crawler.handlers.smtp import SmtpResponse, probe_config
from crawler.items import DomainItem, ProbeItem
from crawler.targets import Exclusions, TargetPolicy

logger = logging.getLogger(__name__)

PROBE_PRIORITY = 10  # probes of known MX hosts go before new domains


def smtp_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"smtp://{host}:{port}"


class TldMxSpider(scrapy.Spider):
    name = "tld_mx"

    def __init__(
        self,
        domains: str | None = None,
        label: str | None = None,
        label_column: str | None = None,
        column: str | None = None,
        weight_column: str | None = None,
        run: str | None = None,
        shard: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not domains:
            raise UsageError("tld_mx needs a list: scrapy crawl tld_mx -a domains=PATH_OR_URL")
        if label and label_column:
            raise UsageError("give -a label= or -a label_column=, not both")
        try:
            self.shard = parse_shard(shard) if shard else None
        except ValueError as e:
            raise UsageError(str(e)) from e
        self.source = domains
        self.label = label
        self.run_name = run
        self.list_options = {
            "column": column,
            "label": label,
            "label_column": label_column,
            "weight_column": weight_column,
            "shard": self.shard,
        }
        self.domain_list: DomainList | None = None
        self._probed: set[str] = set()
        self._pending = 0  # domain requests yielded and not yet answered
        if not self._is_url(domains):
            # Open the file now: a missing file or column fails before the crawl starts.
            self.domain_list = self._open_list(domains)

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any) -> TldMxSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        try:
            # Fail loudly at start: a handler that cannot be built later turns
            # every request into NotSupported and the crawl still "finishes".
            build_resolver(settings)
            probe_config(settings)
            spider.policy = TargetPolicy(
                allow_nonpublic=settings.getbool("ALLOW_NONPUBLIC_TARGETS"),
                ipv6=settings.get("SMTP_IPV6"),
                exclusions=Exclusions.from_file(settings.get("EXCLUDE_FILE")),
            )
        except (ValueError, OSError) as e:
            raise UsageError(f"bad setting: {e}") from e
        spider.smtp_port = settings.getint("SMTP_PORT")
        return spider

    @staticmethod
    def _is_url(source: str) -> bool:
        return source.startswith(("http://", "https://"))

    def _open_list(self, source: str | bytes, name: str | None = None) -> DomainList:
        try:
            return read_domains(source, name=name, **self.list_options)
        except ListError as e:
            raise UsageError(str(e)) from e

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.domain_list is None:
            self.domain_list = self._open_list(await self._fetch_list(), name=self.source)
        for entry in self.domain_list:
            if self.policy.exclusions.excludes_domain(entry.domain):
                self.crawler.stats.inc_value("mxcensus/domains/excluded")
                continue
            # Feed the scheduler only as it drains (DESIGN.md: Scrapy would
            # otherwise pull the whole list into memory at once).
            if self.crawler.engine.needs_backout():
                await self.crawler.signals.wait_for(signals.scheduler_empty)
            self.crawler.stats.inc_value("mxcensus/domains/requested")
            self._pending += 1
            self.crawler.stats.max_value("mxcensus/domains/max_pending", self._pending)
            yield scrapy.Request(
                f"dns://{entry.domain}",
                callback=self.parse_domain,
                errback=self.request_failed,
                cb_kwargs={"entry": entry},
            )

    async def _fetch_list(self) -> bytes:
        """Download a list given by URL through Scrapy itself (redirects followed)."""
        response = await self.crawler.engine.download_async(scrapy.Request(self.source))
        if response.status != 200:
            raise UsageError(f"could not fetch {self.source}: HTTP {response.status}")
        return response.body

    def parse_domain(self, response: DnsResponse, entry: Entry) -> Iterator[Any]:
        facts = response.facts
        self._pending -= 1
        self.crawler.stats.inc_value(f"mxcensus/domains/status/{facts.status}")
        skipped = []
        for host in facts.hosts:
            for ip in host.addresses:
                reason = self.policy.skip_reason(ip)
                if reason is not None:
                    skipped.append((host.name, ip, str(reason)))
                elif ip not in self._probed:
                    # One probe per IP per run, with the first MX name that reached it as SNI.
                    self._probed.add(ip)
                    yield scrapy.Request(
                        smtp_url(ip, self.smtp_port),
                        callback=self.parse_probe,
                        errback=self.request_failed,
                        meta={"sni": host.name},
                        priority=PROBE_PRIORITY,
                    )
        yield DomainItem(facts, entry.label, entry.weight, entry.line, tuple(skipped))

    def parse_probe(self, response: SmtpResponse) -> Iterator[ProbeItem]:
        self.crawler.stats.inc_value(f"mxcensus/probes/{response.probe.final.outcome or 'tls'}")
        yield ProbeItem(response.probe)

    def request_failed(self, failure: Any) -> None:
        # The handlers turn every network outcome into facts; reaching here is a bug.
        if failure.request.url.startswith("dns:"):
            self._pending -= 1
        self.crawler.stats.inc_value("mxcensus/requests/failed")
        logger.error("request %s failed: %s", failure.request, failure.getErrorMessage())
