"""Tests for `crawler.smtp.client` and `crawler.smtp.tls`: the probe protocol.

The first part drives `SmtpProbeProtocol` over a `StringTransport` with a
`task.Clock`, one test per row of docs/design.md's outcome table that needs no real
TLS, asserting the exact bytes written (never MAIL, RCPT or DATA). The second
part runs real probes on loopback against small scripted Twisted servers, with
real TLS (certificates made here with `cryptography`), spinning the reactor with
`reactor.iterate` so that the global reactor is never run nor stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from crawler.smtp.client import (
    MAX_TRANSCRIPT_ENTRIES,
    ProbeConfig,
    SmtpProbeProtocol,
    connect_error_code,
    probe_once,
)
from crawler.smtp.facts import Attempt, Reply, protocol_status
from crawler.smtp.tls import (
    SniConnectionCreator,
    client_context,
    has_forward_secrecy,
    sni_name,
)
from schema.vocab import Category, ErrorCode, ProtocolStatus, Stage
from tests.reactor import spin, wait

EHLO_NAME = "probe.example.net"
CONFIG = ProbeConfig(
    ehlo_name=EHLO_NAME,
    connect_timeout=10,
    banner_timeout=30,
    command_timeout=20,
    tls_timeout=25,
    probe_timeout=120,
)
EHLO = b"EHLO probe.example.net\r\n"
HELO = b"HELO probe.example.net\r\n"
STARTTLS = b"STARTTLS\r\n"
QUIT = b"QUIT\r\n"
ALLOWED_COMMANDS = (b"EHLO ", b"HELO ", b"STARTTLS", b"QUIT")
WIRE_CATEGORIES = (Category.ERROR, Category.FAILURE, Category.NONE)


# --- protocol over a StringTransport ------------------------------------------------


class FakeTlsConnection:
    """Stands in for the `OpenSSL.SSL.Connection` after a handshake."""

    def get_protocol_version_name(self) -> str:
        return "TLSv1.2"

    def get_cipher_name(self) -> str:
        return "ECDHE-RSA-AES256-GCM-SHA384"

    def get_group_name(self) -> str:
        return "X25519"

    def get_peer_cert_chain(self) -> list[Any]:
        return []


class ProbeTransport(StringTransport):
    """A StringTransport that records `abortConnection` and `startTLS`."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False
        self.tls_creator: object | None = None

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def startTLS(self, creator: object) -> None:
        self.tls_creator = creator

    def getHandle(self) -> FakeTlsConnection:
        return FakeTlsConnection()


@dataclass
class Conversation:
    protocol: SmtpProbeProtocol
    transport: ProbeTransport
    clock: Clock
    results: list[Attempt] = field(default_factory=list)

    def receive(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def written(self) -> bytes:
        """What the probe sent so far; it must only ever be EHLO/HELO/STARTTLS/QUIT."""
        data = self.transport.value()
        for line in data.split(b"\r\n")[:-1]:
            assert line.startswith(ALLOWED_COMMANDS), line
        return data

    def lose(self, reason: Exception | None = None) -> Attempt:
        """The connection goes away (as the real transport reports after a
        close or an abort); the attempt is then final."""
        self.protocol.connectionLost(Failure(reason or error.ConnectionDone()))
        assert len(self.results) == 1
        return self.results[0]


def converse(config: ProbeConfig = CONFIG) -> Conversation:
    clock = Clock()
    protocol = SmtpProbeProtocol(
        config, SniConnectionCreator(client_context(), "mx.example.org"), clock=clock
    )
    transport = ProbeTransport()
    conversation = Conversation(protocol, transport, clock)
    protocol.finished.addCallback(conversation.results.append)
    protocol.makeConnection(transport)
    return conversation


def ready_for_starttls() -> Conversation:
    c = converse()
    c.receive(b"220 mx.example.org ESMTP\r\n")
    c.receive(b"250-mx.example.org\r\n250 STARTTLS\r\n")
    assert c.written() == EHLO + STARTTLS
    return c


def after_handshake() -> Conversation:
    c = ready_for_starttls()
    c.receive(b"220 go ahead\r\n")
    c.protocol.handshakeCompleted()
    assert c.written() == EHLO + STARTTLS + EHLO
    return c


def test_nothing_sent_before_banner() -> None:
    """The client speaks only after the server's greeting (RFC 5321 §4.3.1)."""
    c = converse()
    c.clock.advance(29)
    assert c.written() == b""
    assert not c.results


def test_banner_554_is_greeting_rejected() -> None:
    """A 5xx greeting is `greeting_rejected` at the banner; the server still
    expects QUIT (RFC 5321 §3.1), then the probe closes on 221."""
    c = converse()
    c.receive(b"554 mx.example.org no service for you\r\n")
    assert c.written() == QUIT
    c.receive(b"221 bye\r\n")
    assert c.transport.disconnecting and not c.transport.aborted
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.GREETING_REJECTED, Stage.BANNER)
    assert attempt.error_detail == "554 mx.example.org no service for you"
    assert attempt.banner == Reply(554, ("mx.example.org no service for you",))
    assert attempt.quit_sent
    assert attempt.outcome is Category.ERROR
    assert not attempt.transient


def test_banner_421_is_greeting_rejected_and_transient() -> None:
    """A 421 greeting is `greeting_rejected` too; the server closes after 421
    (RFC 5321 §3.8), so the probe closes without QUIT; worth a retry."""
    c = converse()
    c.receive(b"421 4.7.0 try again later\r\n")
    assert c.written() == b""
    assert c.transport.disconnecting
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.GREETING_REJECTED, Stage.BANNER)
    assert attempt.transient


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad Request\r\n", b"\x16\x03\x01\x00\x05hello\n"],
)
def test_banner_garbage_is_protocol_error(garbage: bytes) -> None:
    """A greeting that is not an SMTP reply is a `protocol_error` at the banner;
    nothing is sent to whatever is listening."""
    c = converse()
    c.receive(garbage)
    assert c.written() == b""
    assert c.transport.disconnecting
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.PROTOCOL_ERROR, Stage.BANNER)
    assert "malformed reply line" in (attempt.error_detail or "")
    assert attempt.outcome is Category.ERROR


def test_banner_with_unexpected_code_is_protocol_error() -> None:
    """A well-formed reply that is neither 220 nor 4xx/5xx is no greeting."""
    c = converse()
    c.receive(b"354 go on\r\n")
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.PROTOCOL_ERROR, Stage.BANNER)
    assert attempt.error_detail == "354 go on"


def test_banner_oversized_line_is_protocol_error() -> None:
    """A greeting line over 4 KiB is a `protocol_error`, even unterminated."""
    c = converse()
    c.receive(b"220 " + b"x" * 5000)
    assert c.transport.disconnecting
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.PROTOCOL_ERROR, Stage.BANNER)


def test_close_before_banner_is_connection_closed() -> None:
    """The server closing before a complete greeting is `connection_closed`."""
    c = converse()
    c.receive(b"220 partial")
    attempt = c.lose(error.ConnectionLost("Connection lost."))
    assert (attempt.error, attempt.error_stage) == (ErrorCode.CONNECTION_CLOSED, Stage.BANNER)
    assert "Connection lost" in (attempt.error_detail or "")
    assert attempt.transient


def test_banner_timeout_aborts() -> None:
    """No greeting within SMTP_BANNER_TIMEOUT: `timeout` at the banner, and the
    connection is aborted so the socket really closes."""
    c = converse()
    c.clock.advance(29.9)
    assert not c.transport.aborted
    c.clock.advance(0.1)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.BANNER)
    assert attempt.error_detail == "stage banner took over 30 s"
    assert attempt.timings["banner"] == 30
    assert attempt.transient
    assert c.clock.getDelayedCalls() == []


def test_banner_drip_past_deadline_times_out() -> None:
    """The banner deadline is not an idle timer: a greeting that trickles in a
    byte a second times out all the same."""
    c = converse()
    for byte in b"220 mx.example.org ESMTP slowly but surely\r\n"[:30]:
        c.receive(bytes([byte]))
        c.clock.advance(1)
    assert c.transport.aborted
    assert c.written() == b""
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.BANNER)
    assert attempt.error_detail == "stage banner took over 30 s (30 bytes of an incomplete reply)"


def test_ehlo_421_is_ehlo_rejected_without_helo() -> None:
    """EHLO answered 4xx is `ehlo_rejected` at stage ehlo; HELO is tried only
    after a 5xx, and QUIT is moot after 421."""
    c = converse()
    c.receive(b"220 mx.example.org ESMTP\r\n")
    assert c.written() == EHLO
    c.receive(b"421 4.3.2 shutting down\r\n")
    assert c.written() == EHLO
    assert c.transport.disconnecting
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.EHLO_REJECTED, Stage.EHLO)
    assert attempt.ehlo == Reply(421, ("4.3.2 shutting down",))
    assert attempt.outcome is Category.ERROR
    assert attempt.transient


def test_ehlo_450_is_ehlo_rejected_then_quit() -> None:
    """A 4xx other than 421 leaves the channel open: the probe says QUIT."""
    c = converse()
    c.receive(b"220 mx.example.org ESMTP\r\n")
    c.receive(b"450 not now\r\n")
    assert c.written() == EHLO + QUIT
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.EHLO_REJECTED, Stage.EHLO)
    assert attempt.quit_sent


def test_ehlo_550_helo_250_is_none() -> None:
    """EHLO refused with 5xx, HELO accepted: category none (HELO cannot carry
    STARTTLS), flag ehlo_refused, then QUIT."""
    c = converse()
    c.receive(b"220 old.example.org SMTP\r\n")
    c.receive(b"550 command not recognized\r\n")
    assert c.written() == EHLO + HELO
    c.receive(b"250 old.example.org\r\n")
    assert c.written() == EHLO + HELO + QUIT
    c.receive(b"221 bye\r\n")
    attempt = c.lose()
    assert attempt.error is None
    assert attempt.ehlo_refused
    assert attempt.helo == Reply(250, ("old.example.org",))
    assert attempt.starttls_advertised is False
    assert attempt.outcome is Category.NONE
    assert attempt.flags == ("ehlo_refused",)


def test_ehlo_and_helo_refused_is_ehlo_rejected_at_helo() -> None:
    """EHLO and HELO both refused: `ehlo_rejected` at stage helo; QUIT sent."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    c.receive(b"502 5.5.1 no\r\n")
    c.receive(b"550 5.7.1 go away\r\n")
    assert c.written() == EHLO + HELO + QUIT
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.EHLO_REJECTED, Stage.HELO)
    assert attempt.error_detail == "550 5.7.1 go away"
    assert attempt.starttls_advertised is None
    assert attempt.outcome is Category.ERROR


def test_timeout_before_ehlo_reply() -> None:
    """No EHLO reply within SMTP_COMMAND_TIMEOUT: `timeout` at stage ehlo."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    c.clock.advance(20)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.EHLO)
    assert attempt.outcome is Category.ERROR


def test_close_before_ehlo_reply() -> None:
    """The server closing before the EHLO reply: `connection_closed` at ehlo."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.CONNECTION_CLOSED, Stage.EHLO)
    assert attempt.error_detail == "Connection was closed cleanly."


def test_no_starttls_is_none_and_quits() -> None:
    """STARTTLS not among the EHLO keywords: category none, QUIT sent, and the
    keywords recorded upper-cased."""
    c = converse()
    c.receive(b"220 mx.example.org ESMTP\r\n")
    c.receive(b"250-mx.example.org hello\r\n250-pipelining\r\n250 8BITMIME\r\n")
    assert c.written() == EHLO + QUIT
    c.receive(b"221 2.0.0 bye\r\n")
    assert c.transport.disconnecting
    attempt = c.lose()
    assert attempt.error is None
    assert attempt.extensions == ("PIPELINING", "8BITMIME")
    assert attempt.starttls_advertised is False
    assert attempt.quit_sent
    assert attempt.outcome is Category.NONE
    assert attempt.transcript == [
        ("<", "220 mx.example.org ESMTP"),
        (">", "EHLO probe.example.net"),
        ("<", "250-mx.example.org hello"),
        ("<", "250-pipelining"),
        ("<", "250 8BITMIME"),
        (">", "QUIT"),
        ("<", "221 2.0.0 bye"),
    ]


def test_a_reply_before_its_command_is_a_protocol_error() -> None:
    """A stray reply that came with the greeting, before EHLO was sent, is not
    EHLO's answer: read as one it would turn this server into a false `none`."""
    c = converse()
    c.receive(b"220 mx.example.org ESMTP\r\n250 stray\r\n")
    attempt = c.lose()
    assert attempt.error is ErrorCode.PROTOCOL_ERROR
    assert attempt.error_stage is Stage.EHLO
    assert "250 stray" in (attempt.error_detail or "")
    assert attempt.outcome is Category.ERROR


def test_starttls_454_is_starttls_rejected() -> None:
    """STARTTLS answered 454: category failure, `starttls_rejected` at
    starttls, then QUIT."""
    c = ready_for_starttls()
    c.receive(b"454 4.7.0 TLS not available due to local problem\r\n")
    assert c.written() == EHLO + STARTTLS + QUIT
    assert c.transport.tls_creator is None
    attempt = c.lose()
    assert (attempt.error, attempt.error_stage) == (ErrorCode.STARTTLS_REJECTED, Stage.STARTTLS)
    assert attempt.error_detail == "454 4.7.0 TLS not available due to local problem"
    assert attempt.starttls_advertised is True
    assert attempt.outcome is Category.FAILURE
    assert not attempt.transient


def test_starttls_timeout() -> None:
    """No reply to STARTTLS in time: failure, `timeout` at starttls, aborted."""
    c = ready_for_starttls()
    c.clock.advance(20)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.STARTTLS)
    assert attempt.outcome is Category.FAILURE
    assert not attempt.transient


def test_close_after_starttls() -> None:
    """The server closing instead of answering STARTTLS: failure,
    `connection_closed` at starttls."""
    c = ready_for_starttls()
    attempt = c.lose(error.ConnectionLost())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.CONNECTION_CLOSED, Stage.STARTTLS)
    assert attempt.outcome is Category.FAILURE


def test_starttls_220_starts_tls_with_the_creator() -> None:
    """On 220 the probe hands its connection creator to `startTLS` and sends
    nothing more until the handshake completes."""
    c = ready_for_starttls()
    c.receive(b"220 2.0.0 go ahead\r\n")
    assert c.transport.tls_creator is c.protocol.connection_creator
    assert c.written() == EHLO + STARTTLS
    assert c.protocol.attempt.plaintext_after_starttls == b""


def test_plaintext_after_220_is_discarded_and_recorded() -> None:
    """Bytes waiting after the 220 are discarded and recorded: they are never
    read as the post-TLS EHLO reply (Twisted's own client would)."""
    c = ready_for_starttls()
    c.receive(b"220 go ahead\r\n250-evil.example\r\n250 AUTH PLAIN\r\n")
    assert c.transport.tls_creator is not None
    c.protocol.handshakeCompleted()
    assert c.written() == EHLO + STARTTLS + EHLO
    assert c.protocol.attempt.post_tls_ehlo is None
    c.receive(b"250-mx.example.org\r\n250 SIZE 1000\r\n")
    assert c.written() == EHLO + STARTTLS + EHLO + QUIT
    attempt = c.lose()
    assert attempt.plaintext_after_starttls == b"250-evil.example\r\n250 AUTH PLAIN\r\n"
    assert attempt.post_tls_extensions == ("SIZE",)
    assert attempt.flags == ("plaintext_after_starttls",)


def test_tls_handshake_failure_records_openssl_text() -> None:
    """The connection lost during the handshake (alert, garbage, close) is
    `tls_handshake_failed` at stage tls, with OpenSSL's text."""
    c = ready_for_starttls()
    c.receive(b"220 go ahead\r\n")
    alert = SSL.Error([("SSL routines", "", "sslv3 alert handshake failure")])
    attempt = c.lose(alert)
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TLS_HANDSHAKE_FAILED, Stage.TLS)
    assert attempt.error_detail == "SSL routines: sslv3 alert handshake failure"
    assert attempt.outcome is Category.FAILURE


def test_tls_handshake_timeout() -> None:
    """No completed handshake within SMTP_TLS_TIMEOUT: `timeout` at tls, aborted."""
    c = ready_for_starttls()
    c.receive(b"220 go ahead\r\n")
    c.clock.advance(25)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.TLS)
    assert attempt.error_detail == "stage tls took over 25 s"
    assert attempt.outcome is Category.FAILURE


def test_tls_success_reads_facts_and_quits() -> None:
    """After the handshake: facts read from the connection, EHLO again, its
    keywords kept apart from the pre-TLS ones, QUIT."""
    c = after_handshake()
    c.clock.advance(1)
    c.receive(b"250-mx.example.org\r\n250-AUTH PLAIN\r\n250 SIZE 1000\r\n")
    assert c.written() == EHLO + STARTTLS + EHLO + QUIT
    c.receive(b"221 bye\r\n")
    attempt = c.lose()
    assert attempt.error is None
    assert attempt.tls is not None
    assert (attempt.tls.version, attempt.tls.cipher) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
    assert attempt.tls.forward_secrecy and attempt.tls.kx_group == "X25519"
    assert attempt.extensions == ("STARTTLS",)
    assert attempt.post_tls_extensions == ("AUTH", "SIZE")
    assert attempt.timings["post_tls_ehlo"] == 1
    assert attempt.outcome not in WIRE_CATEGORIES  # TLS: the certificate decides
    assert attempt.flags == ()


def test_a_protocol_conversation_quits_right_after_the_handshake() -> None:
    """`ehlo_after_tls=False` (the conversations pinned to one TLS version): the
    session is all they are for, so QUIT follows the handshake, nothing else."""
    c = converse(dataclasses.replace(CONFIG, ehlo_after_tls=False))
    c.receive(b"220 mx.example.org ESMTP\r\n")
    c.receive(b"250-mx.example.org\r\n250 STARTTLS\r\n")
    c.receive(b"220 go ahead\r\n")
    c.protocol.handshakeCompleted()
    assert c.written() == EHLO + STARTTLS + QUIT
    c.receive(b"221 bye\r\n")
    attempt = c.lose()
    assert attempt.tls is not None and attempt.tls.version == "TLSv1.2"
    assert attempt.quit_sent and attempt.post_tls_ehlo is None
    assert protocol_status(attempt) is ProtocolStatus.SUPPORTED


@pytest.mark.parametrize(
    ("script", "status"),
    [
        # After the 220 to STARTTLS the handshake fails: the server refuses the version.
        (lambda c: (c.receive(b"220 go ahead\r\n"), c.lose(SSL.Error([]))), "not_supported"),
        # A handshake that never ends says nothing of the version.
        (lambda c: (c.receive(b"220 go ahead\r\n"), c.clock.advance(25)), "error"),
        # Refused before any handshake: nothing learned of the version either.
        (lambda c: c.receive(b"454 TLS not available\r\n"), "error"),
    ],
    ids=["handshake_failed", "handshake_timeout", "starttls_454"],
)
def test_a_protocol_status_follows_where_the_conversation_ended(script, status) -> None:
    c = ready_for_starttls()
    script(c)
    if not c.results:
        c.lose()
    assert protocol_status(c.results[0]) == status
    assert protocol_status(None) is ProtocolStatus.UNTESTABLE


def test_post_tls_ehlo_refused_only_flags() -> None:
    """A post-TLS EHLO that fails leaves the TLS result; only the flag is set."""
    c = after_handshake()
    c.receive(b"554 5.7.0 not after all\r\n")
    assert c.written() == EHLO + STARTTLS + EHLO + QUIT
    attempt = c.lose()
    assert attempt.error is None
    assert attempt.post_tls_ehlo_failed
    assert attempt.post_tls_ehlo == Reply(554, ("5.7.0 not after all",))
    assert attempt.outcome not in WIRE_CATEGORIES  # TLS: the certificate decides


def test_post_tls_ehlo_timeout_only_flags() -> None:
    """A post-TLS EHLO timeout aborts the connection and only sets the flag."""
    c = after_handshake()
    c.clock.advance(20)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert attempt.error is None and attempt.post_tls_ehlo_failed
    assert attempt.outcome not in WIRE_CATEGORIES  # TLS: the certificate decides


def test_post_tls_close_only_flags() -> None:
    """The server closing after the handshake only sets the flag."""
    c = after_handshake()
    attempt = c.lose(error.ConnectionLost())
    assert attempt.error is None and attempt.post_tls_ehlo_failed
    assert attempt.flags == ("post_tls_ehlo_failed",)


def test_total_deadline() -> None:
    """SMTP_PROBE_TIMEOUT bounds the whole attempt: a server answering each
    stage just in time, then dripping, is cut off at the current stage."""
    config = ProbeConfig(EHLO_NAME, banner_timeout=30, command_timeout=30, probe_timeout=40)
    c = converse(config)
    c.clock.advance(25)
    c.receive(b"220 mx.example.org\r\n")
    for _ in range(14):
        c.clock.advance(1)
        c.receive(b"2")
    assert not c.transport.aborted
    c.clock.advance(1)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.EHLO)
    assert attempt.error_detail == (
        "probe deadline of 40 s reached (14 bytes of an incomplete reply)"
    )
    assert attempt.timings["total"] == 40
    assert c.clock.getDelayedCalls() == []


def test_quit_unanswered_is_aborted_without_error() -> None:
    """A QUIT left unanswered is cut short after the command timeout; the
    outcome does not change."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    c.receive(b"250 mx.example.org\r\n")
    assert c.written() == EHLO + QUIT
    c.clock.advance(20)
    assert c.transport.aborted
    attempt = c.lose(error.ConnectionAborted())
    assert attempt.error is None and attempt.outcome is Category.NONE


def test_close_that_never_completes_is_aborted() -> None:
    """After 221 the probe closes politely; a close that does not complete in
    time (a TLS peer ignoring close_notify) is aborted."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    c.receive(b"250 mx.example.org\r\n")
    c.receive(b"221 bye\r\n")
    assert c.transport.disconnecting and not c.transport.aborted
    c.clock.advance(20)
    assert c.transport.aborted


def test_replies_after_quit_are_ignored() -> None:
    """Anything the server says after the 221 is neither parsed nor answered."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    c.receive(b"250 mx.example.org\r\n")
    c.receive(b"221 bye\r\ngarbage\r\n250 more\r\n")
    assert c.written() == EHLO + QUIT
    assert c.lose().error is None


def test_timings_per_stage() -> None:
    """Each stage's time is measured from its start to its reply."""
    c = converse()
    c.clock.advance(1.5)
    c.receive(b"220 mx.example.org\r\n")
    c.clock.advance(0.25)
    c.receive(b"250-mx.example.org\r\n250 STARTTLS\r\n")
    c.clock.advance(0.5)
    c.receive(b"454 no\r\n")
    c.clock.advance(0.125)
    attempt = c.lose()
    assert attempt.timings == {"banner": 1.5, "ehlo": 0.25, "starttls": 0.5, "total": 2.375}


def test_transcript_is_bounded() -> None:
    """The transcript keeps at most 200 entries of at most 512 characters."""
    c = converse()
    c.receive(b"220 " + b"x" * 1000 + b"\r\n")
    c.receive(b"".join(b"250-KEYWORD%d\r\n" % i for i in range(300)) + b"250 END\r\n")
    attempt = c.lose()
    assert len(attempt.transcript) == MAX_TRANSCRIPT_ENTRIES
    assert attempt.transcript[0] == ("<", "220 " + "x" * 508)
    assert attempt.transcript_truncated
    assert len(attempt.extensions) == 300  # the first line is the greeting


def test_finished_fires_once() -> None:
    """`finished` fires exactly once, with the attempt, whatever happens."""
    c = converse()
    c.receive(b"220 mx.example.org\r\n")
    attempt = c.lose()
    c.protocol.connectionLost(Failure(error.ConnectionDone()))
    assert c.results == [attempt]


@pytest.mark.parametrize("name", ["", "two words", "evil\r\nMAIL FROM:<x>", "bücher.example"])
def test_config_refuses_unusable_ehlo_name(name: str) -> None:
    """The EHLO name goes on the wire verbatim, so it cannot hold spaces,
    line ends or non-ASCII."""
    with pytest.raises(ValueError, match="unusable EHLO name"):
        ProbeConfig(ehlo_name=name)


def test_config_refuses_nonpositive_timeouts() -> None:
    """Timeouts are positive seconds."""
    with pytest.raises(ValueError, match="command_timeout"):
        ProbeConfig(ehlo_name=EHLO_NAME, command_timeout=0)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (error.ConnectionRefusedError(111, "Connection refused"), ErrorCode.CONNECTION_REFUSED),
        (error.TimeoutError(), ErrorCode.CONNECTION_TIMEOUT),
        (error.TCPTimedOutError(110, "Connection timed out"), ErrorCode.CONNECTION_TIMEOUT),
        (error.NoRouteError(101, "Network is unreachable"), ErrorCode.UNREACHABLE),
        (error.ConnectError(113, "No route to host"), ErrorCode.UNREACHABLE),
    ],
)
def test_connect_error_codes(exc: Exception, code: ErrorCode) -> None:
    """Connect failures map to refused, timeout or unreachable."""
    assert connect_error_code(exc) is code


def test_sni_name() -> None:
    """SNI is the MX name: A-label ASCII, lower-case, no trailing dot; never an IP."""
    assert sni_name("MX.Example.ORG.") == b"mx.example.org"
    assert sni_name("bücher.example") == b"xn--bcher-kva.example"
    assert sni_name("192.0.2.1") is None
    assert sni_name("2001:db8::1") is None
    assert sni_name("") is None


@pytest.mark.parametrize(
    ("version", "cipher", "expected"),
    [
        ("TLSv1.3", "TLS_AES_256_GCM_SHA384", True),
        ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", True),
        ("TLSv1.2", "DHE-RSA-AES128-SHA", True),
        ("TLSv1", "AES256-SHA", False),
        ("TLSv1.2", "AES128-GCM-SHA256", False),
    ],
)
def test_forward_secrecy(version: str, cipher: str, expected: bool) -> None:
    """Forward secrecy: always with TLS 1.3, else only with (EC)DHE."""
    assert has_forward_secrecy(version, cipher) is expected


def test_modules_do_not_import_the_reactor() -> None:
    """Importing the probe modules installs no reactor (Scrapy installs its own)."""
    code = (
        "import sys, crawler.smtp.client, crawler.smtp.tls, crawler.smtp.replies; "
        "assert 'twisted.internet.reactor' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_probe_once_refuses_a_name() -> None:
    """`probe_once` takes an IP literal only: it never resolves a name."""
    with pytest.raises(ValueError):
        probe_once("mx.example.org", 25, "mx.example.org", CONFIG, reactor=Clock())


# --- real probes on loopback ---------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(
    subject: str, key: Any, issuer: x509.Certificate | None, issuer_key: Any, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.DNSName(subject)])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    """A test CA, an intermediate, and two leaves (EC and RSA) for mx.example.org."""

    intermediate: x509.Certificate
    ec_leaf: x509.Certificate
    ec_key: Any
    rsa_leaf: x509.Certificate
    rsa_key: Any


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test Root CA", ca_key, None, ca_key, ca=True)
    int_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _certificate("Test Intermediate", int_key, ca, ca_key, ca=True)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(
        intermediate=intermediate,
        ec_leaf=_certificate("mx.example.org", ec_key, intermediate, int_key, ca=False),
        ec_key=ec_key,
        rsa_leaf=_certificate("mx.example.org", rsa_key, intermediate, int_key, ca=False),
        rsa_key=rsa_key,
    )


@implementer(IOpenSSLServerConnectionCreator)
class ServerCreator:
    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@dataclass
class ServerLog:
    """What a test server saw: commands, SNI names, connections lost."""

    commands: list[str] = field(default_factory=list)
    sni: list[bytes | None] = field(default_factory=list)
    lost: int = 0


def server_context(
    pki: Pki,
    log: ServerLog,
    *,
    rsa_leaf: bool = False,
    max_version: int = 0,
    min_version: int = 0,
    ciphers: bytes | None = None,
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    if ciphers is not None:
        ctx.set_cipher_list(ciphers)  # before the certificate: @SECLEVEL=0 lets weak ones load
    if min_version:
        ctx.set_min_proto_version(min_version)
    if max_version:
        ctx.set_max_proto_version(max_version)
    ctx.use_certificate(pki.rsa_leaf if rsa_leaf else pki.ec_leaf)
    ctx.use_privatekey(pki.rsa_key if rsa_leaf else pki.ec_key)
    ctx.add_extra_chain_cert(pki.intermediate)
    ctx.set_tlsext_servername_callback(lambda conn: log.sni.append(conn.get_servername()))
    return ctx


class ScriptedServer(Protocol):
    """A small SMTP server: greets, answers EHLO (STARTTLS advertised until TLS
    is on), STARTTLS as `after_220` says, QUIT with 221; logs every command."""

    def __init__(
        self, log: ServerLog, ctx: SSL.Context | None, after_220: str, banner: bytes | None
    ) -> None:
        self.log, self.ctx, self.after_220, self.banner = log, ctx, after_220, banner
        self.buffer = b""
        self.tls = False
        self.garbage_sent = False

    def connectionMade(self) -> None:
        if self.banner is not None:
            self.transport.write(self.banner)

    def dataReceived(self, data: bytes) -> None:
        if self.after_220 == "garbage" and self.log.commands[-1:] == ["STARTTLS"]:
            if not self.garbage_sent:  # the ClientHello: answer with nonsense
                self.garbage_sent = True
                self.transport.write(b"this is not TLS at all\r\n" * 4)
            return
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.command(line.decode())

    def command(self, line: str) -> None:
        self.log.commands.append(line)
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            extensions = b"250 SIZE 1000\r\n" if self.tls else b"250-SIZE 1000\r\n250 STARTTLS\r\n"
            self.transport.write(b"250-mx.example.org hello\r\n" + extensions)
        elif verb == "STARTTLS":
            self.starttls()
        elif verb == "QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.loseConnection()
        else:
            self.transport.write(b"502 5.5.2 not here\r\n")

    def starttls(self) -> None:
        if self.after_220 == "plaintext":
            self.transport.write(b"220 ready\r\n250-injected.example\r\n250 AUTH PLAIN\r\n")
        else:
            self.transport.write(b"220 ready\r\n")
        if self.after_220 == "close":
            self.transport.loseConnection()
        elif self.after_220 in ("tls", "plaintext"):
            self.tls = True
            self.transport.startTLS(ServerCreator(self.ctx))

    def connectionLost(self, reason: Failure) -> None:
        self.log.lost += 1


@pytest.fixture
def serve(reactor: Any) -> Iterator[Callable[..., tuple[str, int, ServerLog]]]:
    """Start scripted servers on loopback; they are stopped after the test."""
    ports: list[Any] = []

    def start(
        ctx_factory: Callable[[ServerLog], SSL.Context | None] = lambda log: None,
        after_220: str = "tls",
        banner: bytes | None = b"220 mx.example.org ESMTP test\r\n",
        interface: str = "127.0.0.1",
    ) -> tuple[str, int, ServerLog]:
        log = ServerLog()
        ctx = ctx_factory(log)
        factory = Factory.forProtocol(lambda: ScriptedServer(log, ctx, after_220, banner))
        port = reactor.listenTCP(0, factory, interface=interface)
        ports.append(port)
        return interface, port.getHost().port, log

    yield start
    for port in ports:
        wait(reactor, maybeDeferred(port.stopListening))


def probe(
    reactor: Any, ip: str, port: int, sni: str = "mx.example.org", config: ProbeConfig = CONFIG
) -> Attempt:
    attempt = wait(reactor, probe_once(ip, port, sni, config, reactor=reactor))
    assert isinstance(attempt, Attempt)
    return attempt


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def assert_polite(log: ServerLog) -> None:
    assert all(c.split(" ", 1)[0] in ("EHLO", "HELO", "STARTTLS", "QUIT") for c in log.commands)


@pytest.mark.timeout(60)
def test_real_starttls_tls12(reactor: Any, pki: Pki, serve: Any) -> None:
    """A TLS 1.2 server: version, (EC)DHE cipher, forward secrecy, the key
    exchange group, the chain as sent (leaf first) and the SNI the server saw."""
    ip, port, log = serve(lambda log: server_context(pki, log, max_version=SSL.TLS1_2_VERSION))
    attempt = probe(reactor, ip, port, sni="MX.example.org.")
    assert attempt.error is None, attempt.error_detail
    assert attempt.tls is not None
    assert attempt.tls.version == "TLSv1.2"
    assert attempt.tls.cipher == "ECDHE-ECDSA-AES256-GCM-SHA384"
    assert attempt.tls.forward_secrecy
    assert attempt.tls.kx_group == "x25519"  # as OpenSSL names it
    assert attempt.tls.chain_der == (_der(pki.ec_leaf), _der(pki.intermediate))
    assert log.sni == [b"mx.example.org"]
    assert log.commands == [f"EHLO {EHLO_NAME}", "STARTTLS", f"EHLO {EHLO_NAME}", "QUIT"]
    assert attempt.post_tls_extensions == ("SIZE",)
    assert attempt.extensions == ("SIZE", "STARTTLS")
    assert attempt.quit_sent and not attempt.flags
    assert attempt.outcome not in WIRE_CATEGORIES  # TLS: the certificate decides
    assert sorted(attempt.timings) == [
        "banner",
        "connect",
        "ehlo",
        "post_tls_ehlo",
        "starttls",
        "tls",
        "total",
    ]
    assert all(type(key) is str for key in attempt.timings)
    assert attempt.started_at == pytest.approx(time.time(), abs=30)


@pytest.mark.timeout(60)
def test_real_starttls_tls13(reactor: Any, pki: Pki, serve: Any) -> None:
    """A TLS 1.3 server: TLS 1.3 suite names and forward secrecy by definition."""
    ip, port, log = serve(lambda log: server_context(pki, log, min_version=SSL.TLS1_3_VERSION))
    attempt = probe(reactor, ip, port)
    assert attempt.error is None, attempt.error_detail
    assert attempt.tls is not None
    assert attempt.tls.version == "TLSv1.3"
    assert attempt.tls.cipher == "TLS_AES_256_GCM_SHA384"
    assert attempt.tls.forward_secrecy
    assert attempt.tls.kx_group  # e.g. X25519MLKEM768 or X25519, as OpenSSL names it
    assert attempt.tls.chain_der == (_der(pki.ec_leaf), _der(pki.intermediate))
    assert log.sni == [b"mx.example.org"]
    assert attempt.post_tls_ehlo == Reply(250, ("mx.example.org hello", "SIZE 1000"))


@pytest.mark.timeout(60)
def test_real_starttls_without_forward_secrecy(reactor: Any, pki: Pki, serve: Any) -> None:
    """A server offering only static-RSA key exchange still yields a session,
    recorded without forward secrecy."""
    ip, port, _ = serve(
        lambda log: server_context(
            pki, log, rsa_leaf=True, max_version=SSL.TLS1_2_VERSION, ciphers=b"AES128-GCM-SHA256"
        )
    )
    attempt = probe(reactor, ip, port)
    assert attempt.error is None, attempt.error_detail
    assert attempt.tls is not None
    assert (attempt.tls.version, attempt.tls.cipher) == ("TLSv1.2", "AES128-GCM-SHA256")
    assert not attempt.tls.forward_secrecy
    assert attempt.tls.chain_der[0] == _der(pki.rsa_leaf)


@pytest.mark.timeout(60)
def test_real_legacy_tls10(reactor: Any, pki: Pki, serve: Any) -> None:
    """The legacy-capable client still negotiates TLS 1.0 (security level 0)."""
    ip, port, _ = serve(
        lambda log: server_context(
            pki, log, rsa_leaf=True, max_version=SSL.TLS1_VERSION, ciphers=b"ALL:@SECLEVEL=0"
        )
    )
    attempt = probe(reactor, ip, port)
    assert attempt.error is None, attempt.error_detail
    assert attempt.tls is not None
    assert attempt.tls.version == "TLSv1"


@pytest.mark.timeout(60)
def test_real_sni_is_a_label_and_never_an_ip(reactor: Any, pki: Pki, serve: Any) -> None:
    """An IDN MX name is sent as its A-label; an IP literal sends no SNI."""
    ip, port, log = serve(lambda log: server_context(pki, log))
    assert probe(reactor, ip, port, sni="bücher.example").tls is not None
    assert probe(reactor, ip, port, sni="127.0.0.1").tls is not None
    assert log.sni == [b"xn--bcher-kva.example", None]


@pytest.mark.timeout(60)
def test_real_plaintext_after_220(reactor: Any, pki: Pki, serve: Any) -> None:
    """Plaintext sent with the 220 is discarded and recorded; the handshake and
    the post-TLS EHLO still work on the real reply."""
    ip, port, log = serve(lambda log: server_context(pki, log), after_220="plaintext")
    attempt = probe(reactor, ip, port)
    assert attempt.error is None, attempt.error_detail
    assert attempt.plaintext_after_starttls == b"250-injected.example\r\n250 AUTH PLAIN\r\n"
    assert attempt.post_tls_extensions == ("SIZE",)
    assert attempt.flags == ("plaintext_after_starttls",)
    assert log.commands[-2:] == [f"EHLO {EHLO_NAME}", "QUIT"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("after_220", ["close", "garbage"])
def test_real_handshake_failure(reactor: Any, serve: Any, after_220: str) -> None:
    """220 to STARTTLS, then a close or garbage instead of a handshake:
    `tls_handshake_failed` at tls, with the text stored."""
    ip, port, log = serve(after_220=after_220)
    attempt = probe(reactor, ip, port)
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TLS_HANDSHAKE_FAILED, Stage.TLS)
    assert attempt.error_detail
    assert attempt.outcome is Category.FAILURE
    assert_polite(log)


@pytest.mark.timeout(60)
def test_real_no_shared_cipher(reactor: Any, pki: Pki, serve: Any) -> None:
    """A server with only anonymous suites (refused by the probe) sends an
    alert: `tls_handshake_failed` with the alert text."""
    ip, port, _ = serve(
        lambda log: server_context(
            pki, log, max_version=SSL.TLS1_2_VERSION, ciphers=b"aNULL:@SECLEVEL=0"
        )
    )
    attempt = probe(reactor, ip, port)
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TLS_HANDSHAKE_FAILED, Stage.TLS)
    assert "handshake failure" in (attempt.error_detail or "")


@pytest.mark.timeout(60)
def test_real_banner_timeout_closes_socket(reactor: Any, serve: Any) -> None:
    """A server that never greets: `timeout` at the banner, and the socket is
    really closed (the server sees the connection go)."""
    ip, port, log = serve(banner=None)
    config = ProbeConfig(EHLO_NAME, banner_timeout=0.3, probe_timeout=5)
    attempt = probe(reactor, ip, port, config=config)
    assert (attempt.error, attempt.error_stage) == (ErrorCode.TIMEOUT, Stage.BANNER)
    spin(reactor, 0.2)
    assert log.lost == 1
    assert log.commands == []


@pytest.mark.timeout(60)
def test_real_connection_refused(reactor: Any) -> None:
    """A closed loopback port: `connection_refused` at connect, OS text kept."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempt = probe(reactor, "127.0.0.1", port)
    assert (attempt.error, attempt.error_stage) == (ErrorCode.CONNECTION_REFUSED, Stage.CONNECT)
    assert "refused" in (attempt.error_detail or "").lower()
    assert attempt.outcome is Category.ERROR
    assert "connect" in attempt.timings and attempt.banner is None


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_real_ipv6(reactor: Any, pki: Pki, serve: Any) -> None:
    """A probe to ::1 works like one to 127.0.0.1."""
    ip, port, log = serve(lambda log: server_context(pki, log), interface="::1")
    attempt = probe(reactor, ip, port)
    assert attempt.error is None, attempt.error_detail
    assert attempt.tls is not None and log.sni == [b"mx.example.org"]


def test_the_client_offers_legacy_suites_but_no_anonymous_or_unencrypted_ones() -> None:
    """What a sending MTA offers (docs/design.md): static RSA and CBC suites a TLS 1.0 server
    needs, never anonymous (aNULL), unencrypted (eNULL), PSK or SRP ones."""
    offered = SSL.Connection(client_context(), None).get_cipher_list()
    assert {"AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-GCM-SHA384"} <= set(offered)
    for suite in offered:
        parts = suite.split("-")
        assert not {"ADH", "AECDH", "NULL", "PSK", "SRP"} & set(parts), suite


def test_a_failure_of_our_own_machine_is_not_a_fact_about_the_target() -> None:
    """Out of sockets or ports: no `unreachable` verdict, a LocalProbeError instead."""
    from crawler.smtp.client import is_local_failure

    assert is_local_failure(error.ConnectBindError(24, "Too many open files"))
    assert is_local_failure(error.ConnectError(99, "Cannot assign requested address"))
    assert not is_local_failure(error.ConnectionRefusedError())
    assert not is_local_failure(error.NoRouteError())
