"""Raw sockets: one port shared by every server address, and the dead addresses.

The scanner has one SMTP_PORT, so every server IP listens on the same port. Binding them
all with plain sockets first makes the choice atomic (retry on a clash, with no reactor
involved); Twisted then adopts the listening ones.

Two kinds of address are deliberately dead, and both are held by a socket so no other
process can take them:
- refused: bound but never listening, so the kernel answers a SYN with RST.
- blackhole: listening with a full accept queue, so Linux drops new SYNs
  (tcp_conn_request: "if (sk_acceptq_is_full(sk)) goto drop") and connect() times out.
  `listen(0)` admits one unaccepted connection; the testnet makes it itself and never
  accepts it. `fill` checks that a further connect really hangs.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

BACKLOG = socket.SOMAXCONN
# Dispatch mode's one SMTP socket: every IPv4 address, but bound to the loopback device.
WILDCARD = "0.0.0.0"
LOOPBACK_DEVICE = b"lo"
# How long a probe connect must stay unanswered for a blackhole to count as working.
BLACKHOLE_CHECK_SECONDS = 0.3


def family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def bind(ip: str, port: int, *, reuse: bool = True, udp: bool = False) -> socket.socket:
    sock = socket.socket(family(ip), socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        if reuse:
            # Lets a fixed port be rebound while old connections sit in TIME_WAIT; Linux
            # still refuses a second listener on the same address and port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ip == WILDCARD:
            bind_to_loopback(sock)
        sock.bind((ip, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_to_loopback(sock: socket.socket) -> None:
    """SO_BINDTODEVICE lo: only loopback traffic reaches the socket (it needs CAP_NET_RAW;
    without it the wildcard would listen on every interface, so fail instead)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, LOOPBACK_DEVICE)
    except OSError as e:
        raise OSError(
            e.errno,
            f"dispatch mode needs SO_BINDTODEVICE (root or CAP_NET_RAW): {e.strerror}",
        ) from e


def bind_shared_port(
    addresses: Sequence[tuple[str, bool, bool]], port: int | None, attempts: int = 50
) -> tuple[int, list[socket.socket]]:
    """Bind every (ip, reuse, udp) on one port: `port`, or a free one the kernel picks for
    the first address and the others accept. Returns the port and the sockets, in order."""
    if not addresses:
        raise ValueError("nothing to bind")
    for _ in range(attempts if port is None else 1):
        bound: list[socket.socket] = []
        try:
            chosen = port or 0
            for ip, reuse, udp in addresses:
                sock = bind(ip, chosen, reuse=reuse, udp=udp)
                bound.append(sock)
                chosen = sock.getsockname()[1]
            return chosen, bound
        except OSError as e:
            for sock in bound:
                sock.close()
            if e.errno != errno.EADDRINUSE or port is not None:
                raise OSError(e.errno, f"cannot bind {ip} port {chosen}: {e.strerror}") from e
    raise OSError(errno.EADDRINUSE, f"no port free on all {len(addresses)} addresses")


@dataclass
class Blackhole:
    """A listening socket whose accept queue the testnet keeps full."""

    sock: socket.socket
    fillers: list[socket.socket] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port


def fill(blackholes: Sequence[Blackhole]) -> None:
    """Fill each accept queue, then check a further connect hangs; raise if one does not."""
    for hole in blackholes:
        hole.sock.listen(0)
        filler = _connect(hole.address)
        if not _wait_writable(filler, 2.0):
            raise RuntimeError(f"blackhole {hole.address}: the filler connection never completed")
        hole.fillers.append(filler)
    probes = [(hole, _connect(hole.address)) for hole in blackholes]
    deadline = time.monotonic() + BLACKHOLE_CHECK_SECONDS
    try:
        for hole, probe in probes:
            if _wait_writable(probe, max(0.0, deadline - time.monotonic())):
                raise RuntimeError(
                    f"blackhole {hole.address}: a connect completed; this kernel does not drop "
                    "SYNs to a full accept queue, so connection_timeout cannot be simulated"
                )
    finally:
        for _, probe in probes:
            probe.close()


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.socket(family(address[0]), socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(address)
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(err, f"connect to {address}: {errno.errorcode.get(err, err)}")
    return sock


def _wait_writable(sock: socket.socket, seconds: float) -> bool:
    _, writable, _ = select.select([], [sock], [], seconds)
    return bool(writable) and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
