"""The legacy-capable opportunistic TLS client: one shared context, SNI per
connection, and the negotiated session read as plain facts.

Like a sending MTA (RFC 3207 §4.1: a publicly-referenced server must not
require TLS, so clients take what they get), the probe negotiates TLS 1.0-1.3 at
OpenSSL security level 0 and verifies nothing during the handshake: the chain
is captured here and judged later, against the trust store, at scan time.
"""

from __future__ import annotations

import functools
import ipaddress

import idna
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from crawler.smtp.facts import TlsFacts
from schema.vocab import TlsVersion

# No anonymous, unencrypted or pre-shared-key suites; everything else,
# however weak, so that a weak server yields a session whose weakness is recorded.
LEGACY_CIPHERS = b"ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0"

# Key exchanges of TLS <= 1.2 cipher names (OpenSSL spelling) with ephemeral keys.
_EPHEMERAL_KX = frozenset({"ECDHE", "DHE", "EDH"})


def legacy_context() -> SSL.Context:
    """Build a new client context; use `client_context()` unless you need your own."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(0)  # down to the lowest version OpenSSL supports
    ctx.set_max_proto_version(0)
    ctx.set_cipher_list(LEGACY_CIPHERS)  # TLS 1.3 suites stay OpenSSL's default
    # Old servers without secure renegotiation (RFC 5746) are refused by
    # default since OpenSSL 3; a sending MTA still talks to them.
    ctx.set_options(SSL.OP_NO_TICKET | getattr(SSL, "OP_LEGACY_SERVER_CONNECT", 0))
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


@functools.cache
def client_context() -> SSL.Context:
    """The one client context of the process, shared by every probe: building
    one per probe is costly (docs/design.md, "Known pitfalls")."""
    return legacy_context()


# OpenSSL's number for each version a protocol conversation pins (min = max).
_PROTOCOL_NUMBERS = {
    TlsVersion.SSLV3: SSL.SSL3_VERSION,
    TlsVersion.TLSV1: SSL.TLS1_VERSION,
    TlsVersion.TLSV1_1: SSL.TLS1_1_VERSION,
    TlsVersion.TLSV1_2: SSL.TLS1_2_VERSION,
    TlsVersion.TLSV1_3: SSL.TLS1_3_VERSION,
}


@functools.cache
def pinned_context(version: TlsVersion) -> SSL.Context | None:
    """The shared client context offering exactly `version` (the legacy cipher list at
    TLS <= 1.2, OpenSSL's suites at 1.3); None when this OpenSSL cannot offer it
    (SSLv3 in today's builds): such a version is untestable, and no connection is made."""
    context = legacy_context()
    try:
        context.set_min_proto_version(_PROTOCOL_NUMBERS[version])
        context.set_max_proto_version(_PROTOCOL_NUMBERS[version])
    except SSL.Error:
        return None  # a version this OpenSSL was built without
    return context if _writes_client_hello(context) else None


def _writes_client_hello(context: SSL.Context) -> bool:
    """Whether a handshake from this context gets as far as its ClientHello: a version
    OpenSSL knows but will not use (no cipher for it, or disabled) fails here."""
    connection = SSL.Connection(context, None)  # memory BIO: nothing is sent
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        return bool(connection.bio_read(1 << 16))  # the ClientHello, waiting for a reply
    except SSL.Error:
        return False
    return False


def sni_name(mx_host: str) -> bytes | None:
    """The server name to send for `mx_host`: A-label ASCII, lower-case, without
    the trailing dot; None for an IP literal (RFC 6066 §3 forbids them)."""
    name = mx_host.strip().rstrip(".")
    if not name:
        return None
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return None
    if name.isascii():
        return name.lower().encode("ascii")  # DNS already gives A-labels
    try:
        return idna.encode(name, uts46=True)  # IDNA 2008, as registries use
    except idna.IDNAError:
        return None  # not a sendable host name: send no SNI rather than garbage


@implementer(IOpenSSLClientConnectionCreator)
class SniConnectionCreator:
    """Makes each `Connection` from one shared context, with its own SNI.

    Twisted sets the connect state and overwrites `app_data` itself
    (`protocols/_tls_legacy.py`), so neither is touched here."""

    def __init__(self, context: SSL.Context, server_name: str) -> None:
        self.context = context
        self.server_name = sni_name(server_name)

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if self.server_name is not None:
            connection.set_tlsext_host_name(self.server_name)
        return connection


def has_forward_secrecy(version: str, cipher: str) -> bool:
    """TLS 1.3 key exchange is always ephemeral (RFC 8446 §2); before it, only
    (EC)DHE suites are, which OpenSSL names by their first component."""
    if version == "TLSv1.3":
        return True
    return cipher.split("-", 1)[0] in _EPHEMERAL_KX


def kx_group(connection: SSL.Connection) -> str | None:
    """The negotiated key-exchange group, when this pyOpenSSL/OpenSSL can say."""
    get_group_name = getattr(connection, "get_group_name", None)
    if get_group_name is None:
        return None
    try:
        return get_group_name() or None
    except (NotImplementedError, SSL.Error):
        return None


def chain_der(connection: SSL.Connection) -> tuple[bytes, ...]:
    """The chain as the server sent it, leaf first, as DER. Kept raw: parsing
    with `as_cryptography=True` raises on certificates OpenSSL accepted."""
    chain = connection.get_peer_cert_chain() or []
    return tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in chain)


def read_tls_facts(connection: SSL.Connection) -> TlsFacts:
    """Read the session of a connection whose handshake has completed."""
    version = connection.get_protocol_version_name()
    cipher = connection.get_cipher_name() or ""
    return TlsFacts(
        version=version,
        cipher=cipher,
        forward_secrecy=has_forward_secrecy(version, cipher),
        kx_group=kx_group(connection),
        chain_der=chain_der(connection),
    )
