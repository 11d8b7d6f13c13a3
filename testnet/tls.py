"""Server-side TLS for polite servers: pyOpenSSL contexts built from a `TlsSpec`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from testnet.pki import Issued
from testnet.spec import TlsSpec

_VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}


def tls_key(spec: TlsSpec) -> tuple[object, ...]:
    """What makes two servers' TLS alike: they may share one ServerTls (its contexts)."""
    return (
        spec.chain,
        tuple(sorted(spec.sni.items())),
        spec.min_version,
        spec.max_version,
        spec.ciphers,
        spec.seclevel,
    )


class ServerTls:
    """One shared context per chain (building one per connection is costly); SNI picks."""

    def __init__(self, spec: TlsSpec, issued: Mapping[str, Issued]) -> None:
        self.default = _context(spec, spec.chain, issued)
        self._by_name = {name: _context(spec, chain, issued) for name, chain in spec.sni.items()}
        if self._by_name:
            self.default.set_tlsext_servername_callback(self._pick)

    def _pick(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        context = self._by_name.get(name.decode("ascii", "replace").lower()) if name else None
        if context is not None:
            connection.set_context(context)

    def creator(self, keep: Callable[[SSL.Connection], None]) -> IOpenSSLServerConnectionCreator:
        """A connection creator for `transport.startTLS` that hands the Connection to `keep`
        (so the protocol can read the SNI afterwards, even from a failed handshake)."""
        return _Creator(self.default, keep)


@implementer(IOpenSSLServerConnectionCreator)
class _Creator:
    def __init__(self, context: SSL.Context, keep: Callable[[SSL.Connection], None]) -> None:
        self._context = context
        self._keep = keep

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        self._keep(connection)
        return connection


def _context(spec: TlsSpec, chain: tuple[str, ...], issued: Mapping[str, Issued]) -> SSL.Context:
    context = SSL.Context(SSL.TLS_METHOD)
    ciphers = spec.ciphers
    if spec.seclevel is not None:
        # Must precede loading the certificate: at the default level OpenSSL refuses a weak
        # key outright ("ee key too small"), and TLS 1.0 needs level 0 for its SHA-1 MACs.
        ciphers += f":@SECLEVEL={spec.seclevel}"
    context.set_cipher_list(ciphers.encode("ascii"))
    if spec.min_version:
        context.set_min_proto_version(_VERSIONS[spec.min_version])
    if spec.max_version:
        context.set_max_proto_version(_VERSIONS[spec.max_version])
    leaf = issued[chain[0]]
    context.use_certificate(leaf.certificate)
    for name in chain[1:]:
        context.add_extra_chain_cert(issued[name].certificate)
    context.use_privatekey(leaf.key)
    context.check_privatekey()
    return context
