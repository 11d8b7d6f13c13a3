"""HTTPS servers of MTA-STS policies (RFC 8461 §3.3), from the spec's `[policy.servers]`.

Each server has its own loopback address, all on one port (the scanner's MTA_STS_PORT),
its own certificate chain from the test PKI, and serves one policy at
`/.well-known/mta-sts.txt` whatever the Host: a body with a status and a media type, or a
redirect (which a sender must not follow). Anything else is 404.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import IO

from twisted.internet.interfaces import IReactorSocket
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from testnet import sockets
from testnet.pki import Issued
from testnet.policy import PolicyServer
from testnet.spec import TlsSpec
from testnet.tls import ServerTls

POLICY_PATH = b"/.well-known/mta-sts.txt"


class PolicyResource(Resource):
    isLeaf = True

    def __init__(self, server: PolicyServer, log: IO[str]) -> None:
        super().__init__()
        self.server = server
        self.log = log

    def render_GET(self, request: Request) -> bytes:
        # Every request, for politeness checks: one fetch per domain, never in parallel.
        host = (request.getHeader(b"host") or b"").decode("ascii", "replace")
        entry = {"server": self.server.name, "host": host, "path": request.path.decode()}
        self.log.write(json.dumps({**entry, "at": time.time()}) + "\n")
        if request.path != POLICY_PATH:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found\n"
        request.setResponseCode(self.server.status)
        if self.server.location:
            request.setHeader(b"location", self.server.location.encode("ascii"))
        request.setHeader(b"content-type", self.server.content_type.encode("ascii"))
        return self.server.payload


REQUEST_LOG = "policy-requests.jsonl"


def listen(
    servers: list[PolicyServer],
    issued: dict[str, Issued],
    reactor: IReactorSocket,
    directory: Path,
    port: int | None = None,
) -> int:
    """Bind every policy server on one port; return it (0: there are none). Requests are
    logged to DIR/policy-requests.jsonl, a line each."""
    if not servers:
        return 0
    log = (directory / REQUEST_LOG).open("a", encoding="utf-8", buffering=1)
    chosen, bound = sockets.bind_shared_port([(s.ip, True, False) for s in servers], port)
    for server, sock in zip(servers, bound, strict=True):
        tls = ServerTls(TlsSpec(chain=server.chain), issued)
        site = Site(PolicyResource(server, log))
        site.noisy = False
        factory = TLSMemoryBIOFactory(tls.creator(lambda connection: None), False, site)
        factory.noisy = False
        _adopt(reactor, sock, factory)
    return chosen


def _adopt(reactor: IReactorSocket, sock: socket.socket, factory: object) -> None:
    sock.listen(sockets.BACKLOG)
    sock.setblocking(False)
    reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    sock.close()
