"""A validating resolver in front of the test network's DNS: Debian's `unbound`.

Why unbound and not validation in process: mxcensus trusts the AD bit of the resolver it
is pointed at (as Postfix does); what it meets on the internet is such a resolver, and a
real one shows what a fake would have to imitate (SERVFAIL for bogus data, the answer with
CD, AD only on validated data, NSEC proofs checked). The test network signs its zone
(testnet/dnssec.py) and writes the trust anchor; unbound validates against it.

Only loopback is ever asked: every zone, the root included, is a stub of the test
network's DNS server (which refuses what is not its zone), so a name like
`dnssec-failed.org` gets SERVFAIL without a packet leaving the machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

UNBOUND = "unbound"
START_TIMEOUT = 20.0  # seconds for unbound to answer its first query
CONFIG = """\
server:
    interface: {ip}
    port: {port}
    # Queries leave from a loopback address: nothing but loopback can ever be reached.
    outgoing-interface: {ip}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: ""
    use-syslog: no
    logfile: "{directory}/unbound.log"
    verbosity: 1
    val-log-level: 2
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor-file: "{anchor}"
    qname-minimisation: no
    harden-referral-path: no
    prefetch: no
    serve-expired: no
    minimal-responses: no
    cache-max-negative-ttl: 1
    infra-host-ttl: 1
    val-bogus-ttl: 1
    so-reuseport: no
    # "test." is one of unbound's default local zones (RFC 6761 names: NXDOMAIN).
    local-zone: "{zone}." nodefault
stub-zone:
    name: "{zone}."
    stub-addr: {upstream}
stub-zone:
    name: "."
    stub-addr: {upstream}
"""


class ResolverError(RuntimeError):
    """unbound is missing, or did not start."""


def binary() -> str | None:
    """unbound's path (Debian puts it in /usr/sbin, not always on a user's PATH)."""
    return shutil.which(UNBOUND) or shutil.which(f"/usr/sbin/{UNBOUND}")


def free_port(ip: str) -> int:
    """A port free on `ip` for both UDP and TCP (asked of the kernel, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((ip, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((ip, port))
                except OSError:
                    continue
                return port
    raise ResolverError(f"no free port on {ip}")


def start(
    ip: str, zone: str, upstream: tuple[str, int], anchor: Path, directory: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start unbound on `ip`, validating `zone` against `anchor`; return it and its port
    once it answers."""
    path = binary()
    if path is None:
        raise ResolverError("unbound is not installed (apt-get install unbound)")
    port = free_port(ip)
    config = directory / "unbound.conf"
    config.write_text(
        CONFIG.format(
            ip=ip,
            port=port,
            directory=directory,
            anchor=anchor,
            zone=zone,
            upstream=f"{upstream[0]}@{upstream[1]}",
        ),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [path, "-d", "-c", str(config)],
        preexec_fn=_die_with_parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "unbound.stderr").open("wb"),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ResolverError(f"unbound exited {process.returncode}: see {directory}")
        try:
            # unbound's own local zone: answered without asking upstream, whose reactor
            # may not run yet.
            query = dns.message.make_query("localhost.", dns.rdatatype.A)
            dns.query.udp(query, ip, timeout=0.5, port=port)
            return process, port
        except Exception:
            time.sleep(0.1)
    process.kill()
    raise ResolverError(f"unbound did not answer on {ip}:{port} in {START_TIMEOUT} s")


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test network's process dies, however it dies."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
