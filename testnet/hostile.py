"""Hostile servers: raw byte scripts, not SMTP implementations.

A script is a list of steps run in order on each connection. Each step kind is a small
class with one `run`; the spec picks them by name (`send`, `sleep`, `drip`, `read_line`,
`read_any`, `close`, `abort`, `hang`; `line` is `send` with CRLF and padding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from testnet.connlog import ConnectionLog, ConnectionRecord
from testnet.smtp import MAX_CONNECTION_SECONDS
from testnet.spec import ServerSpec, Step

MAX_BUFFER = 65536


class Action:
    """One step of a script; `run` returns when the next step may start."""

    def __init__(self, step: Step) -> None:
        self.step = step

    async def run(self, conn: ScriptServer) -> None:
        raise NotImplementedError


class Send(Action):
    async def run(self, conn: ScriptServer) -> None:
        conn.transport.write(self.step.data * self.step.repeat)


class Sleep(Action):
    async def run(self, conn: ScriptServer) -> None:
        await conn.sleep(self.step.seconds)


class Drip(Action):
    """One byte per interval: a reply that trickles in defeats an idle timer, not a deadline."""

    async def run(self, conn: ScriptServer) -> None:
        for i in range(len(self.step.data)):
            conn.transport.write(self.step.data[i : i + 1])
            await conn.sleep(self.step.seconds)


class ReadLine(Action):
    async def run(self, conn: ScriptServer) -> None:
        await conn.wait(lambda: b"\n" in conn.buffer)
        _, _, conn.buffer = conn.buffer.partition(b"\n")


class ReadAny(Action):
    """Wait for any bytes, e.g. a TLS ClientHello; from here on input is counted, not read."""

    async def run(self, conn: ScriptServer) -> None:
        conn.binary = True
        if conn.buffer and conn.record is not None:
            early, conn.buffer = conn.buffer, b""
            conn.pending = b""
            conn.hello = early  # it arrived before this step began
            conn.record.sni = client_hello_sni(early)
            conn.record.binary_bytes += len(early)
        await conn.wait(lambda: conn.record is not None and conn.record.binary_bytes > 0)


class Close(Action):
    async def run(self, conn: ScriptServer) -> None:
        conn.transport.loseConnection()  # FIN after pending writes
        await conn.wait(lambda: False)


class Abort(Action):
    async def run(self, conn: ScriptServer) -> None:
        conn.transport.abortConnection()  # RST, pending writes dropped
        await conn.wait(lambda: False)


class Hang(Action):
    """Say nothing more and keep the connection open: the client must give up."""

    async def run(self, conn: ScriptServer) -> None:
        await conn.wait(lambda: False)


ACTIONS: dict[str, type[Action]] = {
    "send": Send,
    "sleep": Sleep,
    "drip": Drip,
    "read_line": ReadLine,
    "read_any": ReadAny,
    "close": Close,
    "abort": Abort,
    "hang": Hang,
}


def client_hello_sni(data: bytes) -> str | None:
    """The server_name (RFC 6066 3) of a TLS ClientHello at the start of `data`, if any."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:  # handshake record, ClientHello
            return None
        end = 5 + int.from_bytes(data[3:5], "big")
        pos = 5 + 4 + 2 + 32  # headers, client_version, random
        pos += 1 + data[pos]  # session_id
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + data[pos]  # compression_methods
        pos += 2  # extensions length
        while pos + 4 <= end:
            kind = int.from_bytes(data[pos : pos + 2], "big")
            size = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if kind == 0:  # server_name: list length, name type 0, name length, name
                length = int.from_bytes(data[pos + 7 : pos + 9], "big")
                return data[pos + 9 : pos + 9 + length].decode("ascii")
            pos += 4 + size
    except (IndexError, UnicodeDecodeError):
        pass
    return None


class ScriptServer(Protocol):
    def __init__(
        self, server: ServerSpec, actions: Sequence[Action], log: ConnectionLog, clock: IReactorTime
    ) -> None:
        self.server = server
        self.actions = actions
        self.log = log
        self.clock = clock
        self.record: ConnectionRecord | None = None
        self.buffer = b""  # lines not yet consumed by read_line
        self.pending = b""  # partial line, for the log
        self.binary = False
        self.hello = b""  # the start of binary input: a ClientHello, for its SNI
        self.waiter: tuple[Callable[[], bool], defer.Deferred[None]] | None = None
        self.play: defer.Deferred[None] | None = None
        self.expiry: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.record = self.log.begin(
            self.server.name, self.transport.getHost(), self.transport.getPeer()
        )
        self.expiry = self.clock.callLater(MAX_CONNECTION_SECONDS, self.transport.abortConnection)
        self.play = defer.ensureDeferred(self._play())
        self.play.addErrback(lambda f: f.trap(defer.CancelledError))

    async def _play(self) -> None:
        for action in self.actions:
            await action.run(self)
        # The script ran out: behave like `hang` until the client leaves.
        await self.wait(lambda: False)

    def dataReceived(self, data: bytes) -> None:
        assert self.record is not None
        if self.binary:
            if len(self.hello) < 16384:
                self.hello += data
                self.record.sni = client_hello_sni(self.hello)
            self.record.binary_bytes += len(data)
        else:
            # Bounded: a client that floods a script that never reads costs no memory.
            self.buffer = (self.buffer + data)[-MAX_BUFFER:]
            *lines, pending = (self.pending + data).split(b"\n")
            self.pending = pending[:MAX_BUFFER]
            for line in lines:
                self.record.command(line)
        self._check()

    def connectionLost(self, reason: Failure) -> None:
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        if self.record is not None:
            if self.pending and not self.binary:
                self.record.command(self.pending)
            self.record.close()
        if self.play is not None:
            self.play.cancel()

    # -- helpers for actions ------------------------------------------------------------

    def sleep(self, seconds: float) -> defer.Deferred[None]:
        return task.deferLater(self.clock, seconds, lambda: None)

    def wait(self, ready: Callable[[], bool]) -> defer.Deferred[None]:
        waiting: defer.Deferred[None] = defer.Deferred()
        self.waiter = (ready, waiting)
        self._check()
        return waiting

    def _check(self) -> None:
        if self.waiter is not None and self.waiter[0]():
            _, waiting = self.waiter
            self.waiter = None
            waiting.callback(None)


class ScriptFactory(Factory):
    def __init__(self, server: ServerSpec, log: ConnectionLog, clock: IReactorTime) -> None:
        self.server = server
        self.actions = [ACTIONS[step.op](step) for step in server.script]
        self.log = log
        self.clock = clock

    def buildProtocol(self, addr: object) -> ScriptServer:
        protocol = ScriptServer(self.server, self.actions, self.log, self.clock)
        protocol.factory = self
        return protocol
