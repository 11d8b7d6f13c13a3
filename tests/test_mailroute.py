"""The pure mail-routing decisions: null MX, implicit MX, IP literals, status."""

import pytest

from crawler.handlers.dns import parse_nameservers
from crawler.mailroute import (
    HostDns,
    MxRecord,
    domain_status,
    implicit_status,
    is_ip_literal,
    parse_mx,
)
from schema.vocab import DomainStatus, HostDnsOutcome

OK = HostDnsOutcome.OK


def test_parse_mx_orders_by_preference_and_normalises_names():
    null, mx = parse_mx(
        [(20, "MX2.Example.ORG."), (10, "mx1.example.org."), (30, "mx1.example.org.")]
    )
    assert not null
    assert mx == (MxRecord("mx1.example.org", 10), MxRecord("mx2.example.org", 20))


def test_null_mx_is_a_single_root_exchange():
    """RFC 7505: `MX 0 .` says the domain accepts no mail."""
    assert parse_mx([(0, ".")]) == (True, ())


def test_root_exchange_beside_real_ones_is_ignored():
    assert parse_mx([(0, "."), (10, "mx.example.org.")]) == (
        False,
        (MxRecord("mx.example.org", 10),),
    )


def test_no_mx_records():
    assert parse_mx([]) == (False, ())


def test_ip_literals():
    assert is_ip_literal("192.0.2.1")
    assert is_ip_literal("[2001:db8::1]")
    assert not is_ip_literal("mx.example.org")


def test_status_ok_when_any_host_has_an_address():
    mx = (MxRecord("a.example", 10), MxRecord("b.example", 20))
    hosts = (
        HostDns("a.example", HostDnsOutcome.NXDOMAIN),
        HostDns("b.example", OK, ("192.0.2.1",)),
    )
    assert domain_status(mx, hosts) is DomainStatus.OK


def test_status_mx_without_address():
    mx = (MxRecord("a.example", 10),)
    hosts = (HostDns("a.example", HostDnsOutcome.NO_ADDRESS),)
    assert domain_status(mx, hosts) is DomainStatus.MX_WITHOUT_ADDRESS


@pytest.mark.parametrize(
    ("outcomes", "status"),
    [
        ((HostDnsOutcome.TIMEOUT, HostDnsOutcome.SERVFAIL), DomainStatus.DNS_TIMEOUT),
        ((HostDnsOutcome.SERVFAIL, HostDnsOutcome.SERVFAIL), DomainStatus.SERVFAIL),
        ((HostDnsOutcome.TIMEOUT, HostDnsOutcome.NXDOMAIN), DomainStatus.MX_WITHOUT_ADDRESS),
    ],
)
def test_a_domain_whose_mx_lookups_all_failed_is_a_dns_failure(outcomes, status):
    """docs/design.md: when every MX host's lookup failed, the domain is dns_timeout if
    any timed out, else servfail; a host known to have no address is an answer."""
    mx = tuple(MxRecord(f"{i}.example", 10 * i) for i in range(len(outcomes)))
    hosts = tuple(HostDns(f"{i}.example", o) for i, o in enumerate(outcomes))
    assert domain_status(mx, hosts) is status


def test_an_ip_literal_exchange_is_a_target_not_a_missing_address():
    mx = (MxRecord("192.0.2.9", 10),)
    hosts = (HostDns("192.0.2.9", HostDnsOutcome.NO_ADDRESS, ip_literal=True),)
    assert domain_status(mx, hosts) is DomainStatus.OK


def test_nameserver_setting_forms():
    assert parse_nameservers("127.0.0.1, 127.53.0.1:5353,[::1]:5300,::1") == [
        ("127.0.0.1", 53),
        ("127.53.0.1", 5353),
        ("::1", 5300),
        ("::1", 53),
    ]
    assert parse_nameservers("") == []


def test_nameserver_setting_rejects_names():
    import pytest

    with pytest.raises(ValueError, match="not an IP"):
        parse_nameservers("dns.example.org")


def test_a_domain_without_mx_takes_its_status_from_its_own_address_lookup():
    """RFC 5321 §5.1: a failed lookup is a DNS error, not "no address"."""
    name = "example.org"
    assert implicit_status(HostDns(name, OK, ("192.0.2.1",))) is DomainStatus.OK
    assert (
        implicit_status(HostDns(name, HostDnsOutcome.NO_ADDRESS)) is DomainStatus.NO_MX_NO_ADDRESS
    )
    assert implicit_status(HostDns(name, HostDnsOutcome.NXDOMAIN)) is DomainStatus.NO_MX_NO_ADDRESS
    assert implicit_status(HostDns(name, HostDnsOutcome.TIMEOUT)) is DomainStatus.DNS_TIMEOUT
    assert implicit_status(HostDns(name, HostDnsOutcome.SERVFAIL)) is DomainStatus.SERVFAIL
