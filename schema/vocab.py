"""The stable vocabulary of mxcensus (see docs/design.md, "Vocabulary").

Reports, SQL views and users depend on these strings: add, never rename.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """A target's verdict, best to worst (after Facebook's STARTTLS report)."""

    STRICT = "strict"
    OPPORTUNISTIC = "opportunistic"
    FAILURE = "failure"
    NONE = "none"
    ERROR = "error"


class Reason(StrEnum):
    """Why strict validation failed; a target may have several."""

    SELF_SIGNED = "self_signed"
    UNTRUSTED_CA = "untrusted_ca"
    HOSTNAME_MISMATCH = "hostname_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WEAK_KEY = "weak_key"
    INVALID_CHAIN = "invalid_chain"


class ErrorCode(StrEnum):
    """One code per `error` or `failure` target."""

    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_TIMEOUT = "connection_timeout"
    UNREACHABLE = "unreachable"
    CONNECTION_CLOSED = "connection_closed"
    TIMEOUT = "timeout"
    GREETING_REJECTED = "greeting_rejected"
    EHLO_REJECTED = "ehlo_rejected"
    STARTTLS_REJECTED = "starttls_rejected"
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    PROTOCOL_ERROR = "protocol_error"


class Stage(StrEnum):
    """Where in the conversation an error or failure happened."""

    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    HELO = "helo"
    STARTTLS = "starttls"
    TLS = "tls"


class Flag(StrEnum):
    """Facts worth a flag that do not change the category."""

    EHLO_REFUSED = "ehlo_refused"
    POST_TLS_EHLO_FAILED = "post_tls_ehlo_failed"
    PLAINTEXT_AFTER_STARTTLS = "plaintext_after_starttls"
    # The target was judged by a certificate sent for another MX name: the IP's
    # SMTP_SNI_PROBES probes were used up before its own name's turn.
    SNI_PROBES_EXHAUSTED = "sni_probes_exhausted"


class DomainStatus(StrEnum):
    OK = "ok"
    NULL_MX = "null_mx"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    DNS_TIMEOUT = "dns_timeout"
    NO_MX_NO_ADDRESS = "no_mx_no_address"
    MX_WITHOUT_ADDRESS = "mx_without_address"
    INVALID = "invalid"


class HostDnsOutcome(StrEnum):
    """How resolving one MX host's addresses went."""

    OK = "ok"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    NO_ADDRESS = "no_address"


class SkipReason(StrEnum):
    """Why a target was deliberately not probed (its category is NULL)."""

    NON_PUBLIC_ADDRESS = "non_public_address"
    EXCLUDED = "excluded"
    IPV6_DISABLED = "ipv6_disabled"
    IP_LITERAL_MX = "ip_literal_mx"


# Transient outcomes are retried (docs/design.md): connection_timeout, a timeout or close
# before the EHLO reply, and a 4xx greeting or EHLO.
PRE_EHLO_STAGES = frozenset({Stage.CONNECT, Stage.BANNER, Stage.EHLO, Stage.HELO})


class TlsVersion(StrEnum):
    """A protocol version as OpenSSL names it, oldest first (`-a depth=protocols`)."""

    SSLV3 = "SSLv3"
    TLSV1 = "TLSv1"
    TLSV1_1 = "TLSv1.1"
    TLSV1_2 = "TLSv1.2"
    TLSV1_3 = "TLSv1.3"


class ProtocolStatus(StrEnum):
    """What one conversation pinned to one TLS version showed (docs/design.md, round 2)."""

    SUPPORTED = "supported"  # the handshake completed
    NOT_SUPPORTED = "not_supported"  # after the 220 to STARTTLS, no handshake came of it
    UNTESTABLE = "untestable"  # this scanner's OpenSSL cannot offer it: no connection made
    ERROR = "error"  # failed before the 220 to STARTTLS, or a stage timed out


class Depth(StrEnum):
    """Opt-in measurements beyond the main probe (`-a depth=`)."""

    PROTOCOLS = "protocols"
    POLICY = "policy"


class TlsaStatus(StrEnum):
    """What the TLSA lookup at `_25._tcp.MXHOST` said (RFC 7672, `-a depth=policy`)."""

    SECURE = "secure"  # records exist and validated (the resolver's AD bit)
    INSECURE = "insecure"  # records exist, not validated
    BOGUS = "bogus"  # SERVFAIL, answered when asked with CD: validation failed
    NONE = "none"  # NXDOMAIN or NODATA
    ERROR = "error"  # timeout, or SERVFAIL even with CD


class Dane(StrEnum):
    """A target's DANE verdict (RFC 7672 §3): NULL when DANE does not apply."""

    VALID = "valid"
    MISMATCH = "mismatch"


class DaneCoverage(StrEnum):
    """How many of a domain's MX hosts DANE protects."""

    ALL = "all"
    PARTIAL = "partial"
    NONE = "none"


class MtaSts(StrEnum):
    """A domain's MTA-STS state (RFC 8461)."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"
    INVALID = "invalid"


class TlsRpt(StrEnum):
    """A domain's TLS-RPT record (RFC 8460)."""

    VALID = "valid"
    INVALID = "invalid"
    NONE = "none"
