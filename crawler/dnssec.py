"""DNSSEC as mxcensus judges it: the AD bit of the validating resolver it is pointed at.

Like Postfix with `smtp_dns_support_level = dnssec`, mxcensus does not validate itself; it
asks with EDNS DO and trusts the AD bit of the resolver in `DNS_NAMESERVERS`. Whether that
resolver validates at all is checked once, at crawl start, with `DNSSEC_CHECK`: a question
whose answer must fail validation (default `dnssec-failed.org A`, a zone signed wrongly
on purpose). A validating resolver answers it SERVFAIL, and answers it when asked with CD
(checking disabled, RFC 4035 §3.2.2): the failure was validation, not the name. Without a
validating resolver every DNSSEC-derived fact is NULL, never false.

Pure: outcomes in, verdicts out; the `dns` handler does the asking.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.rdatatype

from schema.vocab import TlsaStatus

SMTP_TLSA_PREFIX = "_25._tcp."  # RFC 7672 §2.2: SMTP on port 25


@dataclass(frozen=True)
class DnssecCheck:
    """The crawl-start check of the resolver (recorded with the crawl)."""

    query: str  # "NAME TYPE"
    plain: str  # the rcode (or "timeout") of the query without CD
    with_cd: str  # and with CD

    @property
    def validating(self) -> bool:
        return self.plain == "SERVFAIL" and self.with_cd in ("NOERROR", "NXDOMAIN")

    def describe(self) -> str:
        verdict = "validates" if self.validating else "does NOT validate"
        return (
            f"the resolver {verdict}: {self.query} answered {self.plain}, "
            f"{self.with_cd} with CD (a validating resolver answers SERVFAIL, and answers with CD)"
        )


def parse_check(text: str) -> tuple[str, dns.rdatatype.RdataType]:
    """`DNSSEC_CHECK`: `NAME TYPE`; raises ValueError."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"DNSSEC_CHECK={text!r}: expected 'NAME TYPE', e.g. 'dnssec-failed.org A'")
    try:
        return parts[0], dns.rdatatype.from_text(parts[1])
    except dns.rdatatype.UnknownRdatatype as e:
        raise ValueError(f"DNSSEC_CHECK={text!r}: unknown type {parts[1]!r}") from e


@dataclass(frozen=True, slots=True)
class TlsaLookup:
    """An MX host's TLSA RRset (RFC 7672 §2.2), looked up once with its addresses."""

    name: str  # the owner asked last: _25._tcp.BASE
    status: TlsaStatus | None  # None: the resolver does not validate
    records: tuple[str, ...] = ()  # "usage selector mtype hex", sorted
    detail: str | None = None

    @property
    def base(self) -> str:
        return self.name.removeprefix(SMTP_TLSA_PREFIX)


def tlsa_bases(name: str, canonical: str | None, secure_expansion: bool) -> tuple[str, ...]:
    """The TLSA base names to try, in order (RFC 7672 §2.2.2): a securely expanded CNAME's
    target first, then the name as published; an insecure expansion only the latter."""
    if canonical and canonical != name and secure_expansion:
        return canonical, name
    return (name,)


def tlsa_status(found: bool, authenticated: bool) -> TlsaStatus:
    """A NOERROR answer's status: records validated, records not validated, or none."""
    if not found:
        return TlsaStatus.NONE
    return TlsaStatus.SECURE if authenticated else TlsaStatus.INSECURE
