"""The stub DNS client against small scripted UDP (and TCP) servers on loopback:
replies matched by id, question and sender; stray, forged and garbage datagrams
ignored; timeouts retried; a truncated reply asked again over TCP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from scrapy.utils.defer import deferred_from_coro
from twisted.internet.protocol import DatagramProtocol

from crawler import dnsclient
from crawler.dnsclient import DnsClient, NxDomain, Question, ServerFailure
from tests.reactor import wait

Script = Callable[[dns.message.Message, int], list[bytes]]  # query, n-th -> datagrams


class _Server(DatagramProtocol):
    def __init__(self, script: Script):
        self.script = script
        self.queries: list[dns.message.Message] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(query)
        for datagram in self.script(query, len(self.queries)):
            self.transport.write(datagram, addr)


@pytest.fixture
def serve(reactor) -> Iterator[Callable[[Script], tuple[_Server, int]]]:
    ports = []

    def start(script: Script) -> tuple[_Server, int]:
        server = _Server(script)
        port = reactor.listenUDP(0, server, interface="127.0.0.1")
        ports.append(port)
        return server, port.getHost().port

    yield start
    for port in ports:
        port.stopListening()


def answer(query: dns.message.Message, *records: str) -> dns.message.Message:
    reply = dns.message.make_response(query)
    name = query.question[0].name
    for text in records:
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "A", text))
    return reply


def ask(reactor, client: DnsClient, name: str = "mx.example.test") -> dns.message.Message:
    try:
        return wait(reactor, deferred_from_coro(client.query(name, dns.rdatatype.A)), timeout=10)
    finally:
        client.close()


def test_the_reply_to_the_question_is_returned(reactor, serve):
    _, port = serve(lambda q, n: [answer(q, "192.0.2.1").to_wire()])
    reply = ask(reactor, DnsClient([("127.0.0.1", port)], timeout=1, tries=1))
    assert [r.address for r in reply.answer[0]] == ["192.0.2.1"]


def test_stray_forged_and_garbage_datagrams_are_ignored(reactor, serve):
    """Before the real reply: garbage, a reply with another id, and a reply to
    another question with the right id. Only the real one is taken."""

    def script(q: dns.message.Message, n: int) -> list[bytes]:
        wrong_id = answer(q, "192.0.2.66")
        wrong_id.id = (q.id + 1) % 65536
        other = dns.message.make_query("other.example.test", "A")
        other.id = q.id
        wrong_question = answer(other, "192.0.2.77")
        return [
            b"\x00",
            q.id.to_bytes(2, "big") + b"junk",
            wrong_id.to_wire(),
            wrong_question.to_wire(),
            answer(q, "192.0.2.1").to_wire(),
        ]

    _, port = serve(script)
    reply = ask(reactor, DnsClient([("127.0.0.1", port)], timeout=1, tries=1))
    assert [r.address for r in reply.answer[0]] == ["192.0.2.1"]


def test_a_reply_from_another_address_is_not_taken(reactor, serve):
    """A datagram from an address that is not the resolver is ignored: the query
    times out (one try), though its id and question were right."""
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.2", 0))
    client = DnsClient([("127.0.0.1", 0)], timeout=0.5, tries=1)

    def script(q: dns.message.Message, n: int) -> list[bytes]:
        return []

    server, port = serve(script)
    client.servers = [("127.0.0.1", port)]

    sent: list[int] = []

    def forge() -> None:
        while not server.queries:
            threading.Event().wait(0.01)
        local = client._ports[4][0].getHost().port  # (port, semaphore) per family
        wire = answer(server.queries[0], "192.0.2.99").to_wire()
        sent.append(forger.sendto(wire, ("127.0.0.1", local)))

    thread = threading.Thread(target=forge, daemon=True)
    thread.start()
    with pytest.raises(dns.exception.Timeout):
        ask(reactor, client)
    thread.join(timeout=5)
    forger.close()
    assert sent and sent[0] > 0, "the forged reply was never sent: nothing was tested"


def test_a_lost_reply_is_asked_again_then_times_out(reactor, serve):
    server, port = serve(lambda q, n: [] if n == 1 else [answer(q, "192.0.2.1").to_wire()])
    reply = ask(reactor, DnsClient([("127.0.0.1", port)], timeout=0.3, tries=2))
    assert len(server.queries) == 2 and reply.answer
    silent, port = serve(lambda q, n: [])
    with pytest.raises(dns.exception.Timeout):
        ask(reactor, DnsClient([("127.0.0.1", port)], timeout=0.2, tries=3))
    assert len(silent.queries) == 3


@pytest.mark.parametrize(
    ("rcode", "error"), [(3, NxDomain), (2, ServerFailure), (5, ServerFailure)]
)
def test_error_rcodes_raise(reactor, serve, rcode, error):
    def script(q: dns.message.Message, n: int) -> list[bytes]:
        reply = dns.message.make_response(q)
        reply.set_rcode(rcode)
        return [reply.to_wire()]

    _, port = serve(script)
    with pytest.raises(error):
        ask(reactor, DnsClient([("127.0.0.1", port)], timeout=1, tries=1))


def test_edns_and_dnssec_flags_are_sent(reactor, serve):
    server, port = serve(lambda q, n: [answer(q).to_wire()])
    client = DnsClient([("127.0.0.1", port)], timeout=1, tries=1)
    query = client.query(
        "mx.example.test", dns.rdatatype.TLSA, want_dnssec=True, checking_disabled=True
    )
    try:
        wait(reactor, deferred_from_coro(query), timeout=10)
    finally:
        client.close()
    (sent,) = server.queries
    assert sent.edns == 0 and sent.ednsflags & dns.flags.DO
    assert sent.flags & dns.flags.CD and sent.flags & dns.flags.RD


def test_a_truncated_reply_is_asked_again_over_tcp(reactor, serve):
    """The UDP reply says TC; the client asks the same server over TCP."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    port = tcp.getsockname()[1]

    def serve_tcp() -> None:
        conn, _ = tcp.accept()
        with conn:
            length = int.from_bytes(conn.recv(2), "big")
            query = dns.message.from_wire(conn.recv(length))
            wire = answer(query, *(f"192.0.2.{i}" for i in range(1, 40))).to_wire()
            conn.sendall(len(wire).to_bytes(2, "big") + wire)

    threading.Thread(target=serve_tcp, daemon=True).start()

    def truncated(q: dns.message.Message, n: int) -> list[bytes]:
        reply = answer(q)
        reply.flags |= dns.flags.TC
        return [reply.to_wire()]

    udp_server = _Server(truncated)
    udp_port = reactor.listenUDP(port, udp_server, interface="127.0.0.1")
    try:
        reply = ask(reactor, DnsClient([("127.0.0.1", port)], timeout=2, tries=1))
    finally:
        udp_port.stopListening()
        tcp.close()
    assert len(reply.answer[0]) == 39


@pytest.mark.parametrize("want_dnssec", [False, True])
@pytest.mark.parametrize("checking_disabled", [False, True])
def test_queries_are_the_bytes_dnspython_would_send(want_dnssec, checking_disabled):
    """The hand-written query is byte for byte dnspython's: RD, EDNS0 with a 1232-byte
    payload, DO and CD as asked."""
    question = Question(
        dns.name.from_text("Mx.Example.test"), dns.rdatatype.AAAA, want_dnssec, checking_disabled
    )
    expected = question.message()
    expected.id = 4242
    assert question.wire(4242) == expected.to_wire()
    parsed = dns.message.from_wire(question.wire(7))
    assert parsed.edns == 0 and parsed.payload == 1232
    assert bool(parsed.ednsflags & dns.flags.DO) == want_dnssec
    assert bool(parsed.flags & dns.flags.CD) == checking_disabled


def test_a_reply_to_another_type_or_class_is_not_taken(reactor, serve):
    """Same id and name, another type; then the same with class CH: both ignored, and
    with nothing else coming the query times out."""

    def script(q: dns.message.Message, n: int) -> list[bytes]:
        other_type = dns.message.make_query(q.question[0].name, "MX", id=q.id)
        other_class = dns.message.make_query(q.question[0].name, "A", "CH", id=q.id)
        return [dns.message.make_response(m).to_wire() for m in (other_type, other_class)]

    _, port = serve(script)
    with pytest.raises(dns.exception.Timeout):
        ask(reactor, DnsClient([("127.0.0.1", port)], timeout=0.3, tries=1))


def test_no_more_queries_in_flight_than_the_receive_buffer_holds(reactor, monkeypatch):
    """A resolver that answers in bursts (all it holds once its queue goes quiet) into a
    small receive buffer: the client keeps no more queries out than replies fit in it,
    so a burst is never dropped and every query is answered at the first try."""
    monkeypatch.setattr(dnsclient, "RECEIVE_BUFFER", 16384)  # Linux reports 32768
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    bursts: list[int] = []
    received = 0
    stop = threading.Event()

    def serve_in_bursts() -> None:
        nonlocal received
        held: list[tuple[bytes, tuple[str, int]]] = []
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                if held:
                    bursts.append(len(held))
                    for query_wire, to in held:
                        sock.sendto(answer(dns.message.from_wire(query_wire)).to_wire(), to)
                    held.clear()
                continue
            received += 1
            held.append((data, addr))

    threading.Thread(target=serve_in_bursts, daemon=True).start()
    client = DnsClient([("127.0.0.1", sock.getsockname()[1])], timeout=5, tries=2)

    async def ask_all() -> list[dns.message.Message]:
        names = [f"mx{i}.example.test" for i in range(300)]
        return await asyncio.gather(*(client.query(n, dns.rdatatype.A) for n in names))

    try:
        replies = wait(reactor, deferred_from_coro(ask_all()), timeout=60)
    finally:
        client.close()
        stop.set()
    assert len(replies) == 300 and received == 300  # no retry: nothing was lost
    assert max(bursts) == 16 and sum(bursts) == 300
