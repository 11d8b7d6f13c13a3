"""The download handlers on their own, against the real test network, in the
style of Scrapy's handler tests: `build_from_crawler` and real loopback servers."""

from __future__ import annotations

from itertools import combinations

import pytest
from scrapy import Request
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler
from twisted.internet.defer import DeferredList

from crawler.handlers.dns import DnsDownloadHandler, DnsResponse
from crawler.handlers.smtp import SmtpDownloadHandler, SmtpResponse
from crawler.settings import __dict__ as project_settings
from crawler.spiders.tld_mx import smtp_url
from demo.scan import scanner_settings
from tests.reactor import wait

PROJECT = {k: v for k, v in project_settings.items() if k.isupper()}


def handler(cls, net, **overrides):
    settings = {**PROJECT, **scanner_settings(net), **overrides}
    return build_from_crawler(cls, get_crawler(settings_dict=settings))


def test_dns_handler_gives_every_domain_its_declared_status(reactor, net, spec):
    dns = handler(DnsDownloadHandler, net)
    domains = list(spec.expected_domains())
    requests = [Request(f"dns://{d}") for d in domains]
    results = wait(
        reactor,
        DeferredList(
            [deferred_from_coro(dns.download_request(r)) for r in requests], fireOnOneErrback=True
        ),
    )
    responses = [response for _, response in results]
    assert all(isinstance(r, DnsResponse) for r in responses)
    assert {r.facts.domain: str(r.facts.status) for r in responses} == {
        d: str(s) for d, s in spec.expected_domains().items()
    }
    # A host named by several domains was looked up once: every domain holds the same result.
    by_name: dict[str, list] = {}
    for response in responses:
        for host in response.facts.hosts:
            by_name.setdefault(host.name, []).append(host)
    shared = [hosts for hosts in by_name.values() if len(hosts) > 1]
    assert shared and all(all(h is hosts[0] for h in hosts) for hosts in shared)


# The server logs a connection's end when it has seen the close; the client may
# open the next one a moment before that. Less than this is not two conversations.
CLOSE_SLACK = 0.05  # seconds


def overlapping(conns) -> int:
    """How many pairs of these connections were open at the same time."""
    return sum(
        1
        for a, b in combinations(conns, 2)
        if a["start"] < b["end"] - CLOSE_SLACK and b["start"] < a["end"] - CLOSE_SLACK
    )


@pytest.mark.parametrize(("cap", "overlaps"), [(1, False), (3, True)])
def test_smtp_handler_caps_connections_per_ip(reactor, net, spec, cap, overlaps):
    """Several probes of one IP (as SNI probes will be) wait for one another
    under SMTP_MAX_PER_IP=1; with a cap of 3 they overlap: the cap is the cause."""
    server = next(s for s in spec.servers.values() if s.esmtp and s.esmtp.banner_delay >= 1)
    smtp = handler(SmtpDownloadHandler, net, SMTP_MAX_PER_IP=cap)
    url = smtp_url(server.ip, net.smtp_port)
    names = [f"name{i}.{cap}.cap.test" for i in range(3)]
    before = len(net.connections())
    requests = [Request(url, meta={"sni": name}) for name in names]
    results = wait(
        reactor,
        DeferredList(
            [deferred_from_coro(smtp.download_request(r)) for r in requests], fireOnOneErrback=True
        ),
        timeout=60,
    )
    probes = [response.probe for _, response in results]
    assert all(isinstance(response, SmtpResponse) for _, response in results)
    assert [p.sni for p in probes] == names
    assert all(p.final.banner and p.final.banner.code == 220 for p in probes)
    conns = [c for c in net.connections()[before:] if c["ip"] == server.ip]
    assert len(conns) == 3
    assert (overlapping(conns) > 0) is overlaps


@pytest.mark.parametrize(
    ("host", "outcome", "kept"),
    [
        ("mx.partial.test", "ok", True),
        ("gone.partial.test", "nxdomain", True),
        ("slow.partial.test", "timeout", False),
        ("broken.partial.test", "servfail", False),
    ],
)
def test_a_failed_mx_host_lookup_is_asked_again(reactor, net, host, outcome, kept):
    """An answer about an MX host is kept for every domain naming it; a timeout or
    SERVFAIL is not: one lost packet must not cost every domain of a hoster."""
    dns = handler(DnsDownloadHandler, net, DNS_TIMEOUT=0.3, DNS_TRIES=1)

    async def twice():
        return await dns.resolve_host(host), await dns.resolve_host(host)

    first, second = wait(reactor, deferred_from_coro(twice()), timeout=30)
    assert (str(first.outcome), str(second.outcome)) == (outcome, outcome)
    assert (first is second) is kept
