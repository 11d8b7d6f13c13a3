"""`tld_mx`: domains of a list → MX hosts → addresses → one SMTP/STARTTLS probe per IP.

    scrapy crawl tld_mx -a domains=PATH_OR_URL [-a label=… | -a label_column=…]
                        [-a column=…] [-a weight_column=…] [-a run=NAME] [-a shard=K/N]
                        [-a depth=protocols|policy|protocols,policy]

The spider only routes: the `dns` handler resolves, the `smtp` handler
probes, pipelines judge and store. The list is read lazily, as the scheduler
drains, so a million-line list never becomes a million requests in memory.
A crawl joining a run (`-a run=NAME`: another shard, or a resume) skips the
domains the run has answered and finishes the targets it left unjudged; the
run's claims (`crawler.coordination`) keep every IP probed once per run.
A transient outcome, or an IP another crawl is probing, is asked again later
through the scheduler: nothing sleeps in a download slot.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, NoReturn

import scrapy
from scrapy import signals
from scrapy.exceptions import CloseSpider, DontCloseSpider, UsageError

from crawler.certnames import certificate_names, name_matches
from crawler.coordination import file_sha256, run_coordinator
from crawler.dnssec import parse_check
from crawler.domainlist import DomainList, Entry, ListError, read_domains
from crawler.domainnames import domain_hash, parse_shard
from crawler.handlers.dns import DnsResponse, build_resolver
from crawler.handlers.smtp import SmtpResponse, probe_config
from crawler.items import (
    DomainItem,
    ProbeItem,
    ProtocolsItem,
    StoredProbe,
    StoredProbesItem,
    TargetsItem,
)
from crawler.policy import after_dns as domain_policy
from crawler.recent import Interner
from crawler.scheduling import new_run_name
from crawler.targets import Exclusions, TargetPolicy
from schema.vocab import Depth

logger = logging.getLogger(__name__)

# Finish reasons of a crawl whose list URL could not be fetched (exit 1) or was no list
# (exit 2), and the stat holding the one line that says why.
LIST_UNAVAILABLE, BAD_LIST = "list_unavailable", "bad_list"
LIST_ERROR_STAT = "list_error"

PROBE_PRIORITY = 10  # probes of known MX hosts go before new domains
# An IP's protocol conversations come after the probes waiting, before new domains.
PROTOCOLS_PRIORITY = 5
# What a first probe's wire outcome says of STARTTLS: advertised (TLS, or it failed).
ADVERTISED = frozenset({"tls", "failure"})
# Each handler's requests share one download slot (settings.DOWNLOAD_SLOTS says why).
DNS_META = {"download_slot": "dns"}
DNS_POLICY_META = {**DNS_META, "policy": True}  # -a depth=policy: DNSSEC facts and TLSA


@dataclass(slots=True)
class _IpProbes:
    """One IP's probes in the run: the SNI names used (first = first probe), the
    MX names that reached it while its first probe ran (None once it is done:
    a later name is decided at once), and the names on its first certificate.
    Kept for every IP of the run, so as small as that."""

    snis: tuple[str, ...]
    names: set[str] | None
    leaf_names: tuple[str, ...] | None = None  # None: no certificate seen

    @property
    def done(self) -> bool:
        """The first probe has finished."""
        return self.names is None


@dataclass(frozen=True, slots=True)
class _Probed:
    """An IP probed once, its first probe done: most of a run's IPs end so, and one
    shared copy per MX host stands for all of its IPs (`_IpProbes` when read)."""

    sni: str
    leaf_names: tuple[str, ...] | None


def smtp_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"smtp://{host}:{port}"


def urlparse_ip(url: str) -> str:
    """The IP of an `smtp_url`, as the spider keyed it."""
    host = url.removeprefix("smtp://").rsplit(":", 1)[0]
    return host.strip("[]")


# The spider's arguments (`-a NAME=VALUE`), as `scrapy crawl -h` shows them.
ARGUMENTS = {
    "domains": "the list: a file or an http(s) URL; one domain a line, CSV/TSV or JSON",
    "label": "a label for every domain of the list (e.g. a country code)",
    "label_column": "the list's column that labels each domain",
    "column": "the list's column of domains, when the header does not say",
    "weight_column": "the list's column of weights (e.g. mail volume)",
    "run": "the run to start, resume or join (another shard); default: a new run",
    "shard": "K/N: this crawl takes the K-th of N parts of the list",
    "depth": "protocols: also try each TLS version on every STARTTLS server (4 more "
    "connections per IP); policy: DNSSEC, DANE (TLSA per MX host), MTA-STS and TLS-RPT",
}


def parse_depth(value: str | None) -> frozenset[Depth]:
    """`-a depth=protocols[,…]`: the opt-in measurements; raises UsageError."""
    depth = set()
    for part in (value or "").split(","):
        if not (name := part.strip().lower()):
            continue
        try:
            depth.add(Depth(name))
        except ValueError:
            known = ", ".join(Depth)
            raise UsageError(f"-a depth={value}: unknown depth {name!r}; known: {known}") from None
    return frozenset(depth)


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
        depth: str | None = None,
        _job: str | None = None,  # given by scrapyd, stored with the crawl
        _version: str | None = None,  # given by scrapyd when a version is asked for
        **kwargs: Any,
    ):
        if kwargs:
            known = ", ".join(ARGUMENTS)
            raise UsageError(
                f"unknown spider argument {', '.join(sorted(kwargs))}; tld_mx takes: {known}"
            )
        super().__init__()
        self._job, self._version = _job, _version
        if not domains:
            raise UsageError("tld_mx needs a list: scrapy crawl tld_mx -a domains=PATH_OR_URL")
        if label and label_column:
            raise UsageError("give -a label= or -a label_column=, not both")
        try:
            self.shard = parse_shard(shard) if shard else None
        except ValueError as e:
            raise UsageError(str(e)) from e
        self.depth = parse_depth(depth)
        self.protocols = Depth.PROTOCOLS in self.depth
        self._protocols_asked: set[tuple[str, int]] = set()  # IP:ports, with depth=protocols
        # DNSSEC, DANE, MTA-STS, TLS-RPT (crawler/dnssec.py, crawler/dane.py)
        self.policy_depth = Depth.POLICY in self.depth
        self.dns_meta = DNS_POLICY_META if self.policy_depth else DNS_META
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
        self._ips: dict[str, _IpProbes | _Probed] = {}  # every IP reached in this crawl
        self._shared: Interner[Any] = Interner()  # a provider's names, an MX host's _Probed
        self._pending = 0  # domain requests yielded and not yet answered
        self._later: set[Any] = set()  # requests waiting to be scheduled again
        self.list_sha256: str | None = None
        if not self._is_url(domains):
            if _job and not os.path.isabs(domains):
                raise UsageError(
                    f"a scrapyd job needs the list as a URL or an absolute path, not {domains!r}"
                )
            # Open the file now: a missing file or column fails before the crawl starts.
            self.domain_list = self._open_list(domains)
            self._check_not_empty(domains, domains)
            self.list_sha256 = file_sha256(domains)

    @classmethod
    def from_crawler(cls, crawler, *args: Any, **kwargs: Any) -> TldMxSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        try:
            # Fail loudly at start: a handler that cannot be built later turns
            # every request into NotSupported and the crawl still "finishes".
            build_resolver(settings)
            probe_config(settings)
            parse_check(settings.get("DNSSEC_CHECK"))
            if not 0 < settings.getint("MTA_STS_PORT") < 65536:
                raise ValueError(f"MTA_STS_PORT={settings.get('MTA_STS_PORT')}: 1-65535")
            for name in ("DNS_CACHE_SIZE", "DATABASE_DEDUP_CACHE"):
                if settings.getint(name) < 1:
                    raise ValueError(f"{name}={settings.get(name)}: at least 1")
            spider.policy = TargetPolicy(
                allow_nonpublic=settings.getbool("ALLOW_NONPUBLIC_TARGETS"),
                ipv6=settings.get("SMTP_IPV6"),
                exclusions=Exclusions.from_file(settings.get("EXCLUDE_FILE")),
            )
            spider.smtp_port = settings.getint("SMTP_PORT")
            spider.sni_probes = max(1, settings.getint("SMTP_SNI_PROBES"))
            spider.retries = settings.getint("SMTP_RETRIES")
            spider.retry_delay = settings.getfloat("SMTP_RETRY_DELAY")
            spider.claim_wait = settings.getfloat("RUN_CLAIM_WAIT")
        except (ValueError, OSError) as e:
            raise UsageError(f"bad setting: {e}") from e
        spider.run = run_coordinator(crawler)
        crawler.signals.connect(spider._keep_open, signal=signals.spider_idle)
        crawler.signals.connect(spider._cancel_later, signal=signals.spider_closed)
        return spider

    def new_run_name(self) -> str:
        return new_run_name(self.label, datetime.now(UTC), secrets.token_hex(2))

    @staticmethod
    def _is_url(source: str) -> bool:
        return source.startswith(("http://", "https://"))

    def _open_list(
        self, source: str | bytes, name: str | None = None, **options: Any
    ) -> DomainList:
        try:
            return read_domains(source, name=name, **{**self.list_options, **options})
        except ListError as e:
            raise UsageError(str(e)) from e

    def _check_not_empty(self, source: str | bytes, name: str) -> None:
        """A list without one valid domain is a mistake (a wrong file or column), not an
        empty run to report; a shard that happens to get none is fine. Reading stops at
        the first valid domain."""
        whole = self._open_list(source, name, shard=None)
        if next(iter(whole), None) is None:
            stats = whole.stats
            raise UsageError(
                f"{name}: no valid domain in the list ({stats.lines} lines, {stats.invalid} "
                "invalid): give one domain a line, or a table with -a column=NAME"
            )

    async def start(self) -> AsyncIterator[Any]:
        await self.run.open(self)
        if self.domain_list is None:
            self.domain_list = await self._read_list_url()
        if self.policy_depth:
            await self._check_dnssec()
        for item_or_request in self._resume_targets():
            yield item_or_request
        done = self.run.resume.done_domains
        for entry in self.domain_list:
            if self.policy.exclusions.excludes_domain(entry.domain):
                self.crawler.stats.inc_value("mxcensus/domains/excluded")
                continue
            if done and domain_hash(entry.domain) in done:
                self.crawler.stats.inc_value("mxcensus/domains/resumed")
                continue
            # Feed the scheduler only as it drains (docs/design.md: Scrapy would
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
                meta=self.dns_meta,
                cb_kwargs={"entry": entry},
            )

    def _resume_targets(self) -> Iterator[Any]:
        """Targets of domains the run stored but did not finish judging (a crawl
        was killed between the domain's batch and its probes'): probe or judge them.
        Likewise the IPs whose TLS versions a killed crawl left untried."""
        pending, self.run.resume.pending_targets = self.run.resume.pending_targets, []
        for ip, targets in groupby(pending, key=lambda target: target[1]):
            names = tuple(targets)
            self.crawler.stats.inc_value("mxcensus/targets/resumed", len(names))
            yield TargetsItem(names)
            for mx_host, _ in names:
                yield from self._route(ip, mx_host)
        pending, self.run.resume.pending_protocols = self.run.resume.pending_protocols, []
        for ip, port, sni in pending:
            self.crawler.stats.inc_value("mxcensus/protocols/resumed")
            yield from self._protocols_request(ip, port, sni)

    async def _read_list_url(self) -> DomainList:
        """Fetch and open a list given by URL. One that cannot be fetched fails the crawl
        (exit 1); a bad one is a usage error (exit 2); either is one line, no traceback."""
        try:
            body = await self._fetch_list()
        except Exception as e:  # an HTTP status, a refused connection, a name not found
            self._stop_at_start(
                LIST_UNAVAILABLE,
                f"could not fetch {self.source}: {e}; check the URL, or download the list "
                "and give its path",
            )
        try:
            await self.run.list_read(hashlib.sha256(body).hexdigest())
            self._check_not_empty(body, self.source)
            return self._open_list(body, name=self.source)
        except UsageError as e:
            self._stop_at_start(BAD_LIST, str(e))

    async def _check_dnssec(self) -> None:
        """Does the resolver validate (DNSSEC_CHECK)? Logged, and recorded with the crawl;
        if not, every DNSSEC-derived fact of the crawl is NULL (crawler/dnssec.py)."""
        request = scrapy.Request("dns://dnssec-check", meta={**DNS_META, "dnssec_check": True})
        check = (await self.crawler.engine.download_async(request)).facts
        if check.validating:
            logger.info("DNSSEC: %s", check.describe())
        else:
            logger.warning(
                "DNSSEC: %s; dnssec, tlsa_status and dane will be NULL. Point DNS_NAMESERVERS "
                "at a validating resolver (e.g. unbound) to measure them",
                check.describe(),
            )
        self.crawler.stats.set_value("mxcensus/dnssec/validating", check.validating)
        await self.run.record(dnssec_validating=check.validating, dnssec_check=check.describe())

    async def _fetch_list(self) -> bytes:
        """Download a list given by URL through Scrapy itself (redirects followed)."""
        response = await self.crawler.engine.download_async(scrapy.Request(self.source))
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        return response.body

    def _stop_at_start(self, reason: str, message: str) -> NoReturn:
        logger.error("%s", message)
        self.crawler.stats.set_value(LIST_ERROR_STAT, message)  # the command's last line
        raise CloseSpider(reason)

    def parse_domain(self, response: DnsResponse, entry: Entry) -> Iterator[Any]:
        facts = response.facts
        self._pending -= 1
        self.crawler.stats.inc_value(f"mxcensus/domains/status/{facts.status}")
        skipped = []
        for host in facts.hosts:
            for ip in host.addresses:
                reason = self.policy.skip_reason(ip, host.name)
                if reason is not None:
                    skipped.append((host.name, ip, str(reason)))
                else:
                    yield from self._route(ip, host.name)
        yield DomainItem(facts, entry.label, entry.weight, entry.line, tuple(skipped))
        if facts.policy:  # MTA-STS and TLS-RPT (crawler/policy.py)
            yield from domain_policy(facts, PROTOCOLS_PRIORITY)

    def _route(self, ip: str, mx_host: str) -> Iterator[scrapy.Request]:
        """Probe each IP once per run, with the first MX name that reached it as SNI."""
        state = self._state(ip)
        if state is None:
            self._ips[ip] = _IpProbes(snis=(mx_host,), names={mx_host})
            yield self._probe_request(ip, mx_host, first=True)
        elif state.names is not None:
            state.names.add(mx_host)
        else:
            yield from self._reprobe(ip, state, mx_host)
            self._settle(ip, state)

    def _state(self, ip: str) -> _IpProbes | None:
        state = self._ips.get(ip)
        if isinstance(state, _Probed):
            state = self._ips[ip] = _IpProbes((state.sni,), None, state.leaf_names)
        return state

    def _settle(self, ip: str, state: _IpProbes) -> None:
        if state.done and len(state.snis) == 1:
            self._ips[ip] = self._shared(_Probed(state.snis[0], state.leaf_names))

    def _reprobe(self, ip: str, state: _IpProbes, mx_host: str) -> Iterator[scrapy.Request]:
        """Probe the IP again with `mx_host` as SNI when the certificate its first
        probe saw does not name it: providers pick certificates by SNI (docs/design.md)."""
        if mx_host in state.snis or state.leaf_names is None:
            return
        if name_matches(mx_host, state.leaf_names):
            return
        if len(state.snis) >= self.sni_probes:
            # Past the cap the first certificate judges; targets.sni shows it.
            self.crawler.stats.inc_value("mxcensus/probes/sni_cap_reached")
            return
        state.snis += (mx_host,)
        self.crawler.stats.inc_value("mxcensus/probes/sni_reprobes")
        yield self._probe_request(ip, mx_host)

    def _probe_request(self, ip: str, sni: str, first: bool = False) -> scrapy.Request:
        return scrapy.Request(
            smtp_url(ip, self.smtp_port),
            callback=self.parse_probe,
            errback=self.request_failed,
            meta={"sni": sni, "first": first, "download_slot": "smtp"},
            priority=PROBE_PRIORITY,
        )

    def _protocols_request(self, ip: str, port: int, sni: str) -> Iterator[scrapy.Request]:
        """The IP:port's conversations pinned to each TLS version, once per crawl (the
        run's claims make it once per run)."""
        if (ip, port) in self._protocols_asked:
            return
        self._protocols_asked.add((ip, port))
        yield scrapy.Request(
            smtp_url(ip, port),
            callback=self.parse_protocols,
            errback=self.request_failed,
            meta={"sni": sni, "protocols": True, "download_slot": "smtp"},
            priority=PROTOCOLS_PRIORITY,
        )

    def parse_protocols(self, response: SmtpResponse) -> Iterator[Any]:
        if response.held_by is not None:
            self.crawler.stats.inc_value("mxcensus/protocols/waited_for_other_crawl")
            self._schedule_later(response.request, self.claim_wait)
            return
        scan = response.protocols
        if scan is None:  # the run tried this IP:port's versions before
            self.crawler.stats.inc_value("mxcensus/protocols/from_run")
            return
        self.crawler.stats.inc_value("mxcensus/protocols/scanned")
        for _, attempt in scan.tries:
            if attempt is not None:
                self.crawler.stats.inc_value("mxcensus/protocols/connections")
        yield ProtocolsItem(scan)

    def parse_probe(self, response: SmtpResponse) -> Iterator[Any]:
        request, probe = response.request, response.probe
        ip = urlparse_ip(response.url)
        state = self._state(ip)
        assert state is not None, f"a probe of {ip}, never routed"
        if response.held_by is not None:
            # Another crawl of the run is talking to this server: ask again later.
            self.crawler.stats.inc_value("mxcensus/probes/waited_for_other_crawl")
            self._schedule_later(request, self.claim_wait)
            return
        if response.committed:
            yield from self._committed(state, response.committed)
            state = self._state(ip)  # settled meanwhile: the shared record, read back
        if probe is None:
            return
        if probe.final.transient and len(probe.attempts) <= self.retries:
            self.crawler.stats.inc_value("mxcensus/probes/retried")
            meta = {**request.meta, "attempts": probe.attempts}
            self._schedule_later(request.replace(meta=meta), self.retry_delay)
            return
        self.crawler.stats.inc_value(f"mxcensus/probes/{probe.final.outcome or 'tls'}")
        yield ProbeItem(probe)
        if probe.sni == state.snis[0]:
            tls = probe.final.tls
            leaf = certificate_names(tls.chain_der[0]) if tls and tls.chain_der else None
            advertised = str(probe.final.outcome or "tls") in ADVERTISED
            yield from self._first_done(ip, state, leaf, (probe.port, advertised))

    def _committed(self, state: _IpProbes, committed: tuple[StoredProbe, ...]) -> Iterator[Any]:
        """The run probed this IP before (another crawl, or before a resume): its
        probes judge here, and the first one decides the SNI re-probes."""
        self.crawler.stats.inc_value("mxcensus/probes/from_run", len(committed))
        yield StoredProbesItem(committed)
        snis = tuple(p.sni for p in committed)
        if state.done:
            state.snis += tuple(sni for sni in snis if sni not in state.snis)
            return
        # The run's first probe is the IP's first, whichever name asked for it here.
        state.snis = snis
        first = committed[0]
        yield from self._first_done(
            first.ip,
            state,
            first.leaf_names if first.wire_outcome == "tls" else None,
            (first.port, first.wire_outcome in ADVERTISED),
        )

    def _first_done(
        self,
        ip: str,
        state: _IpProbes,
        leaf: tuple[str, ...] | None,
        starttls: tuple[int, bool],
    ) -> Iterator[Any]:
        """The IP's first probe is in (`starttls`: its port, and whether it saw STARTTLS
        advertised): SNI re-probes for the names waiting, then the protocol scan."""
        names, state.names = state.names or (), None
        state.leaf_names = leaf and self._shared(leaf)  # one copy per provider
        for name in sorted(names):
            yield from self._reprobe(ip, state, name)
        port, advertised = starttls
        if self.protocols and advertised:
            yield from self._protocols_request(ip, port, state.snis[0])
        self._settle(ip, state)

    # --- requests asked again later, through the scheduler ----------------------

    def _schedule_later(self, request: scrapy.Request, delay: float) -> None:
        from twisted.internet import reactor

        def again() -> None:
            self._later.discard(call)
            self.crawler.engine.crawl(request)

        call = reactor.callLater(delay, again)
        self._later.add(call)

    def _keep_open(self) -> None:
        if self._later:
            raise DontCloseSpider("requests wait to be asked again")

    def _cancel_later(self) -> None:
        for call in self._later:
            if call.active():
                call.cancel()
        self._later.clear()

    def request_failed(self, failure: Any) -> None:
        # The handlers turn every network outcome into facts; reaching here is a bug.
        if failure.request.url.startswith("dns:"):
            self._pending -= 1
        self.crawler.stats.inc_value("mxcensus/requests/failed")
        logger.error("request %s failed: %s", failure.request, failure.getErrorMessage())
