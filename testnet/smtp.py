"""Polite ESMTP servers: real SMTP with data-chosen quirks (RFC 5321, STARTTLS per RFC 3207).

They never take mail: MAIL, RCPT, DATA and the rest get 502, and every line is logged,
so a scanner that sends them is caught by the connection log.

With a reply delay (`[network] reply_delay_ms`, `up --reply-delay-ms`) every reply, and
whatever must follow it (a close after 221 or 421, the TLS handshake after 220), waits in
a per-connection queue and goes out that much later, in order, from a reactor timer: a
server far away, not a slow one (nothing sleeps).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from OpenSSL import SSL
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from testnet import clienthello
from testnet.connlog import ConnectionLog, ConnectionRecord
from testnet.spec import Esmtp, ServerSpec
from testnet.tls import ServerTls

# A connection nobody closes is closed after this long (a hung scanner must not pin us).
MAX_CONNECTION_SECONDS = 300.0


@implementer(IHandshakeListener)
class EsmtpServer(LineReceiver):
    # Bare LF is tolerated (CR stripped below), as most real servers do.
    delimiter = b"\n"
    MAX_LENGTH = 4096

    def __init__(
        self,
        server: ServerSpec,
        tls: ServerTls | None,
        log: ConnectionLog,
        clock: IReactorTime,
        delay: float = 0.0,
    ) -> None:
        assert server.esmtp is not None
        self.server = server
        self.delay = delay
        self.outbox: deque[tuple[float, Callable[[], None]]] = deque()  # (due, action)
        self.outbox_timer: IDelayedCall | None = None
        self.options: Esmtp = server.esmtp
        self.tls = tls
        self.log = log
        self.clock = clock
        self.record: ConnectionRecord | None = None
        self.greeted = False
        self.tls_started = False
        self.tls_connection: SSL.Connection | None = None
        self.hello = b""  # the first TLS record, read before the TLS layer takes over
        self.timers: list[IDelayedCall] = []

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.record = self.log.begin(
            self.server.name, self.transport.getHost(), self.transport.getPeer()
        )
        self.timers.append(self.clock.callLater(MAX_CONNECTION_SECONDS, self._expire))
        if self.options.banner_delay:
            # A delayed greeting, as postscreen or a tarpitting MTA does (RFC 5321 4.5.3.2.1).
            self.timers.append(self.clock.callLater(self.options.banner_delay, self._greet))
        else:
            self._greet()

    def connectionLost(self, reason: Failure) -> None:
        self.outbox.clear()
        for timer in [*self.timers, self.outbox_timer]:
            if timer is not None and timer.active():
                timer.cancel()
        if self.record is not None:
            if self.tls_connection is not None:
                name = self.tls_connection.get_servername()
                self.record.sni = name.decode("ascii", "replace") if name else None
            self.record.close()

    def handshakeCompleted(self) -> None:
        assert self.record is not None and self.tls_connection is not None
        self.record.tls = True
        self.record.tls_version = self.tls_connection.get_protocol_version_name()
        self.record.cipher = self.tls_connection.get_cipher_name()

    def _expire(self) -> None:
        self.transport.abortConnection()

    def _greet(self) -> None:
        self.greeted = True
        self.reply(self.options.banner_code, *self.options.banner)
        if self.options.banner_code == 421:
            # RFC 5321 3.8: 421 means the service is closing the channel.
            self.close()

    def reply(self, code: int, *lines: str) -> None:
        """Send one reply; all lines but the last carry the "-" continuation mark."""
        out = [f"{code}-{line}" for line in lines[:-1]] + [f"{code} {lines[-1]}"]
        self.write("".join(f"{line}\r\n" for line in out).encode("latin-1"))

    def write(self, data: bytes) -> None:
        self.later(lambda: self.transport.write(data))

    def close(self) -> None:
        self.later(self.transport.loseConnection)

    def later(self, action: Callable[[], None]) -> None:
        """Run a transport action now, or after the reply delay behind those queued."""
        if self.delay <= 0:
            action()
            return
        self.outbox.append((self.clock.seconds() + self.delay, action))
        if self.outbox_timer is None:
            self.outbox_timer = self.clock.callLater(self.delay, self._flush)

    def _flush(self) -> None:
        self.outbox_timer = None
        now = self.clock.seconds()
        while self.outbox and self.outbox[0][0] <= now:
            _, action = self.outbox.popleft()
            action()
        if self.outbox:
            self.outbox_timer = self.clock.callLater(self.outbox[0][0] - now, self._flush)

    # -- commands -----------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        assert self.record is not None
        self.record.command(line)
        if not self.greeted:
            return  # a client talking before the greeting is ignored, not answered
        text = line.rstrip(b"\r").decode("latin-1")
        verb, _, argument = text.partition(" ")
        verb = verb.upper()
        if verb == "QUIT":
            self.reply(221, "2.0.0 Bye")
            self.close()
        elif self.options.banner_code != 220:
            # RFC 5321 3.1: after a 554 greeting, wait for QUIT and answer 503 to the rest.
            self.reply(503, "5.5.1 Bad sequence of commands")
        elif verb == "EHLO":
            self.do_ehlo(argument)
        elif verb == "HELO":
            self.do_helo(argument)
        elif verb == "STARTTLS":
            self.do_starttls()
        elif verb in ("NOOP", "RSET"):
            self.reply(250, "2.0.0 OK")
        else:
            self.reply(502, "5.5.2 Command not implemented")

    def lineLengthExceeded(self, line: bytes) -> None:
        self.reply(500, "5.5.2 Line too long")
        self.close()

    def do_ehlo(self, argument: str) -> None:
        if self.tls_started:
            self.post_tls_ehlo(argument)
            return
        code = self.options.ehlo_code
        if code != 250:
            self.reply(code, "5.5.1 EHLO not accepted" if code >= 500 else "4.3.2 Try again later")
            if code == 421:
                self.close()
            return
        keywords = list(self.options.ehlo_keywords)
        if self.options.starttls:
            keywords.append("STARTTLS")
        self.reply(250, f"{self.options.hostname} greets {argument}", *keywords)

    def do_helo(self, argument: str) -> None:
        code = self.options.helo_code
        if code == 250:
            self.reply(250, self.options.hostname)
        else:
            self.reply(code, "5.5.1 HELO not accepted" if code >= 500 else "4.3.2 Try again later")
            if code == 421:
                self.close()

    def do_starttls(self) -> None:
        if self.tls_started:
            self.reply(503, "5.5.1 TLS already active")
        elif not self.options.starttls:
            self.reply(502, "5.5.1 Command not implemented")
        elif self.options.on_starttls == "reject":
            self.reply(
                self.options.starttls_code,
                "4.7.0 TLS not available due to temporary reason"
                if self.options.starttls_code < 500
                else "5.7.0 TLS not available",
            )
        elif self.options.on_starttls == "tls_with_plaintext":
            # A broken server: a stray reply after the 220, in the same write, before TLS.
            # A client must discard it (RFC 3207 4.2; the CVE-2011-0411 class of bugs).
            self.write(b"220 2.0.0 go ahead\r\n250 extra\r\n")
            self._start_tls()
        else:
            self.reply(220, "2.0.0 Ready to start TLS")
            self._start_tls()

    def _start_tls(self) -> None:
        assert self.tls is not None
        self.tls_started = True  # at once: a line arriving meanwhile is a post-TLS one
        # Peek at the client's first TLS record (what it offers; close_unless), then hand
        # it to the TLS layer: raw mode until the record is whole, see rawDataReceived.
        self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        self.hello += data
        size = clienthello.record_size(self.hello)
        if size is None or len(self.hello) < size:
            return  # the record is not all in yet (record_size bounds the wait)
        assert self.record is not None and self.tls is not None and self.options.tls
        offered = clienthello.offered(self.hello) if size else None
        self.record.offered = list(offered or ())
        hello, self.hello = self.hello, b""
        self.setLineMode()  # what TLS decrypts comes back to lineReceived
        required = self.options.tls.close_unless
        if required is not None and required not in (offered or ()):
            self.transport.loseConnection()  # a TCP close, no alert
            return
        self.transport.startTLS(self.tls.creator(self._keep))
        # startTLS put the TLS layer between the TCP transport and its protocol (this one,
        # or a dispatcher's): the bytes peeked at go in there, as if just received.
        self.transport.protocol.dataReceived(hello)

    def _keep(self, connection: SSL.Connection) -> None:
        self.tls_connection = connection

    def post_tls_ehlo(self, argument: str) -> None:
        behaviour = self.options.post_tls_ehlo
        if behaviour == "close":
            self.close()
        elif behaviour == "reject":
            self.reply(554, "5.7.1 EHLO after TLS not accepted")
        else:
            # RFC 3207 4.2: the post-TLS EHLO reply no longer lists STARTTLS.
            self.reply(
                250, f"{self.options.hostname} greets {argument}", *self.options.ehlo_keywords
            )


class EsmtpFactory(Factory):
    def __init__(
        self,
        server: ServerSpec,
        tls: ServerTls | None,
        log: ConnectionLog,
        clock: IReactorTime,
        delay: float = 0.0,
    ) -> None:
        self.server = server
        self.tls = tls
        self.log = log
        self.clock = clock
        self.delay = delay

    def buildProtocol(self, addr: object) -> EsmtpServer:
        protocol = EsmtpServer(self.server, self.tls, self.log, self.clock, self.delay)
        protocol.factory = self
        return protocol
