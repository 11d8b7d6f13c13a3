"""The `mta-sts` download handler: a domain's MTA-STS policy over HTTPS (RFC 8461 §3.3).

`mta-sts://example.org` fetches `https://mta-sts.example.org/.well-known/mta-sts.txt`
and returns a `PolicyResponse` whose `fetch` is a `PolicyFetch`. A handler of its own,
on Twisted's Agent and pyOpenSSL, because Scrapy's HTTPS client does not verify
certificates and `DOWNLOAD_VERIFY_CERTIFICATES` trusts the system store for every request
(docs/design.md, "Known pitfalls"), while here the certificate is part of the fact:

- the policy host is resolved through `DNS_NAMESERVERS` (the crawl's resolver, not the
  system's), and `ALLOW_NONPUBLIC_TARGETS` and `EXCLUDE_FILE` apply to it and its address;
- the connection goes to `MTA_STS_PORT` (443; the test network serves unprivileged) and
  its certificate must chain to `TLS_CA_BUNDLE` and name `mta-sts.DOMAIN` (Twisted's
  `optionsForClientTLS`: OpenSSL's verification, RFC 6125 names by service_identity);
- redirects are not followed (RFC 8461 §3.3), the status must be 200, the media type
  `text/plain`, and the body at most 64 KiB (a longer one is cut off, not read on);
- at most `MTA_STS_MAX_PER_IP` fetches at a time go to one address (providers serve
  many domains' policies), each within `MTA_STS_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.rdatatype
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.http import Response
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from crawler.handlers.dns import build_client
from crawler.mtasts import MAX_POLICY_BYTES, POLICY_HOST_PREFIX, POLICY_PATH
from crawler.record import ca_bundle_path
from crawler.targets import Exclusions, TargetPolicy

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

USER_AGENT = b"mxcensus (MTA-STS policy fetch; RFC 8461)"
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class PolicyFetch:
    """One policy fetch: what came back, or why nothing usable did."""

    url: str
    ip: str | None = None
    status: int | None = None  # HTTP status
    content_type: str | None = None
    text: str | None = None  # the body, when status 200, text/plain and <= 64 KiB
    error: str | None = None
    skipped: bool = False  # deliberately not fetched (EXCLUDE_FILE, non-public address)


class PolicyResponse(Response):
    attributes: tuple[str, ...] = (*Response.attributes, "fetch")

    def __init__(self, *args: Any, fetch: PolicyFetch, **kwargs: Any):
        self.fetch = fetch
        super().__init__(*args, **kwargs)


class _Body(Protocol):
    """Collects a response body up to MAX_POLICY_BYTES; past that, stops reading."""

    def __init__(self, done: Deferred[tuple[bytes, bool]]):
        self.done = done
        self.chunks: list[bytes] = []
        self.size = 0
        self.oversized = False

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_POLICY_BYTES:
            if not self.oversized:
                self.oversized = True
                self.transport.stopProducing()  # drop the connection: no more is read
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:
        if not self.done.called:
            self.done.callback((b"".join(self.chunks), self.oversized))


class _Endpoints:
    """Agent endpoints to the address already resolved (the URI keeps the name, for
    Host, SNI and the certificate check)."""

    def __init__(self, ip: str, port: int, options: Any, timeout: float):
        self.ip, self.port, self.options, self.timeout = ip, port, options, timeout

    def endpointForURI(self, uri: Any) -> Any:
        from twisted.internet import reactor
        from twisted.internet.endpoints import (
            TCP4ClientEndpoint,
            TCP6ClientEndpoint,
            wrapClientTLS,
        )

        tcp = TCP6ClientEndpoint if ":" in self.ip else TCP4ClientEndpoint
        return wrapClientTLS(self.options, tcp(reactor, self.ip, self.port, self.timeout))


class PolicyDownloadHandler(BaseDownloadHandler):
    lazy = True  # built on the first policy request: a crawl without the depth pays nothing

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        from twisted.internet.ssl import Certificate, trustRootFromCertificates

        settings = crawler.settings
        self.client = build_client(settings)
        self.port = settings.getint("MTA_STS_PORT")
        self.timeout = settings.getfloat("MTA_STS_TIMEOUT")
        self.per_ip = max(1, settings.getint("MTA_STS_MAX_PER_IP"))
        if not 0 < self.port < 65536 or self.timeout <= 0:
            raise ValueError("MTA_STS_PORT must be 1-65535 and MTA_STS_TIMEOUT > 0")
        with open(ca_bundle_path(settings), "rb") as bundle:
            pems = _PEM_CERT.findall(bundle.read())
        self.trust = trustRootFromCertificates([Certificate.loadPEM(pem) for pem in pems])
        self.targets = TargetPolicy(
            allow_nonpublic=settings.getbool("ALLOW_NONPUBLIC_TARGETS"),
            ipv6=settings.get("SMTP_IPV6"),
            exclusions=Exclusions.from_file(settings.get("EXCLUDE_FILE")),
        )
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def download_request(self, request: Request) -> Response:
        started = time.monotonic()
        domain = urlparse_cached(request).hostname or ""
        fetch = await self.fetch(domain)
        request.meta["download_latency"] = time.monotonic() - started
        return PolicyResponse(url=request.url, request=request, fetch=fetch)

    def policy_url(self, domain: str) -> str:
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{POLICY_HOST_PREFIX}{domain}{port}{POLICY_PATH}"

    async def fetch(self, domain: str) -> PolicyFetch:
        host = POLICY_HOST_PREFIX + domain
        url = self.policy_url(domain)
        if self.targets.exclusions.excludes_domain(host):
            return PolicyFetch(url, error="excluded (EXCLUDE_FILE)", skipped=True)
        ip, why, skipped = await self._address(host)
        if ip is None:
            return PolicyFetch(url, error=why, skipped=skipped)
        slot = self._slots.setdefault(ip, asyncio.Semaphore(self.per_ip))
        async with slot:
            try:
                return await asyncio.wait_for(self._get(url, host, ip), self.timeout)
            except TimeoutError:
                return PolicyFetch(url, ip, error=f"timeout after {self.timeout:g} s")
            except Exception as e:
                return PolicyFetch(url, ip, error=_text(e))

    async def _address(self, host: str) -> tuple[str | None, str | None, bool]:
        """The first address of the policy host that may be connected to, or why none
        (and whether it was a deliberate skip: addresses, all excluded or non-public)."""
        reasons = []
        skipped = False
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                reply = await self.client.query(host, rdtype)
            except Exception as e:
                reasons.append(_text(e))
                continue
            for rrset in reply.answer:
                for rdata in rrset if rrset.rdtype == rdtype else ():
                    skip = self.targets.skip_reason(rdata.address, host)
                    if skip is None:
                        return rdata.address, None, False
                    reasons.append(f"{rdata.address}: {skip}")
                    skipped = True
        why = f"{host}: no address to connect to ({'; '.join(reasons) or 'none'})"
        return None, why, skipped

    async def _get(self, url: str, host: str, ip: str) -> PolicyFetch:
        from twisted.internet import reactor
        from twisted.internet.ssl import optionsForClientTLS
        from twisted.web.client import Agent
        from twisted.web.http_headers import Headers

        options = optionsForClientTLS(host, trustRoot=self.trust)
        agent = Agent.usingEndpointFactory(
            reactor, _Endpoints(ip, self.port, options, self.timeout)
        )
        # Agent follows no redirects (RedirectAgent would): a 3xx is the answer.
        response = await maybe_deferred_to_future(
            agent.request(b"GET", url.encode("ascii"), Headers({b"User-Agent": [USER_AGENT]}))
        )
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode(
            "latin-1"
        )
        done: Deferred[tuple[bytes, bool]] = Deferred()
        response.deliverBody(_Body(done))
        body, oversized = await maybe_deferred_to_future(done)
        fetch = PolicyFetch(url, ip, response.code, content_type or None)
        media = content_type.split(";")[0].strip().lower()
        if response.code != 200:
            return _error(fetch, f"HTTP {response.code} (redirects are not followed)")
        if media != "text/plain":
            return _error(fetch, f"media type {media or 'missing'!r}, not text/plain")
        if oversized:
            return _error(fetch, f"policy larger than {MAX_POLICY_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(fetch, "policy is not UTF-8")
        return PolicyFetch(url, ip, response.code, content_type, text)

    async def close(self) -> None:
        self.client.close()


def _error(fetch: PolicyFetch, error: str) -> PolicyFetch:
    return PolicyFetch(fetch.url, fetch.ip, fetch.status, fetch.content_type, None, error)


def _text(error: BaseException) -> str:
    """The failure as one line; a TLS failure's reasons are inside Twisted's wrappers."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        error = reasons[0].value
    text = f"{type(error).__name__}: {error}"
    return text[:500]
