"""Where a domain's mail goes: the pure decisions of RFC 5321 §5.1 and RFC 7505.

The DNS download handler does the lookups; this module decides what they mean
(null MX, implicit MX, IP-literal exchanges, the domain's status), so every
decision is testable without a network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from crawler.dnssec import TlsaLookup
from crawler.mtasts import PolicyTxt
from schema.vocab import DomainStatus, HostDnsOutcome


@dataclass(frozen=True, slots=True)
class HostDns:
    """The addresses of one MX host, resolved once per run."""

    name: str  # as published in the MX record (used for SNI and name matching)
    outcome: HostDnsOutcome
    addresses: tuple[str, ...] = ()  # A records first, then AAAA
    canonical: str | None = None  # the CNAME target, when the name is an alias
    detail: str | None = None  # resolver's text when the outcome is not ok
    ip_literal: bool = False  # the exchange was an IP address: never resolved or probed
    # -a depth=policy only (None otherwise, and without a validating resolver):
    dnssec: bool | None = None  # every address answer validated (the resolver's AD bit)
    tlsa: TlsaLookup | None = None  # the TLSA RRset at _25._tcp.NAME (RFC 7672)


@dataclass(frozen=True)
class MxRecord:
    host: str
    preference: int
    implicit: bool = False  # RFC 5321 §5.1: no MX, the domain itself receives mail


@dataclass(frozen=True)
class DomainDns:
    """Everything DNS said about one domain's mail routing."""

    domain: str
    status: DomainStatus
    mx: tuple[MxRecord, ...] = ()
    hosts: tuple[HostDns, ...] = ()  # one per distinct MX host (or the implicit one)
    null_mx: bool = False
    detail: str | None = None  # resolver's text for a non-ok status
    mx_rrset: tuple[str, ...] = ()  # the MX answer as text, for the record
    # -a depth=policy only: the MX RRset (or the implicit MX's addresses) validated.
    dnssec: bool | None = None
    policy: bool = False  # resolved with -a depth=policy (DNSSEC facts asked for)
    txt: PolicyTxt | None = None  # -a depth=policy: the MTA-STS and TLS-RPT records

    @property
    def mx_count(self) -> int:
        """MX hosts named by MX records (0 for implicit and null MX)."""
        return sum(1 for r in self.mx if not r.implicit)


def host_name(exchange: str) -> str:
    """An MX exchange as stored: lower-case, without the root dot."""
    return exchange.rstrip(".").lower()


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def parse_mx(records: list[tuple[int, str]]) -> tuple[bool, tuple[MxRecord, ...]]:
    """Return (null_mx, MX records by preference) from (preference, exchange) pairs.

    RFC 7505: a single `MX 0 .` means the domain accepts no mail. A "." among
    other records is a misconfiguration; senders ignore it, so do we.
    """
    named = [(pref, host_name(ex)) for pref, ex in records if host_name(ex)]
    if not named:
        return bool(records), ()
    best: dict[str, int] = {}
    for pref, name in named:
        best[name] = min(pref, best.get(name, pref))
    ordered = sorted(best.items(), key=lambda kv: (kv[1], kv[0]))
    return False, tuple(MxRecord(name, pref) for name, pref in ordered)


def domain_status(mx: tuple[MxRecord, ...], hosts: tuple[HostDns, ...]) -> DomainStatus:
    """The status of a domain whose MX query answered (with records or without)."""
    if any(h.outcome is HostDnsOutcome.OK or h.ip_literal for h in hosts):
        return DomainStatus.OK
    outcomes = {h.outcome for h in hosts}
    if outcomes and outcomes <= {HostDnsOutcome.TIMEOUT, HostDnsOutcome.SERVFAIL}:
        # Every lookup failed: the DNS, not the domain, is what we know about.
        if HostDnsOutcome.TIMEOUT in outcomes:
            return DomainStatus.DNS_TIMEOUT
        return DomainStatus.SERVFAIL
    if mx and not all(r.implicit for r in mx):
        return DomainStatus.MX_WITHOUT_ADDRESS
    return DomainStatus.NO_MX_NO_ADDRESS


def implicit_status(host: HostDns) -> DomainStatus:
    """The status of a domain without MX records, from its own address lookup
    (RFC 5321 §5.1); only a failed lookup is a DNS error, no address is not."""
    failures = {
        HostDnsOutcome.TIMEOUT: DomainStatus.DNS_TIMEOUT,
        HostDnsOutcome.SERVFAIL: DomainStatus.SERVFAIL,
    }
    if host.outcome is HostDnsOutcome.OK:
        return DomainStatus.OK
    return failures.get(host.outcome, DomainStatus.NO_MX_NO_ADDRESS)
