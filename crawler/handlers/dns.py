"""The `dns` download handler: a domain's mail routing through dnspython.

`dns://example.org` resolves the domain's MX records and the A/AAAA
addresses of every MX host (or of the domain itself, RFC 5321 §5.1 implicit
MX), and returns a `DnsResponse` whose `facts` is a `DomainDns`. Each MX host
is resolved once per crawl however many domains name it; a lookup that timed
out or failed is not kept, so the next domain naming the host asks again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached

from crawler.dnsclient import DnsClient, NxDomain, ServerFailure
from crawler.dnssec import (
    SMTP_TLSA_PREFIX,
    DnssecCheck,
    TlsaLookup,
    parse_check,
    tlsa_bases,
    tlsa_status,
)
from crawler.mailroute import (
    DomainDns,
    HostDns,
    MxRecord,
    domain_status,
    implicit_status,
    is_ip_literal,
    parse_mx,
)
from crawler.mtasts import STS_PREFIX, TLSRPT_PREFIX, PolicyTxt
from crawler.recent import RecentMap
from schema.vocab import DomainStatus, HostDnsOutcome, TlsaStatus

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings


class DnsResponse(Response):
    attributes: tuple[str, ...] = (*Response.attributes, "facts")

    def __init__(self, *args, facts: DomainDns, **kwargs):
        self.facts = facts
        super().__init__(*args, **kwargs)


def parse_nameservers(text: str) -> list[tuple[str, int]]:
    """Parse DNS_NAMESERVERS: comma-separated `ip`, `ip:port` or `[ipv6]:port`."""
    servers = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, port = item, 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = int(port_text)
        try:
            ipaddress.ip_address(host)
        except ValueError as e:
            raise ValueError(f"DNS_NAMESERVERS: {item!r} is not an IP address[:port]") from e
        servers.append((host, port))
    return servers


def build_resolver(settings: BaseSettings) -> dns.asyncresolver.Resolver:
    """A resolver from DNS_NAMESERVERS, DNS_TIMEOUT and DNS_TRIES; raises on bad values."""
    servers = parse_nameservers(settings.get("DNS_NAMESERVERS") or "")
    resolver = dns.asyncresolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers]
    timeout = settings.getfloat("DNS_TIMEOUT")
    tries = settings.getint("DNS_TRIES")
    if timeout <= 0 or tries < 1:
        raise ValueError("DNS_TIMEOUT must be > 0 and DNS_TRIES >= 1")
    # dnspython retries a query until its lifetime runs out; one try is one timeout.
    resolver.timeout = timeout
    resolver.lifetime = timeout * tries
    return resolver


def build_client(settings: BaseSettings) -> DnsClient:
    """The client asking the resolvers that DNS_NAMESERVERS (or the system) names."""
    resolver = build_resolver(settings)
    return DnsClient(
        [_address(ns) for ns in resolver.nameservers],
        timeout=resolver.timeout,
        tries=settings.getint("DNS_TRIES"),
    )


def _address(nameserver: Any) -> tuple[str, int]:
    if isinstance(nameserver, str):  # from /etc/resolv.conf
        return nameserver, 53
    return nameserver.address, nameserver.port


# The client's exceptions, mapped once to what they mean for a host and a domain.
_HOST_OUTCOMES: dict[type[Exception], HostDnsOutcome] = {
    NxDomain: HostDnsOutcome.NXDOMAIN,
    ServerFailure: HostDnsOutcome.SERVFAIL,
    dns.exception.Timeout: HostDnsOutcome.TIMEOUT,
}
_DOMAIN_STATUS = {
    HostDnsOutcome.NXDOMAIN: DomainStatus.NXDOMAIN,
    HostDnsOutcome.SERVFAIL: DomainStatus.SERVFAIL,
    HostDnsOutcome.TIMEOUT: DomainStatus.DNS_TIMEOUT,
}


# Outcomes worth asking again when another domain names the host.
_RETRIED = (HostDnsOutcome.TIMEOUT, HostDnsOutcome.SERVFAIL)


def _outcome(error: Exception) -> HostDnsOutcome:
    for cls, outcome in _HOST_OUTCOMES.items():
        if isinstance(error, cls):
            return outcome
    return HostDnsOutcome.SERVFAIL  # any other resolver failure: no usable answer


class DnsDownloadHandler(BaseDownloadHandler):
    lazy = False

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        self.client = build_client(crawler.settings)
        # MX host -> its addresses, or the lookup in flight that every asker shares; a
        # resolver's cache, bounded: a host not named for a while is looked up again.
        self.dnssec_check = parse_check(crawler.settings.get("DNSSEC_CHECK"))
        # Set by check_resolver (-a depth=policy): None before, then whether AD means anything.
        self.validating: bool | None = None
        self._hosts: RecentMap[str, HostDns | asyncio.Future[HostDns]] = RecentMap(
            crawler.settings.getint("DNS_CACHE_SIZE")
        )

    async def download_request(self, request: Request) -> Response:
        started = time.monotonic()
        if request.meta.get("dnssec_check"):
            facts: Any = await self.check_resolver()
        else:
            domain = urlparse_cached(request).hostname or ""
            facts = await self.resolve_domain(domain, policy=request.meta.get("policy", False))
        request.meta["download_latency"] = time.monotonic() - started
        return DnsResponse(url=request.url, request=request, facts=facts)

    async def check_resolver(self) -> DnssecCheck:
        """Does the resolver validate? (crawler/dnssec.py; once, at crawl start)."""
        name, rdtype = self.dnssec_check
        outcomes = []
        for checking_disabled in (False, True):
            try:
                reply = await self.client.query(
                    name, rdtype, want_dnssec=True, checking_disabled=checking_disabled
                )
                outcomes.append(dns.rcode.to_text(reply.rcode()))
            except NxDomain:
                outcomes.append("NXDOMAIN")
            except ServerFailure as e:
                outcomes.append(str(e).rsplit(" ", 1)[-1])
            except dns.exception.Timeout:
                outcomes.append("timeout")
        check = DnssecCheck(f"{name} {dns.rdatatype.to_text(rdtype)}", *outcomes)
        self.validating = check.validating
        return check

    async def resolve_domain(self, domain: str, policy: bool = False) -> DomainDns:
        """The domain's mail routing; with `policy`, also its DNSSEC facts, its MX hosts'
        TLSA RRsets, and its MTA-STS and TLS-RPT records (asked beside the MX query)."""
        if not policy:
            return await self._resolve_domain(domain, False)
        txt = asyncio.ensure_future(self._policy_txt(domain))
        facts = await self._resolve_domain(domain, True)
        return replace(facts, txt=await txt)

    async def _policy_txt(self, domain: str) -> PolicyTxt:
        found: list[tuple[str, ...] | None] = []
        errors = []
        for prefix in (STS_PREFIX, TLSRPT_PREFIX):
            try:
                answer = await self._query(prefix + domain, dns.rdatatype.TXT)
            except NxDomain:
                found.append(())
                continue
            except Exception as e:
                found.append(None)
                errors.append(f"{prefix}{domain}: {_text(e)}")
                continue
            strings = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset or ()]
            found.append(tuple(sorted(strings)))
        return PolicyTxt(found[0], found[1], "; ".join(errors) or None)

    async def _resolve_domain(self, domain: str, policy: bool) -> DomainDns:
        try:
            answer = await self._query(domain, dns.rdatatype.MX, policy)
        except Exception as e:
            return DomainDns(domain, _DOMAIN_STATUS[_outcome(e)], detail=_text(e), policy=policy)
        rrset = answer.rrset or ()
        pairs = [(r.preference, r.exchange.to_text()) for r in rrset]
        null_mx, mx = parse_mx(pairs)
        mx_text = tuple(sorted(r.to_text() for r in rrset))
        signed = self._authenticated(answer) if policy else None
        if null_mx:
            return DomainDns(
                domain,
                DomainStatus.NULL_MX,
                null_mx=True,
                mx_rrset=mx_text,
                dnssec=signed,
                policy=policy,
            )
        if not mx:
            # The implicit MX is not cached: it is as many hosts as the list has such domains.
            host = await self._resolve_host(domain, policy)
            status = implicit_status(host)
            if status is not DomainStatus.OK:
                return DomainDns(domain, status, detail=host.detail, dnssec=signed, policy=policy)
            # RFC 5321 §5.1: the implicit MX's own addresses are what routes the mail.
            return DomainDns(
                domain,
                status,
                (MxRecord(domain, 0, implicit=True),),
                (host,),
                dnssec=host.dnssec,
                policy=policy,
            )
        # Every lookup starts before the first is awaited: they run side by side.
        known = [self._host(r.host, policy) for r in mx]
        hosts = tuple([h if isinstance(h, HostDns) else await h for h in known])
        return DomainDns(
            domain,
            domain_status(mx, hosts),
            mx,
            hosts,
            mx_rrset=mx_text,
            dnssec=signed,
            policy=policy,
        )

    async def resolve_host(self, name: str, policy: bool = False) -> HostDns:
        """The addresses of an MX host, looked up once while it recurs (DNS_CACHE_SIZE),
        unless the lookup failed: one resolver timeout must not cost every domain of a
        hoster. With `policy`, its DNSSEC facts and TLSA RRset too (a crawl is one depth,
        so the cache holds one kind)."""
        known = self._host(name, policy)
        return known if isinstance(known, HostDns) else await known

    def _host(self, name: str, policy: bool = False) -> HostDns | asyncio.Future[HostDns]:
        """The host's answer, or the lookup in flight (a shared future) that gives it."""
        known = self._hosts.get(name)
        if known is None:
            lookup = self._resolve_host(name, policy)
            known = self._hosts[name] = asyncio.ensure_future(lookup)
            known.add_done_callback(lambda done: self._keep_answer(name, done))
        return known

    def _keep_answer(self, name: str, future: asyncio.Future[HostDns]) -> None:
        """Keep the answer, not the finished task (a task is ~1 KB, and a national
        list names hundreds of thousands of hosts); forget a failure."""
        failed = future.cancelled() or future.exception() is not None
        if failed or future.result().outcome in _RETRIED:
            self._hosts.pop(name, None)
        else:
            self._hosts[name] = future.result()

    async def _resolve_host(self, name: str, policy: bool = False) -> HostDns:
        if is_ip_literal(name):
            return HostDns(name, HostDnsOutcome.NO_ADDRESS, ip_literal=True)
        results = await asyncio.gather(
            self._query(name, dns.rdatatype.A, policy),
            self._query(name, dns.rdatatype.AAAA, policy),
            return_exceptions=True,
        )
        host = self._host_dns(name, results)
        if policy:
            host = await self._with_policy(host, results)
        return host

    async def _with_policy(self, host: HostDns, results: list[Any]) -> HostDns:
        """The host's DNSSEC facts: its address answers validated, and its TLSA RRset."""
        answered = [r for r in results if not isinstance(r, Exception)]
        signed = None
        if self.validating:
            # Validated only if every family answered, and each answer (or denial) had AD.
            signed = len(answered) == len(results) and all(map(self._authenticated, answered))
        if host.outcome is not HostDnsOutcome.OK:
            return replace(host, dnssec=signed)
        tlsa = None
        for base in tlsa_bases(host.name, host.canonical, bool(signed)):
            tlsa = await self._tlsa(base)
            if tlsa.records or tlsa.detail:  # found, or failed: the next name is not asked
                break
        return replace(host, dnssec=signed, tlsa=tlsa)

    async def _tlsa(self, base: str) -> TlsaLookup:
        """The TLSA RRset at _25._tcp.BASE; SERVFAIL asked again with CD: an answer then
        means validation failed (bogus), none a broken server (error)."""
        name = SMTP_TLSA_PREFIX + base
        try:
            answer = await self._query(name, dns.rdatatype.TLSA, True)
        except NxDomain:
            return TlsaLookup(name, TlsaStatus.NONE if self.validating else None)
        except ServerFailure as e:
            records: tuple[str, ...] = ()
            try:
                reply = await self.client.query(
                    name, dns.rdatatype.TLSA, want_dnssec=True, checking_disabled=True
                )
                status = TlsaStatus.BOGUS
                # What is published, unvalidated: shown, never used (the status says bogus).
                answer = dns.resolver.Answer(
                    reply.question[0].name, dns.rdatatype.TLSA, dns.rdataclass.IN, reply
                )
                records = tuple(sorted(_tlsa_text(r) for r in answer.rrset or ()))
            except NxDomain:
                status = TlsaStatus.BOGUS
            except Exception:
                status = TlsaStatus.ERROR
            return TlsaLookup(name, status if self.validating else None, records, _text(e))
        except Exception as e:
            status = TlsaStatus.ERROR if self.validating else None
            return TlsaLookup(name, status, detail=_text(e))
        records = tuple(sorted(_tlsa_text(r) for r in answer.rrset or ()))
        status = tlsa_status(bool(records), self._authenticated(answer))
        return TlsaLookup(name, status if self.validating else None, records)

    @staticmethod
    def _authenticated(answer: dns.resolver.Answer) -> bool:
        return bool(answer.response.flags & dns.flags.AD)

    def _host_dns(self, name: str, results: list[Any]) -> HostDns:
        addresses: list[str] = []
        canonical = None
        errors: list[Exception] = []
        for result in results:
            if isinstance(result, Exception):
                errors.append(result)
                continue
            if result.rrset:
                addresses.extend(r.address for r in result.rrset)
            if result.canonical_name.to_text().rstrip(".").lower() != name:
                canonical = result.canonical_name.to_text().rstrip(".").lower()
        if addresses:
            return HostDns(name, HostDnsOutcome.OK, tuple(addresses), canonical)
        if not errors:
            return HostDns(name, HostDnsOutcome.NO_ADDRESS, canonical=canonical)
        outcomes = {_outcome(e) for e in errors}
        # A definite NXDOMAIN beats a failure of the other family's query.
        for outcome in (HostDnsOutcome.NXDOMAIN, HostDnsOutcome.TIMEOUT, HostDnsOutcome.SERVFAIL):
            if outcome in outcomes:
                return HostDns(name, outcome, canonical=canonical, detail=_text(errors[0]))
        raise AssertionError("unreachable")

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType, dnssec: bool = False
    ) -> dns.resolver.Answer:
        """The answer to one question, CNAMEs followed as a resolver's answer is read;
        `dnssec`: asked with EDNS DO, so a validating resolver sets AD (RFC 6840 §5.8)."""
        reply = await self.client.query(name, rdtype, want_dnssec=dnssec)
        return dns.resolver.Answer(reply.question[0].name, rdtype, dns.rdataclass.IN, reply)

    async def close(self) -> None:
        self.client.close()


def _tlsa_text(record: Any) -> str:
    """`usage selector mtype hex`, as mx_dane shows each record."""
    return f"{record.usage} {record.selector} {record.mtype} {record.cert.hex()}"


def _text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]
