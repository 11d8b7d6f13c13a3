"""What a TLS ClientHello offers, read from the first record a client sends.

Pure and bounded: it reads at most one record (RFC 8446 5.1: at most 2^14 bytes of
fragment), never raises on truncated or hostile input, and answers None for anything
that is not a ClientHello it can read to the end of its extensions.
"""

from __future__ import annotations

HEADER = 5  # content type, legacy record version, length
MAX_FRAGMENT = 2**14 + 2048  # RFC 8446 5.2's bound for a protected record; plenty for a hello
HANDSHAKE = 0x16
CLIENT_HELLO = 0x01
SUPPORTED_VERSIONS = 43  # RFC 8446 4.2.1

NAMES = {
    0x0300: "SSLv3",
    0x0301: "TLSv1",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}


def record_size(data: bytes) -> int | None:
    """How many bytes the first record takes (header included), once the header is in;
    None while fewer than 5 bytes are in. 0: not a handshake record, or one too large to
    wait for (the caller stops peeking)."""
    if data[:1] and data[0] != HANDSHAKE:
        return 0
    if len(data) < HEADER:
        return None
    length = int.from_bytes(data[3:5], "big")
    return HEADER + length if 0 < length <= MAX_FRAGMENT else 0


def offered(record: bytes) -> tuple[str, ...] | None:
    """The versions a ClientHello offers, in OpenSSL names, oldest first: its
    supported_versions extension when present, else its legacy version alone. Unknown
    and GREASE values (RFC 8701) are left out. None: not a whole, readable ClientHello."""
    size = record_size(record)
    if not size or len(record) < size:
        return None
    body = _Reader(record[HEADER:size])
    if body.u8() != CLIENT_HELLO:
        return None
    hello = _Reader(body.take(body.u24()))  # truncated: the reader is spent, answers None
    legacy = hello.u16()
    hello.take(32)  # random
    hello.take(hello.u8())  # legacy_session_id
    hello.take(hello.u16())  # cipher_suites
    hello.take(hello.u8())  # legacy_compression_methods
    if hello.broken:
        return None
    if hello.done:
        versions = [legacy]  # no extensions at all (RFC 5246 7.4.1.2 allows it)
    else:
        extensions = _Reader(hello.take(hello.u16()))
        versions = [legacy]
        while not extensions.done and not extensions.broken:
            kind, data = extensions.u16(), _Reader(extensions.take(extensions.u16()))
            if kind == SUPPORTED_VERSIONS and not extensions.broken:
                listed = _Reader(data.take(data.u8()))
                versions = []
                while not listed.done and not listed.broken:
                    versions.append(listed.u16())
        if extensions.broken or hello.broken:
            return None
    return tuple(sorted({NAMES[v] for v in versions if v in NAMES}, key=_order))


def _order(name: str) -> int:
    return list(NAMES.values()).index(name)


class _Reader:
    """A cursor over bytes; reading past the end marks it broken and yields zeros."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at, self.broken = data, 0, False

    @property
    def done(self) -> bool:
        return self.at >= len(self.data)

    def take(self, n: int) -> bytes:
        if self.broken or self.at + n > len(self.data):
            self.broken = True
            return b""
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def _int(self, n: int) -> int:
        chunk = self.take(n)
        return int.from_bytes(chunk, "big") if chunk else 0

    def u8(self) -> int:
        return self._int(1)

    def u16(self) -> int:
        return self._int(2)

    def u24(self) -> int:
        return self._int(3)
