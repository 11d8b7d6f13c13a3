"""The names a certificate presents, and whether one matches an MX host (RFC 6125 §6.4).

Shared by the spider (does an MX name need its own SNI probe?) and the verdicts
(`pipelines.verify`): pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

from crawler.mailroute import is_ip_literal


def name_matches(mx_host: str, names: Sequence[str]) -> bool:
    """RFC 6125 §6.4: does any presented DNS name (SAN dNSName or CN) match `mx_host`?"""
    host = _a_label(mx_host)
    if host is None or "*" in host:  # a wildcard is presented, never referenced
        return False
    return any(_name_matches(host, name) for name in names)


@lru_cache(maxsize=4096)  # a hoster's certificate comes back from each of its IPs
def certificate_names(der: bytes) -> tuple[str, ...]:
    """The names a leaf presents for matching (SAN dNSNames, else its CNs); () when
    unreadable. The spider uses it to decide whether an MX name needs its own SNI probe."""
    try:
        return presented_names(x509.load_der_x509_certificate(der))[0]
    except Exception:  # unreadable: no name presented, as judge_chain decides
        return ()


def presented_names(cert: x509.Certificate) -> tuple[tuple[str, ...], bool]:
    """The leaf's names for matching, and whether they came from a SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    if dns_names:
        return tuple(name.lower() for name in dns_names), True
    # RFC 6125 §6.4.4: the CN is a reference only when there is no DNS-ID (SAN dNSName),
    # e.g. no SAN at all or a SAN of IP addresses only.
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(cn.value.lower() for cn in cns if isinstance(cn.value, str)), False


def _name_matches(host: str, presented: str) -> bool:
    first, _, rest = presented.partition(".")
    if first == "*":
        # §6.4.3: the wildcard is the entire left-most label and stands for exactly one
        # non-empty label. A remainder of one label (*.org) would cover a whole TLD.
        suffix = _a_label(rest)
        if suffix is None or "*" in suffix or "." not in suffix:
            return False
        host_first, _, host_rest = host.partition(".")
        return bool(host_first) and host_rest == suffix
    # A "*" anywhere else (f*.example.org, *.*.example.org, xn--*…) never matches.
    name = _a_label(presented)
    return name is not None and "*" not in name and name == host


def _a_label(name: str) -> str | None:
    """`name` lower-cased with IDN labels as A-labels (§6.4.2), or None: never matches.

    An all-ASCII name is only lower-cased: IDNA2008 would reject ordinary host names
    such as "mx--1.example" (hyphens in 3rd and 4th position).
    """
    name = name.removesuffix(".")  # a trailing dot is the same absolute name
    if not name or is_ip_literal(name):  # an IP address is never a DNS-ID (§6.4, §1.7.2)
        return None
    if name.isascii():
        labels = name.lower().split(".")
        return None if "" in labels else ".".join(labels)
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None
