"""Run a spec: make the PKI, bind every address, serve DNS and SMTP in one reactor.

Two ways to listen for SMTP. By default one socket per server address, all on one port.
A spec with `[network] dispatch = true` (a benchmark world of 10^5-10^6 domains has more
servers than this machine has file descriptors) gets one wildcard socket, 0.0.0.0:PORT
bound to the loopback device, whose connections are handed to the server whose address
they were made to (the connection's local address); IPv6 servers keep their own sockets.
In that mode servers (and their TLS contexts, ~26 KB each) are built on first connection,
not at start, and an address with no server is closed at once, as are the declared dead
ones (a wildcard listener accepts every address, so nothing can answer "refused").
"""

from __future__ import annotations

import gc
import ipaddress
import os
import resource
import socket
import subprocess
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.interfaces import (
    IHandshakeListener,
    IReactorCore,
    IReactorSocket,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.names.dns import DNSDatagramProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from testnet import https, pki, resolver, sockets
from testnet.connlog import ConnectionLog
from testnet.dns import SpecDNSFactory
from testnet.dnssec import SignedZone
from testnet.hostile import ScriptFactory
from testnet.policy import policy_of
from testnet.smtp import EsmtpFactory
from testnet.spec import ServerSpec, Spec, TlsSpec
from testnet.state import STATE_FILE, State
from testnet.tls import ServerTls, tls_key

# TLS contexts kept at once in dispatch mode (least recently used dropped).
DISPATCH_TLS_CONTEXTS = 2048
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
DNS_RECEIVE_BUFFER = 4 << 20  # bytes asked for the DNS server's UDP socket


@dataclass
class Listening:
    """What one running testnet holds: ports, and the raw sockets of the dead addresses."""

    smtp_port: int
    dns_port: int
    signed: SignedZone | None = None  # the DNSSEC-signed zone, when the spec has one
    mta_sts_port: int = 0  # the HTTPS policy servers' port (0: none)
    held: list[socket.socket] = field(default_factory=list)
    blackholes: list[sockets.Blackhole] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.held:
            sock.close()
        for hole in self.blackholes:
            for filler in hole.fillers:
                filler.close()
            hole.sock.close()


class ServerFactories:
    """The protocol factory of each server: all built at start (a bad certificate fails
    before anything binds), or, lazily, one per connection (dispatch mode)."""

    def __init__(
        self,
        spec: Spec,
        issued: dict[str, pki.Issued],
        log: ConnectionLog,
        clock: IReactorTime,
        delay: float = 0.0,
        lazy: bool = False,
    ) -> None:
        self.issued = issued
        self.log = log
        self.clock = clock
        self.delay = delay
        self.by_ip = {s.ip: s for s in spec.servers.values()}
        self.limit = DISPATCH_TLS_CONTEXTS if lazy else None
        self.contexts: OrderedDict[tuple[object, ...], ServerTls] = OrderedDict()
        self.built: dict[str, Factory] = {}
        if not lazy:
            for server in spec.servers.values():
                factory = self.build(server)
                if factory is not None:
                    self.built[server.name] = factory

    def get(self, server: ServerSpec) -> Factory | None:
        return self.built.get(server.name) or self.build(server)

    def build(self, server: ServerSpec) -> Factory | None:
        factory: Factory | None = None
        if server.kind == "esmtp":
            assert server.esmtp is not None
            tls = self.tls(server.esmtp.tls) if server.esmtp.tls else None
            factory = EsmtpFactory(server, tls, self.log, self.clock, self.delay)
        elif server.kind == "script":
            factory = ScriptFactory(server, self.log, self.clock)
        if factory is not None:
            factory.noisy = False
        return factory

    def tls(self, spec: TlsSpec) -> ServerTls:
        """One context per distinct TLS setup, shared by the servers that have it."""
        key = tls_key(spec)
        found = self.contexts.get(key)
        if found is None:
            found = self.contexts[key] = ServerTls(spec, self.issued)
            if self.limit is not None and len(self.contexts) > self.limit:
                self.contexts.popitem(last=False)
        else:
            self.contexts.move_to_end(key)
        return found


@implementer(IHandshakeListener)
class Dispatch(Protocol):
    """A connection to the wildcard socket: passed on to the server at its local address."""

    def __init__(self, servers: ServerFactories) -> None:
        self.servers = servers
        self.inner: Protocol | None = None

    def connectionMade(self) -> None:
        host, peer = self.transport.getHost(), self.transport.getPeer()
        if ipaddress.ip_address(host.host) not in LOOPBACK_V4:
            self.transport.abortConnection()  # never serve anything but 127/8
            return
        server = self.servers.by_ip.get(host.host)
        factory = self.servers.get(server) if server is not None else None
        if factory is None:
            # No server there: close at once (a FIN; see world.py's dead addresses).
            self.servers.log.begin("(no server)", host, peer).close()
            self.transport.loseConnection()
            return
        self.inner = factory.buildProtocol(peer)
        self.inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.inner is not None:
            self.inner.connectionLost(reason)

    def handshakeCompleted(self) -> None:
        if IHandshakeListener.providedBy(self.inner):
            self.inner.handshakeCompleted()  # type: ignore[union-attr]


class Dispatcher(Factory):
    noisy = False

    def __init__(self, servers: ServerFactories) -> None:
        self.servers = servers

    def buildProtocol(self, addr: object) -> Dispatch:
        return Dispatch(self.servers)


def listen(
    spec: Spec,
    issued: dict[str, pki.Issued],
    log: ConnectionLog,
    reactor: IReactorSocket,
    smtp_port: int | None = None,
    dns_port: int | None = None,
    delay: float = 0.0,
) -> Listening:
    """Bind and start every server; return once all listen."""
    clock: IReactorTime = reactor  # type: ignore[assignment]
    factories = ServerFactories(spec, issued, log, clock, delay, lazy=spec.dispatch)
    # In dispatch mode only IPv6 servers have sockets of their own.
    servers = [s for s in spec.servers.values() if not spec.dispatch or ":" in s.ip]
    # A refused address is bound without SO_REUSEADDR so nobody can listen there either.
    addresses = [(s.ip, s.kind != "refused", False) for s in servers]
    if spec.dispatch:
        addresses.insert(0, (sockets.WILDCARD, True, False))
    port, bound = (
        sockets.bind_shared_port(addresses, smtp_port) if addresses else (smtp_port or 0, [])
    )
    listening = Listening(smtp_port=port, dns_port=0)
    if spec.dispatch:
        _adopt(reactor, bound.pop(0), Dispatcher(factories))
    for server, sock in zip(servers, bound, strict=True):
        if server.kind == "refused":
            listening.held.append(sock)
        elif server.kind == "blackhole":
            listening.blackholes.append(sockets.Blackhole(sock))
        else:
            factory = factories.get(server)
            assert factory is not None
            _adopt(reactor, sock, factory)
    sockets.fill(listening.blackholes)

    policy = policy_of(spec)
    if policy.zone is not None:
        listening.signed = SignedZone(spec, issued)
    listening.mta_sts_port = https.listen(
        list(policy.servers.values()), issued, reactor, log.path.parent
    )
    dns_factory = SpecDNSFactory(spec, clock, delay, listening.signed)
    dns_factory.noisy = False
    listening.dns_port, (udp, tcp) = sockets.bind_shared_port(
        # No SO_REUSEADDR on UDP: on Linux it would let a second server share the port.
        [(spec.dns_ip, False, True), (spec.dns_ip, True, False)],
        dns_port,
    )
    tcp.listen(sockets.BACKLOG)
    tcp.setblocking(False)
    # A crawl at 1000 concurrent requests sends bursts of queries while this one reactor
    # is busy with TLS handshakes: the default 208 KiB buffer overflowed at 10^5 domains
    # (UDP RcvbufErrors, whole runs of domains dns_timeout). The kernel caps it at rmem_max.
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DNS_RECEIVE_BUFFER)
    udp.setblocking(False)
    reactor.adoptStreamPort(tcp.fileno(), tcp.family, dns_factory)
    reactor.adoptDatagramPort(udp.fileno(), udp.family, DNSDatagramProtocol(dns_factory))
    tcp.close()
    udp.close()
    return listening


def _adopt(reactor: IReactorSocket, sock: socket.socket, factory: Factory) -> None:
    sock.listen(sockets.BACKLOG)
    sock.setblocking(False)  # Twisted accepts in a loop until EAGAIN
    reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    sock.close()  # the reactor holds its own duplicate


def serve(
    spec: Spec,
    state_dir: Path,
    smtp_port: int | None = None,
    dns_port: int | None = None,
    reply_delay_ms: float | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; write state.json once listening, remove it on the way out.
    `reply_delay_ms` overrides the spec's `[network] reply_delay_ms`."""
    from twisted.internet import reactor

    _log_warnings_to_stderr()
    _raise_file_limit()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    delay = spec.reply_delay if reply_delay_ms is None else reply_delay_ms / 1000
    issued = pki.build(spec.certs)
    bundle = pki.write(issued, state_dir)
    log = ConnectionLog(state_dir / "connections.jsonl")
    listening = listen(spec, issued, log, reactor, smtp_port, dns_port, delay)
    validating = _start_resolver(spec, listening, state_dir)
    # The world is built and lives until the end: keep it out of full collections. A
    # 10^6-domain world is ~10^7 objects, a full collection of them seconds in which no
    # reply goes out; a crawl then sees DNS and banner timeouts no server declared.
    gc.collect()
    gc.freeze()
    dns_host = f"[{spec.dns_ip}]" if ":" in spec.dns_ip else spec.dns_ip
    state = State(
        pid=os.getpid(),
        dns=f"{dns_host}:{listening.dns_port}",
        smtp_port=listening.smtp_port,
        ca_bundle=str(bundle.resolve()),
        log=str(log.path.resolve()),
        spec=spec.source,
        reply_delay_ms=round(delay * 1000, 3),
        dispatch=spec.dispatch,
        resolver=validating[1] if validating else "",
        mta_sts_port=listening.mta_sts_port,
    )
    try:
        core: IReactorCore = reactor  # type: ignore[assignment]
        core.callWhenRunning(state.write, state_dir)
        core.run()  # installs SIGTERM/SIGINT handlers that stop it cleanly
    finally:
        # Connections still open were closed (and logged) by the reactor's shutdown.
        log.close()
        listening.close()
        if validating:
            resolver.stop(validating[0])
        try:
            if State.read(state_dir).pid == os.getpid():
                (state_dir / STATE_FILE).unlink()
        except FileNotFoundError:
            pass


def _start_resolver(
    spec: Spec, listening: Listening, state_dir: Path
) -> tuple[subprocess.Popen[bytes], str] | None:
    """unbound, validating the signed zone, in front of the DNS server (testnet/resolver.py)."""
    policy = policy_of(spec)
    if listening.signed is None or policy.resolver is None:
        return None
    if resolver.binary() is None:
        # The rest of the network works without it; the policy tests skip (or fail in CI).
        print("testnet: unbound is not installed: no validating resolver", file=sys.stderr)
        return None
    anchor = listening.signed.write_anchor(state_dir)
    process, port = resolver.start(
        policy.resolver, spec.zone, (spec.dns_ip, listening.dns_port), anchor, state_dir
    )
    return process, f"{policy.resolver}:{port}"


def _raise_file_limit() -> None:
    # One socket per server address, plus connections: a large benchmark universe needs
    # more descriptors than the usual soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _log_warnings_to_stderr() -> None:
    # Protocol tracebacks matter; "Starting factory" chatter for every address does not.
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
