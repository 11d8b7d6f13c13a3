"""The `smtp` download handler: one SMTP/STARTTLS probe of one IP:port.

`smtp://IP:PORT` with `meta["sni"]` (the MX host name) first asks the run
(`crawler.coordination`) whether this probe is still to be made and claims the
IP:port for this crawl; then it runs one attempt of the probe protocol of
`crawler.smtp.client` and returns an `SmtpResponse`. Its `probe` holds the
attempts so far (`meta["attempts"]` brings the earlier ones: the spider
reschedules a transient outcome, so no download slot sleeps), and `committed`
the run's probes of the IP:port that answer instead of a connection. The
handler, not Scrapy, caps connections per IP: Scrapy's per-slot limit does not
hold under the asyncio reactor (docs/design.md, "Known pitfalls"); the claim makes
the cap hold across the crawls of the run.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import TYPE_CHECKING

from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import DeferredSemaphore

from crawler.coordination import run_coordinator
from crawler.smtp.client import LocalProbeError, ProbeConfig, probe_once
from crawler.smtp.facts import Probe, ProtocolScan
from crawler.smtp.tls import client_context, pinned_context
from schema.vocab import TlsVersion

if TYPE_CHECKING:
    from OpenSSL import SSL
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from crawler.items import StoredProbe
    from crawler.smtp.facts import Attempt

logger = logging.getLogger(__name__)

LOCAL_RETRY_WAITS = (1.0, 5.0, 15.0)  # seconds between tries when this machine fails


class SmtpResponse(Response):
    """`probe`: this crawl's probe (None when the run answered without one);
    `committed`: the run's probes of the IP:port, made before, in their order;
    `held_by`: another crawl of the run is probing the IP:port now;
    `protocols`: the conversations pinned to each version (`meta["protocols"]`),
    None when the run has them already."""

    attributes: tuple[str, ...] = (
        *Response.attributes,
        "probe",
        "committed",
        "held_by",
        "protocols",
    )

    def __init__(
        self,
        *args,
        probe: Probe | None = None,
        committed: tuple[StoredProbe, ...] = (),
        held_by: int | None = None,
        protocols: ProtocolScan | None = None,
        **kwargs,
    ):
        self.probe = probe
        self.committed = committed
        self.held_by = held_by
        self.protocols = protocols
        super().__init__(*args, **kwargs)


def ehlo_name(settings: BaseSettings) -> str:
    """SMTP_EHLO_NAME, or the machine's FQDN."""
    return settings.get("SMTP_EHLO_NAME") or socket.getfqdn()


def warn_if_unqualified(name: str) -> None:
    """Servers refuse a bare EHLO name, and the target would look like `none`."""
    if "." not in name.strip("."):
        logger.warning(
            "SMTP_EHLO_NAME %r is not fully qualified: many servers refuse such an EHLO "
            "and the scan would report false results; set -s SMTP_EHLO_NAME=host.example.org",
            name,
        )


def probe_config(settings: BaseSettings) -> ProbeConfig:
    """The probe's settings, checked once; raises ValueError on a bad value."""
    if settings.getint("SMTP_MAX_PER_IP") < 1 or settings.getint("SMTP_RETRIES") < 0:
        raise ValueError("SMTP_MAX_PER_IP must be >= 1 and SMTP_RETRIES >= 0")
    return ProbeConfig(  # checks the timeouts and the EHLO name itself
        ehlo_name=ehlo_name(settings),
        connect_timeout=settings.getfloat("SMTP_CONNECT_TIMEOUT"),
        banner_timeout=settings.getfloat("SMTP_BANNER_TIMEOUT"),
        command_timeout=settings.getfloat("SMTP_COMMAND_TIMEOUT"),
        tls_timeout=settings.getfloat("SMTP_TLS_TIMEOUT"),
        probe_timeout=settings.getfloat("SMTP_PROBE_TIMEOUT"),
    )


class SmtpDownloadHandler(BaseDownloadHandler):
    lazy = False

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        settings = crawler.settings
        self.config = probe_config(settings)
        self.protocol_config = dataclasses.replace(self.config, ehlo_after_tls=False)
        warn_if_unqualified(self.config.ehlo_name)
        self.default_port = settings.getint("SMTP_PORT")
        self.sni_probes = max(1, settings.getint("SMTP_SNI_PROBES"))
        self.run = run_coordinator(crawler)
        self.max_per_ip = settings.getint("SMTP_MAX_PER_IP")
        self.context = client_context()  # one shared Context: building one per probe is costly
        self._per_ip: dict[str, DeferredSemaphore] = {}

    async def download_request(self, request: Request) -> Response:
        url = urlparse_cached(request)
        ip, port = url.hostname or "", url.port or self.default_port
        sni, earlier = request.meta["sni"], request.meta.get("attempts", [])
        if request.meta.get("protocols"):
            return await self._protocols(request, ip, port, sni)
        started = time.monotonic()
        committed: tuple[StoredProbe, ...] = ()
        if not earlier:  # a retry goes on under the claim its first attempt got
            first = request.meta.get("first", False)
            grant = await self.run.grant(ip, port, sni, first, self.sni_probes)
            if not grant.claimed:
                return SmtpResponse(
                    url=request.url,
                    request=request,
                    probe=None,
                    committed=grant.committed,
                    held_by=grant.held_by,
                )
            committed = grant.committed
        probe = Probe(ip, port, sni, list(earlier))
        probe.attempts.append(await self._attempt_locally_retried(ip, port, sni))
        request.meta["download_latency"] = time.monotonic() - started
        return SmtpResponse(url=request.url, request=request, probe=probe, committed=committed)

    async def _protocols(self, request: Request, ip: str, port: int, sni: str) -> Response:
        """One conversation per TLS version, oldest first, one after another, each
        under the IP's cap; once per IP:port per run (the run's claim and its
        committed rows decide). A version this OpenSSL cannot offer is not tried."""
        grant = await self.run.grant(ip, port, sni, first=False, cap=0, protocols=True)
        if not grant.claimed:
            return SmtpResponse(url=request.url, request=request, held_by=grant.held_by)
        started = time.monotonic()
        scan = ProtocolScan(ip, port, sni)
        for version in TlsVersion:
            context = pinned_context(version)
            attempt = None
            if context is not None:
                attempt = await self._attempt_locally_retried(
                    ip, port, sni, self.protocol_config, context
                )
            scan.tries.append((version, attempt))
        request.meta["download_latency"] = time.monotonic() - started
        return SmtpResponse(url=request.url, request=request, protocols=scan)

    async def _attempt_locally_retried(
        self,
        ip: str,
        port: int,
        sni: str,
        config: ProbeConfig | None = None,
        context: SSL.Context | None = None,
    ) -> Attempt:
        """An attempt; a failure of this machine (no free socket or port) is waited
        out and tried again, never recorded as the target's fact. If it persists,
        the request fails loudly and the target stays unjudged."""
        for wait in LOCAL_RETRY_WAITS:
            try:
                return await self._attempt(ip, port, sni, config, context)
            except LocalProbeError as e:
                logger.warning("local failure probing %s, retrying in %g s: %s", ip, wait, e)
                self.crawler.stats.inc_value("mxcensus/probes/local_failures")
                await self._sleep(wait)
        return await self._attempt(ip, port, sni, config, context)

    async def _attempt(
        self,
        ip: str,
        port: int,
        sni: str,
        config: ProbeConfig | None,
        context: SSL.Context | None,
    ) -> Attempt:
        """One connection, waiting for a free slot of this IP's cap."""
        limit = self._per_ip.setdefault(ip, DeferredSemaphore(self.max_per_ip))
        await maybe_deferred_to_future(limit.acquire())
        try:
            return await maybe_deferred_to_future(
                probe_once(ip, port, sni, config or self.config, context or self.context)
            )
        finally:
            limit.release()
            if limit.tokens == limit.limit and not limit.waiting:
                del self._per_ip[ip]  # keep the map as small as the IPs in flight

    @staticmethod
    async def _sleep(seconds: float) -> None:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await maybe_deferred_to_future(deferLater(reactor, seconds))
