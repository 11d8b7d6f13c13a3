"""A stub DNS client: dnspython messages over one UDP socket per address family.

dnspython's resolver opens a socket, builds its retry machinery and parses
every reply anew for each query: a fifth of a crawl's CPU. A census asks a few
million simple questions of one recursive resolver, so this client keeps one
Twisted UDP port, matches replies to queries by id, question and sender, and
gives the reply message itself to the caller. A truncated reply is asked again
over TCP. It carries what DNSSEC-aware lookups need: EDNS with the DO bit, and
the AD and CD flags, as the caller asks.

A query is a few fixed bytes around the name (RFC 1035 §4.1, RFC 6891 §6.1.2), so it
is written here directly: building a `dns.message.Message` to serialize it cost more
than parsing the reply. Replies are parsed by dnspython.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
from dataclasses import dataclass
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from twisted.internet.protocol import DatagramProtocol

logger = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232  # bytes: the DNS flag day 2020 size, no IP fragmentation
# Replies wait in the socket while the reactor does TLS handshakes; a full buffer
# drops them silently (UDP RcvbufErrors), and whole runs of domains then time out.
# The kernel caps what is asked at net.core.rmem_max (and reports twice that).
RECEIVE_BUFFER = 4 << 20  # bytes asked for
REPLY_ROOM = 2048  # bytes of buffer one waiting reply may take (loopback: 832 for 150 B)
_DO = 0x8000  # the DNSSEC OK bit, in the OPT record's TTL field (RFC 3225)
# Rcodes whose reply may leave the question out (as dnspython's is_response allows).
_BARE_RCODES = {dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED}


@dataclass(frozen=True)
class Question:
    """One question with its header flags and EDNS options."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    want_dnssec: bool = False
    checking_disabled: bool = False

    def wire(self, qid: int) -> bytes:
        """The query: header (RD, CD if asked; one question, one additional), the
        question, and an OPT record (UDP payload size, DO if asked)."""
        flags = dns.flags.RD | (dns.flags.CD if self.checking_disabled else 0)
        header = struct.pack("!6H", qid, flags, 1, 0, 0, 1)
        question = self.name.to_wire() + struct.pack("!2H", self.rdtype, dns.rdataclass.IN)
        ttl = _DO if self.want_dnssec else 0
        opt = struct.pack("!BHHIH", 0, dns.rdatatype.OPT, EDNS_PAYLOAD, ttl, 0)
        return header + question + opt

    def message(self) -> dns.message.Message:
        """The same query as a dnspython message (for the TCP fallback)."""
        query = dns.message.make_query(
            self.name,
            self.rdtype,
            use_edns=0,
            payload=EDNS_PAYLOAD,
            want_dnssec=self.want_dnssec,
        )
        if self.checking_disabled:
            query.flags |= dns.flags.CD
        return query

    def answered_by(self, reply: dns.message.Message) -> bool:
        """Is `reply` a response to this question (the id is matched already)?"""
        if not reply.flags & dns.flags.QR or reply.opcode() != dns.opcode.QUERY:
            return False
        if not reply.question:
            return reply.rcode() in _BARE_RCODES
        if len(reply.question) != 1:
            return False
        asked = reply.question[0]
        return (
            asked.name == self.name
            and asked.rdtype == self.rdtype
            and asked.rdclass == dns.rdataclass.IN
        )


class NxDomain(Exception):
    """The name does not exist (RCODE NXDOMAIN)."""


class ServerFailure(Exception):
    """The resolver could not answer (SERVFAIL, REFUSED or another error RCODE)."""


class _Port(DatagramProtocol):
    def __init__(self, client: DnsClient):
        self.client = client

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.client._received(data, addr)


class DnsClient:
    def __init__(self, servers: list[tuple[str, int]], timeout: float, tries: int):
        if not servers:
            raise ValueError("no DNS server to ask")
        self.servers = [(str(ipaddress.ip_address(ip)), port) for ip, port in servers]
        self.timeout = timeout
        self.tries = tries
        # Address family -> the listening UDP port, and room for its queries in flight.
        self._ports: dict[int, tuple[Any, asyncio.Semaphore]] = {}
        self._pending: dict[int, tuple[asyncio.Future[dns.message.Message], Question, Any]] = {}
        # Every spelling a reply's sender address may take, for a quick look-up.
        self._senders = {(ip, port) for ip, port in self.servers}

    async def query(
        self,
        name: str,
        rdtype: dns.rdatatype.RdataType,
        want_dnssec: bool = False,
        checking_disabled: bool = False,
    ) -> dns.message.Message:
        """The resolver's reply to one question: NOERROR (with or without an
        answer); raises NxDomain, ServerFailure or dns.exception.Timeout."""
        question = Question(dns.name.from_text(name), rdtype, want_dnssec, checking_disabled)
        for attempt in range(self.tries):
            server = self.servers[attempt % len(self.servers)]
            try:
                reply = await self._ask(question, server)
            except dns.exception.Timeout:
                continue
            if reply.flags & dns.flags.TC:
                query = question.message()
                reply = await dns.asyncquery.tcp(query, server[0], self.timeout, server[1])
            return _checked(reply)
        raise dns.exception.Timeout(timeout=self.timeout * self.tries)

    def close(self) -> None:
        for port, _ in self._ports.values():
            port.stopListening()
        self._ports.clear()
        for future, _, timer in self._pending.values():
            timer.cancel()
            future.cancel()
        self._pending.clear()

    async def _ask(self, question: Question, server: tuple[str, int]) -> dns.message.Message:
        port, room = self._port_for(server[0])
        async with room:  # the timeout runs from the sending, not the waiting
            return await self._sent(question, server, port)

    async def _sent(
        self, question: Question, server: tuple[str, int], port: Any
    ) -> dns.message.Message:
        from twisted.internet import reactor

        qid = self._free_id()
        future = asyncio.get_running_loop().create_future()
        timer = reactor.callLater(self.timeout, self._expire, qid)
        self._pending[qid] = (future, question, timer)
        port.write(question.wire(qid), server)
        try:
            return await future
        finally:
            self._pending.pop(qid, None)
            if timer.active():
                timer.cancel()

    def _port_for(self, ip: str) -> tuple[Any, asyncio.Semaphore]:
        from twisted.internet import reactor

        family = 6 if ":" in ip else 4
        if family not in self._ports:
            interface = "::" if family == 6 else "0.0.0.0"
            port = reactor.listenUDP(0, _Port(self), interface=interface)
            self._ports[family] = port, asyncio.Semaphore(_make_room(port.socket))
        return self._ports[family]

    def _free_id(self) -> int:
        while (qid := random.getrandbits(16)) in self._pending:
            pass
        return qid

    def _expire(self, qid: int) -> None:
        entry = self._pending.get(qid)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(dns.exception.Timeout(timeout=self.timeout))

    def _received(self, data: bytes, addr: Any) -> None:
        if len(data) < 2:
            return
        entry = self._pending.get(int.from_bytes(data[:2], "big"))
        if entry is None or entry[0].done():
            return  # late, or not ours
        future, question, _ = entry
        if not self._from_server(addr):
            return
        try:
            reply = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # garbage: the timeout will tell
        if question.answered_by(reply):
            future.set_result(reply)

    def _from_server(self, addr: Any) -> bool:
        if (addr[0], addr[1]) in self._senders:
            return True
        ip = str(ipaddress.ip_address(addr[0].split("%")[0]))  # another spelling of IPv6
        return (ip, addr[1]) in self._senders


def _make_room(sock: socket.socket) -> int:
    """Enlarge the socket's receive buffer; how many replies may wait in it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    in_flight = max(16, size // REPLY_ROOM)
    logger.debug("DNS: %d-byte receive buffer, %d queries in flight at most", size, in_flight)
    return in_flight


def _checked(reply: dns.message.Message) -> dns.message.Message:
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise NxDomain(f"the name does not exist ({reply.question[0].name})")
    if rcode != dns.rcode.NOERROR:
        raise ServerFailure(f"the resolver answered {dns.rcode.to_text(rcode)}")
    return reply
