"""Incremental SMTP reply reader: bytes in, `Reply` objects out. Pure, no I/O.

A reply is one or more lines ``CODE-text`` ending with ``CODE text`` (or a bare
``CODE``), RFC 5321 §4.2. Lines end in CRLF; a bare LF is accepted because real
servers send it. Limits keep memory bounded whatever the peer sends: a line over
`MAX_LINE_LENGTH` or a reply over `MAX_REPLY_LENGTH` is a `ReplyError`, like a
malformed line. Twisted's `SMTPClient` has no reply cap; aiosmtplib's
`MAX_RESPONSE_LENGTH` is the model here.
"""

from __future__ import annotations

from collections.abc import Iterator

from crawler.smtp.facts import Reply

MAX_LINE_LENGTH = 4096  # bytes per line, without its line end
MAX_REPLY_LENGTH = 65536  # bytes per reply, all its lines with their line ends
DETAIL_LENGTH = 512  # characters of an offending line kept in an error


class ReplyError(ValueError):
    """The peer sent something that is not an SMTP reply (a protocol error).

    `raw` is the offending text, decoded and shortened, for `error_detail`.
    """

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(f"{message}: {raw!r}" if raw else message)
        self.raw = raw


def decode_line(data: bytes) -> str:
    """Decode reply text for storage: UTF-8 (RFC 6531 servers), undecodable bytes
    replaced, NUL replaced too since PostgreSQL text columns refuse it."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _excerpt(data: bytes) -> str:
    return decode_line(bytes(data[:DETAIL_LENGTH]))


class ReplyReader:
    """Collects received bytes and yields complete replies, one at a time.

    Parsing is lazy (`next_reply`), so a caller can stop after a given reply
    and `take_buffer()` the bytes that follow it, unread: after ``220`` to
    STARTTLS those bytes were sent in plaintext before the handshake and must
    never be read as a reply (RFC 3207 §5; Twisted's `esmtpState_starttls`
    keeps them in its line buffer).
    """

    def __init__(self, max_line: int = MAX_LINE_LENGTH, max_reply: int = MAX_REPLY_LENGTH) -> None:
        self.max_line = max_line
        self.max_reply = max_reply
        # Raw bytes from the start of the reply being read; the lines already
        # parsed from it end at `_pos`.
        self._buffer = bytearray()
        self._pos = 0
        self._code: int | None = None
        self._lines: list[str] = []
        self._error: ReplyError | None = None

    def feed(self, data: bytes) -> None:
        """Add received bytes; call `next_reply` (or iterate `replies`) after."""
        if self._error is None:
            self._buffer += data

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a complete reply."""
        return len(self._buffer)

    def take_buffer(self) -> bytes:
        """Remove and return every byte not yet returned as a reply."""
        data = bytes(self._buffer)
        self._reset()
        self._buffer.clear()
        return data

    def replies(self) -> Iterator[Reply]:
        """Yield the complete replies buffered so far; raises `ReplyError`."""
        while (reply := self.next_reply()) is not None:
            yield reply

    def next_reply(self) -> Reply | None:
        """Return the next complete reply, or None until more bytes arrive.

        Raises `ReplyError` on a malformed or oversized reply; the reader then
        stays broken (each later call raises the same error)."""
        if self._error is not None:
            raise self._error
        try:
            return self._parse()
        except ReplyError as e:
            self._error = e
            self._buffer.clear()
            self._lines = []
            raise

    def _parse(self) -> Reply | None:
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end < 0:
                self._check_unterminated()
                return None
            line = bytes(self._buffer[self._pos : end]).removesuffix(b"\r")
            self._pos = end + 1
            if len(line) > self.max_line:
                raise ReplyError(f"reply line over {self.max_line} bytes", _excerpt(line))
            if self._pos > self.max_reply:
                raise ReplyError(f"reply over {self.max_reply} bytes", _excerpt(line))
            if self._add_line(line):
                return self._finish()

    def _check_unterminated(self) -> None:
        """A line that has not ended yet already counts against the limits, so
        a peer that never sends a line end cannot grow the buffer."""
        partial = self._buffer[self._pos :]
        if len(partial.removesuffix(b"\r")) > self.max_line:
            raise ReplyError(f"reply line over {self.max_line} bytes", _excerpt(partial))
        if len(self._buffer) > self.max_reply:
            raise ReplyError(f"reply over {self.max_reply} bytes", _excerpt(partial))

    def _add_line(self, line: bytes) -> bool:
        """Record one line; True when it is the last line of its reply."""
        code, last, text = parse_line(line)
        if self._code is None:
            self._code = code
        elif code != self._code:
            # RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
            raise ReplyError(f"reply code changed from {self._code} within a reply", _excerpt(line))
        self._lines.append(text)
        return last

    def _finish(self) -> Reply:
        reply = Reply(code=self._code or 0, lines=tuple(self._lines))
        del self._buffer[: self._pos]
        self._reset()
        return reply

    def _reset(self) -> None:
        self._pos = 0
        self._code = None
        self._lines = []


def parse_line(line: bytes) -> tuple[int, bool, str]:
    """Split one reply line (without its line end) into (code, is_last, text).

    RFC 5321 §4.2: ``Reply-code [ SP textstring ] CRLF`` ends a reply,
    ``Reply-code "-" [ textstring ] CRLF`` continues it; the first digit of a
    reply code is 2 to 5. Anything else is not an SMTP reply.
    """
    code, sep = line[:3], line[3:4]
    well_formed = len(code) == 3 and code.isdigit() and code[:1] in b"2345"
    if not well_formed or sep not in (b"", b" ", b"-"):
        raise ReplyError("malformed reply line", _excerpt(line))
    return int(code), sep != b"-", decode_line(line[4:])


def ehlo_keywords(reply: Reply) -> tuple[str, ...]:
    """The EHLO keywords, upper-cased: the first word of each line after the
    first (RFC 5321 §4.1.1.1: the first line is the server's domain and greeting)."""
    words = (line.split(maxsplit=1) for line in reply.lines[1:])
    return tuple(w[0].upper() for w in words if w)
