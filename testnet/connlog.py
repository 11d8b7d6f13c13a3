"""The servers' own record of every connection, one JSON line each, written at its close.

Politeness is asserted from this file, not from the scanner's word: how many connections
each IP saw and when, the EHLO name, QUIT, and that MAIL FROM never came.

A line: {"server", "ip", "port", "client", "start", "end", "commands", "tls",
"tls_version", "cipher", "sni", "offered", "binary_bytes"}. `commands` holds each line received
(CR/LF stripped, decoded as latin-1, at most `MAX_COMMAND` characters, at most
`MAX_COMMANDS` of them), before and after TLS alike. `offered` (esmtp servers, after
the 220 to STARTTLS): the TLS versions the client's ClientHello offered, oldest first
(`clienthello.offered`), [] for a first record that was no readable ClientHello, null
when no TLS record came.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

from twisted.internet.interfaces import IAddress

MAX_COMMANDS = 200
MAX_COMMAND = 512


class ConnectionLog:
    """An append-only JSON-lines file, flushed per record so a test can read it live."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def begin(self, server: str, host: IAddress, peer: IAddress) -> ConnectionRecord:
        return ConnectionRecord(
            log=self,
            server=server,
            ip=host.host,  # type: ignore[attr-defined]
            port=host.port,  # type: ignore[attr-defined]
            client=_address(peer),
        )

    def write(self, entry: dict[str, object]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class ConnectionRecord:
    log: ConnectionLog
    server: str
    ip: str
    port: int
    client: str
    start: float = field(default_factory=time.time)
    end: float | None = None
    commands: list[str] = field(default_factory=list)
    tls: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    sni: str | None = None
    offered: list[str] | None = None  # TLS versions the ClientHello offered
    binary_bytes: int = 0  # bytes a script took without reading them as lines (TLS records)

    def command(self, line: bytes) -> None:
        if len(self.commands) < MAX_COMMANDS:
            text = line.rstrip(b"\r\n").decode("latin-1")
            self.commands.append(text[:MAX_COMMAND])

    def close(self) -> None:
        """Write the record once, at the connection's end."""
        if self.end is not None:
            return
        self.end = time.time()
        self.log.write({f.name: getattr(self, f.name) for f in fields(self) if f.name != "log"})


def _address(address: IAddress) -> str:
    host = address.host  # type: ignore[attr-defined]
    port = address.port  # type: ignore[attr-defined]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
