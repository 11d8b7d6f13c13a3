"""Run a spec: make the PKI, bind every address, serve DNS and SMTP in one reactor."""

from __future__ import annotations

import os
import resource
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet.interfaces import IReactorCore, IReactorSocket, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.names.dns import DNSDatagramProtocol

from testnet import pki, sockets
from testnet.connlog import ConnectionLog
from testnet.dns import SpecDNSFactory
from testnet.hostile import ScriptFactory
from testnet.smtp import EsmtpFactory
from testnet.spec import Spec
from testnet.state import STATE_FILE, State
from testnet.tls import ServerTls


@dataclass
class Listening:
    """What one running testnet holds: ports, and the raw sockets of the dead addresses."""

    smtp_port: int
    dns_port: int
    held: list[socket.socket] = field(default_factory=list)
    blackholes: list[sockets.Blackhole] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.held:
            sock.close()
        for hole in self.blackholes:
            for filler in hole.fillers:
                filler.close()
            hole.sock.close()


def listen(
    spec: Spec,
    issued: dict[str, pki.Issued],
    log: ConnectionLog,
    reactor: IReactorSocket,
    smtp_port: int | None = None,
    dns_port: int | None = None,
) -> Listening:
    """Bind and start every server; return once all listen."""
    clock: IReactorTime = reactor  # type: ignore[assignment]
    # Build every factory (and TLS context) first: a bad certificate fails before binding.
    factories = {}
    for server in spec.servers.values():
        if server.kind == "esmtp":
            assert server.esmtp is not None
            tls = ServerTls(server.esmtp.tls, issued) if server.esmtp.tls else None
            factories[server.name] = EsmtpFactory(server, tls, log, clock)
        elif server.kind == "script":
            factories[server.name] = ScriptFactory(server, log, clock)
    for factory in factories.values():
        factory.noisy = False

    servers = list(spec.servers.values())
    # A refused address is bound without SO_REUSEADDR so nobody can listen there either.
    port, bound = (
        sockets.bind_shared_port([(s.ip, s.kind != "refused", False) for s in servers], smtp_port)
        if servers
        else (smtp_port or 0, [])
    )
    listening = Listening(smtp_port=port, dns_port=0)
    for server, sock in zip(servers, bound, strict=True):
        if server.kind == "refused":
            listening.held.append(sock)
        elif server.kind == "blackhole":
            listening.blackholes.append(sockets.Blackhole(sock))
        else:
            sock.listen(sockets.BACKLOG)
            sock.setblocking(False)  # Twisted accepts in a loop until EAGAIN
            reactor.adoptStreamPort(sock.fileno(), sock.family, factories[server.name])
            sock.close()  # the reactor holds its own duplicate
    sockets.fill(listening.blackholes)

    dns_factory = SpecDNSFactory(spec)
    dns_factory.noisy = False
    listening.dns_port, (udp, tcp) = sockets.bind_shared_port(
        # No SO_REUSEADDR on UDP: on Linux it would let a second server share the port.
        [(spec.dns_ip, False, True), (spec.dns_ip, True, False)],
        dns_port,
    )
    tcp.listen(sockets.BACKLOG)
    tcp.setblocking(False)
    udp.setblocking(False)
    reactor.adoptStreamPort(tcp.fileno(), tcp.family, dns_factory)
    reactor.adoptDatagramPort(udp.fileno(), udp.family, DNSDatagramProtocol(dns_factory))
    tcp.close()
    udp.close()
    return listening


def serve(
    spec: Spec, state_dir: Path, smtp_port: int | None = None, dns_port: int | None = None
) -> None:
    """Run until SIGTERM/SIGINT; write state.json once listening, remove it on the way out."""
    from twisted.internet import reactor

    _log_warnings_to_stderr()
    _raise_file_limit()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    issued = pki.build(spec.certs)
    bundle = pki.write(issued, state_dir)
    log = ConnectionLog(state_dir / "connections.jsonl")
    listening = listen(spec, issued, log, reactor, smtp_port, dns_port)
    dns_host = f"[{spec.dns_ip}]" if ":" in spec.dns_ip else spec.dns_ip
    state = State(
        pid=os.getpid(),
        dns=f"{dns_host}:{listening.dns_port}",
        smtp_port=listening.smtp_port,
        ca_bundle=str(bundle.resolve()),
        log=str(log.path.resolve()),
        spec=spec.source,
    )
    try:
        core: IReactorCore = reactor  # type: ignore[assignment]
        core.callWhenRunning(state.write, state_dir)
        core.run()  # installs SIGTERM/SIGINT handlers that stop it cleanly
    finally:
        # Connections still open were closed (and logged) by the reactor's shutdown.
        log.close()
        listening.close()
        try:
            if State.read(state_dir).pid == os.getpid():
                (state_dir / STATE_FILE).unlink()
        except FileNotFoundError:
            pass


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
