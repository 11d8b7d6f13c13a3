"""The SMTP/STARTTLS probe: a Twisted client protocol that learns whether a
server offers STARTTLS and what TLS session it yields, and nothing more.

One method per stage (banner, EHLO, HELO, STARTTLS, TLS, post-TLS EHLO, QUIT),
in the manner of Twisted's `mail/smtp.py` `SMTPClient`, with its gaps closed:
replies are read by the bounded `ReplyReader`; every stage has a deadline (not
an idle timer, which a slow drip defeats) and the attempt a total one; bytes
waiting after ``220`` to STARTTLS are discarded, not read as a reply. It never
sends MAIL, RCPT or DATA: the conversation is EHLO (or HELO), STARTTLS, EHLO, QUIT.
"""

from __future__ import annotations

import errno
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from crawler.smtp.facts import Attempt, Reply
from crawler.smtp.replies import ReplyError, ReplyReader, ehlo_keywords
from crawler.smtp.tls import SniConnectionCreator, client_context, read_tls_facts
from schema.vocab import ErrorCode, Stage

MAX_TRANSCRIPT_ENTRIES = 200
MAX_TRANSCRIPT_LINE = 512  # characters
MAX_DETAIL = 2048  # characters of an offending reply kept in error_detail
MAX_PLAINTEXT_KEPT = 4096  # bytes of plaintext after the 220 to STARTTLS kept

# Stages past the ones an error can name (schema.vocab.Stage): after TLS, a
# failure only sets a flag; after QUIT or once closing, nothing is recorded.
POST_TLS_EHLO = "post_tls_ehlo"
QUIT = "quit"
CLOSING = "closing"
_ERROR_STAGES: frozenset[str] = frozenset(Stage)
_TIMED_STAGES: frozenset[str] = _ERROR_STAGES - {Stage.CONNECT} | {POST_TLS_EHLO}


@dataclass(frozen=True)
class ProbeConfig:
    """Per-attempt settings; timeouts in seconds (the README's `SMTP_*` settings)."""

    ehlo_name: str
    connect_timeout: float = 10.0
    banner_timeout: float = 30.0
    command_timeout: float = 30.0
    tls_timeout: float = 30.0
    probe_timeout: float = 120.0
    # False for protocol conversations: after the handshake only QUIT, as the
    # session's version and cipher are all they are for.
    ehlo_after_tls: bool = True

    def __post_init__(self) -> None:
        # The name goes on the wire verbatim: no spaces or line ends (RFC 5321 §4.1.1.1).
        name = self.ehlo_name
        if not name or not name.isascii() or not name.isprintable() or " " in name:
            raise ValueError(f"unusable EHLO name: {name!r}")
        for field_name in (
            "connect_timeout",
            "banner_timeout",
            "command_timeout",
            "tls_timeout",
            "probe_timeout",
        ):
            if not getattr(self, field_name) > 0:
                raise ValueError(f"{field_name} must be positive seconds")


def _code_class(reply: Reply) -> int:
    return reply.code // 100


def reply_lines(reply: Reply) -> list[str]:
    """The reply's lines as they were on the wire (``250-a``, ``250 b``)."""
    last = len(reply.lines) - 1
    return [
        f"{reply.code}{' ' if i == last else '-'}{text}" if text or i < last else str(reply.code)
        for i, text in enumerate(reply.lines)
    ]


def _reply_detail(reply: Reply) -> str:
    return "\n".join(reply_lines(reply))[:MAX_DETAIL]


def failure_text(reason: Failure) -> str:
    """The OS or OpenSSL text of a failure: for OpenSSL, each queued error as
    ``library: reason`` (e.g. ``SSL routines: sslv3 alert handshake failure``)."""
    value = reason.value
    if isinstance(value, SSL.Error) and value.args and isinstance(value.args[0], list):
        parts = [_openssl_error_text(err) for err in value.args[0]]
        if parts:
            return "; ".join(parts)
    return reason.getErrorMessage() or type(value).__name__


def _openssl_error_text(err: object) -> str:
    if isinstance(err, tuple) and err:
        return ": ".join(str(part) for part in (err[0], err[-1]) if part)
    return str(err)


@implementer(IHandshakeListener)
class SmtpProbeProtocol(Protocol):
    """One SMTP conversation; `finished` fires once, with the `Attempt`, when the
    connection is gone (never errbacks).

    `clock` defaults to the global reactor, looked up only in `connectionMade`;
    `started` is the clock time the attempt began (before connecting), so the
    ``total`` timing includes the connect.
    """

    def __init__(
        self,
        config: ProbeConfig,
        connection_creator: IOpenSSLClientConnectionCreator,
        clock: IReactorTime | None = None,
        attempt: Attempt | None = None,
        started: float | None = None,
    ) -> None:
        self.config = config
        self.connection_creator = connection_creator
        self.clock = clock
        self.attempt = attempt if attempt is not None else Attempt(started_at=time.time())
        self.finished: Deferred[Attempt] = Deferred()
        self._started = started
        self._reader = ReplyReader()
        self._stage = CLOSING
        self._stage_started = 0.0
        self._expect: Callable[[Reply], None] | None = None
        self._stage_timer: IDelayedCall | None = None
        self._total_timer: IDelayedCall | None = None

    # -- connection events --------------------------------------------------

    def connectionMade(self) -> None:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor  # type: ignore[assignment]
        now = self._now()
        if self._started is None:
            self._started = now
        self._total_timer = self.clock.callLater(self.config.probe_timeout, self._deadline_reached)
        # RFC 5321 §4.3.1: the client waits for the server's greeting first.
        self._begin(Stage.BANNER, self.config.banner_timeout, self.banner_received)

    def dataReceived(self, data: bytes) -> None:
        if self._expect is None:
            return  # closing, or TLS pending: nothing is read as a reply
        self._reader.feed(data)
        try:
            while self._expect is not None and (reply := self._reader.next_reply()) is not None:
                self._reply_received(reply)
                if self._expect is not None and self._reader.buffered:
                    # RFC 5321 §4.1: a reply follows its command. Bytes already waiting
                    # when the next command went out answer nothing we sent; reading
                    # them as its reply would let a stray "250" pass for EHLO's answer.
                    self._protocol_error(
                        f"reply before command: {self._reader.take_buffer()!r}"[:MAX_DETAIL]
                    )
                    return
        except ReplyError as e:
            self._protocol_error(str(e))

    def handshakeCompleted(self) -> None:
        """Twisted's TLS layer says the handshake is done: read the session."""
        if self._stage != Stage.TLS:
            return
        self._end_stage()
        self.attempt.tls = read_tls_facts(self.transport.getHandle())  # type: ignore[union-attr]
        if self.config.ehlo_after_tls:
            self.send_post_tls_ehlo()
        else:
            self.send_quit()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            self._record_loss(reason)
        finally:
            # Whatever happened above, no timer outlives the connection and
            # `finished` fires, once, with the attempt.
            self._cancel_stage_timer()
            if self._total_timer is not None and self._total_timer.active():
                self._total_timer.cancel()
            self._stage, self._expect = CLOSING, None
            if not self.finished.called:
                self.finished.callback(self.attempt)

    def _record_loss(self, reason: Failure) -> None:
        if self._stage == Stage.TLS:
            # Alert, close, garbage or no shared cipher: Twisted reports the
            # OpenSSL error (or the close) as the reason.
            self._fail(ErrorCode.TLS_HANDSHAKE_FAILED, failure_text(reason))
        elif self._stage in _ERROR_STAGES:
            self._fail(ErrorCode.CONNECTION_CLOSED, failure_text(reason))
        elif self._stage == POST_TLS_EHLO:
            self.attempt.post_tls_ehlo_failed = True
        self._end_stage()
        if self.clock is not None and self._started is not None:
            self.attempt.timings["total"] = self._now() - self._started

    # -- stages ---------------------------------------------------------------

    def banner_received(self, reply: Reply) -> None:
        self.attempt.banner = reply
        if reply.code == 220:
            self.send_ehlo()
        elif _code_class(reply) in (4, 5):
            # RFC 5321 §3.1: 554 instead of 220; the server still awaits QUIT.
            self._fail(ErrorCode.GREETING_REJECTED, _reply_detail(reply))
            self._quit_or_close(reply)
        else:
            self._protocol_error(_reply_detail(reply))

    def send_ehlo(self) -> None:
        self._send(f"EHLO {self.config.ehlo_name}", Stage.EHLO, self.ehlo_received)

    def ehlo_received(self, reply: Reply) -> None:
        self.attempt.ehlo = reply
        if reply.code == 250:
            self.attempt.extensions = ehlo_keywords(reply)
            self.attempt.starttls_advertised = "STARTTLS" in self.attempt.extensions
            if self.attempt.starttls_advertised:
                self.send_starttls()
            else:
                self.send_quit()
        elif _code_class(reply) == 5:
            # RFC 5321 §3.2: a server that does not support EHLO answers 5xx
            # (e.g. 500, 502) and the client falls back to HELO.
            self.attempt.ehlo_refused = True
            self.send_helo()
        elif _code_class(reply) == 4:
            # A transient refusal (e.g. 421, RFC 5321 §4.2.2): HELO would fare no
            # better, and the attempt is retried later.
            self._fail(ErrorCode.EHLO_REJECTED, _reply_detail(reply))
            self._quit_or_close(reply)
        else:
            self._protocol_error(_reply_detail(reply))

    def send_helo(self) -> None:
        self._send(f"HELO {self.config.ehlo_name}", Stage.HELO, self.helo_received)

    def helo_received(self, reply: Reply) -> None:
        self.attempt.helo = reply
        if reply.code == 250:
            # HELO carries no extensions, so no STARTTLS (RFC 3207 §4 needs EHLO).
            self.attempt.starttls_advertised = False
            self.send_quit()
        elif _code_class(reply) in (4, 5):
            self._fail(ErrorCode.EHLO_REJECTED, _reply_detail(reply))
            self._quit_or_close(reply)
        else:
            self._protocol_error(_reply_detail(reply))

    def send_starttls(self) -> None:
        self._send("STARTTLS", Stage.STARTTLS, self.starttls_received)

    def starttls_received(self, reply: Reply) -> None:
        self.attempt.starttls_reply = reply
        if reply.code == 220:
            self.start_tls()
        elif _code_class(reply) in (4, 5):
            # RFC 3207 §4: 454 TLS not available, 501 syntax error.
            self._fail(ErrorCode.STARTTLS_REJECTED, _reply_detail(reply))
            self._quit_or_close(reply)
        else:
            self._protocol_error(_reply_detail(reply))

    def start_tls(self) -> None:
        # Bytes already sent after the 220 came before the handshake: discard
        # them (RFC 3207 §5, the client MUST discard pre-TLS knowledge), and keep
        # a copy for the flag. Twisted's own client would read them as a reply.
        waiting = self._reader.take_buffer()
        self.attempt.plaintext_after_starttls = waiting[:MAX_PLAINTEXT_KEPT]
        self._reader = ReplyReader()
        self._begin(Stage.TLS, self.config.tls_timeout, None)
        try:
            self.transport.startTLS(self.connection_creator)  # type: ignore[union-attr]
        except SSL.Error as e:
            self._fail(ErrorCode.TLS_HANDSHAKE_FAILED, failure_text(Failure(e)))
            self._abort()

    def send_post_tls_ehlo(self) -> None:
        # RFC 3207 §4.2: after TLS the client forgets what EHLO said and asks again.
        self._send(f"EHLO {self.config.ehlo_name}", POST_TLS_EHLO, self.post_tls_ehlo_received)

    def post_tls_ehlo_received(self, reply: Reply) -> None:
        self.attempt.post_tls_ehlo = reply
        if reply.code == 250:
            self.attempt.post_tls_extensions = ehlo_keywords(reply)
        else:
            self.attempt.post_tls_ehlo_failed = True
        self._quit_or_close(reply)

    def send_quit(self) -> None:
        self.attempt.quit_sent = True
        self._send("QUIT", QUIT, self.quit_received)

    def quit_received(self, reply: Reply) -> None:
        self._close()

    # -- plumbing -------------------------------------------------------------

    def _now(self) -> float:
        assert self.clock is not None
        return self.clock.seconds()

    def _begin(self, stage: str, timeout: float, expect: Callable[[Reply], None] | None) -> None:
        """Enter a stage: its deadline runs from now, whatever trickles in."""
        self._cancel_stage_timer()
        self._stage = stage
        self._stage_started = self._now()
        self._expect = expect
        assert self.clock is not None
        self._stage_timer = self.clock.callLater(timeout, self._stage_deadline_reached, timeout)

    def _send(self, command: str, stage: str, expect: Callable[[Reply], None]) -> None:
        self._begin(stage, self.config.command_timeout, expect)
        self._record(">", command)
        self.transport.write(command.encode("ascii") + b"\r\n")  # type: ignore[union-attr]

    def _reply_received(self, reply: Reply) -> None:
        for line in reply_lines(reply):
            self._record("<", line)
        self._end_stage()
        expect, self._expect = self._expect, None
        assert expect is not None
        expect(reply)

    def _end_stage(self) -> None:
        """Stop the stage's deadline and record how long the stage took."""
        self._cancel_stage_timer()
        stage = str(self._stage)  # plain str keys: the facts stay plain and picklable
        if stage in _TIMED_STAGES and stage not in self.attempt.timings:
            self.attempt.timings[stage] = self._now() - self._stage_started

    def _cancel_stage_timer(self) -> None:
        if self._stage_timer is not None and self._stage_timer.active():
            self._stage_timer.cancel()
        self._stage_timer = None

    def _record(self, direction: str, line: str) -> None:
        transcript = self.attempt.transcript
        if len(transcript) >= MAX_TRANSCRIPT_ENTRIES:
            self.attempt.transcript_truncated = True
            return
        if len(line) > MAX_TRANSCRIPT_LINE:
            self.attempt.transcript_truncated = True
        transcript.append((direction, line[:MAX_TRANSCRIPT_LINE]))

    def _fail(self, code: ErrorCode, detail: str) -> None:
        """Record the attempt's error, at the current stage; the first one stands."""
        if self.attempt.error is None and self._stage in _ERROR_STAGES:
            self.attempt.error = code
            self.attempt.error_stage = Stage(self._stage)
            self.attempt.error_detail = detail

    def _protocol_error(self, detail: str) -> None:
        """Not SMTP, malformed or oversized: stop talking (QUIT would be read by
        whatever is there), and keep the offending text."""
        if self._stage == POST_TLS_EHLO:
            self.attempt.post_tls_ehlo_failed = True
        self._fail(ErrorCode.PROTOCOL_ERROR, detail)
        self._close()

    def _quit_or_close(self, reply: Reply) -> None:
        # RFC 5321 §3.8: after 421 the server closes the channel; QUIT is moot.
        if reply.code == 421:
            self._close()
        else:
            self.send_quit()

    def _close(self) -> None:
        """Close politely; a close that does not complete in time (e.g. a TLS
        peer that never answers close_notify) is aborted."""
        self._end_stage()
        self._begin(CLOSING, self.config.command_timeout, None)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _abort(self) -> None:
        """Close now, without flushing or TLS shutdown: the socket really goes."""
        self._end_stage()
        self._stage = CLOSING
        self._expect = None
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _stage_deadline_reached(self, timeout: float) -> None:
        self._stage_timer = None
        self._time_out(f"stage {self._stage} took over {timeout:g} s")

    def _deadline_reached(self) -> None:
        self._total_timer = None
        self._time_out(f"probe deadline of {self.config.probe_timeout:g} s reached")

    def _time_out(self, why: str) -> None:
        if self._stage == POST_TLS_EHLO:
            self.attempt.post_tls_ehlo_failed = True
        pending = self._reader.buffered
        if pending and self._stage != Stage.TLS:
            why += f" ({pending} bytes of an incomplete reply)"
        self._fail(ErrorCode.TIMEOUT, why)
        self._abort()


class _ProbeFactory(ClientFactory):
    """Builds the protocol once connected; turns a failed connect into an attempt."""

    noisy = False

    def __init__(
        self,
        config: ProbeConfig,
        connection_creator: IOpenSSLClientConnectionCreator,
        clock: IReactorTime,
        attempt: Attempt,
    ) -> None:
        self.config = config
        self.connection_creator = connection_creator
        self.clock = clock
        self.attempt = attempt
        self.started = clock.seconds()
        self.finished: Deferred[Attempt] = Deferred()

    def buildProtocol(self, addr: IAddress) -> SmtpProbeProtocol:
        self.attempt.timings["connect"] = self.clock.seconds() - self.started
        protocol = SmtpProbeProtocol(
            self.config, self.connection_creator, self.clock, self.attempt, self.started
        )
        protocol.factory = self
        protocol.finished.addCallback(self.finished.callback)
        return protocol

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        if is_local_failure(reason.value):
            # Our machine failed, not the target: no fact about it to record.
            self.finished.errback(LocalProbeError(failure_text(reason)))
            return
        elapsed = self.clock.seconds() - self.started
        self.attempt.timings["connect"] = self.attempt.timings["total"] = elapsed
        self.attempt.error = connect_error_code(reason.value)
        self.attempt.error_stage = Stage.CONNECT
        self.attempt.error_detail = failure_text(reason)
        self.finished.callback(self.attempt)


class LocalProbeError(Exception):
    """The scanning machine could not make the connection (no free socket or
    port, no local address): says nothing about the target."""


# errnos of a connect that failed on our side: out of files, buffers, memory or ports.
_LOCAL_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}
)


def is_local_failure(exc: BaseException) -> bool:
    if isinstance(exc, error.ConnectBindError):
        return True
    return isinstance(exc, error.ConnectError) and exc.osError in _LOCAL_ERRNOS


def connect_error_code(exc: BaseException) -> ErrorCode:
    """Map a failed TCP connect to its code. Twisted maps ECONNREFUSED,
    ETIMEDOUT and ENETUNREACH to their own classes; EHOSTUNREACH and the rest
    arrive as a plain `ConnectError`, and all mean the host was not reached."""
    if isinstance(exc, error.ConnectionRefusedError):
        return ErrorCode.CONNECTION_REFUSED
    if isinstance(exc, (error.TimeoutError, error.TCPTimedOutError)):
        return ErrorCode.CONNECTION_TIMEOUT
    return ErrorCode.UNREACHABLE


def probe_once(
    ip: str,
    port: int,
    sni: str,
    config: ProbeConfig,
    context: SSL.Context | None = None,
    reactor: Any = None,
) -> Deferred[Attempt]:
    """Connect to ip:port (an IPv4 or IPv6 literal, never a name: no DNS here)
    and run one probe, offering `sni` (the MX name) in the TLS handshake.

    `context` defaults to the process's shared legacy context; `reactor` (an
    `IReactorTCP` and `IReactorTime`) to the global one. The Deferred fires
    with the `Attempt`; it errbacks only with `LocalProbeError`, when this
    machine could not even try.
    """
    if reactor is None:
        from twisted.internet import reactor
    host = str(ipaddress.ip_address(ip.strip("[]")))  # ValueError for a name
    creator = SniConnectionCreator(context if context is not None else client_context(), sni)
    factory = _ProbeFactory(config, creator, reactor, Attempt(started_at=time.time()))
    reactor.connectTCP(host, port, factory, timeout=config.connect_timeout)
    return factory.finished
