"""A bare STARTTLS census client: the floor the benchmark measures the real crawl against.

Why: "the crawl costs N ms of CPU per probe" means little without knowing what the same
work costs with nothing around it. This client does what `scrapy crawl tld_mx` does per
domain, and nothing more: one asyncio loop, the standard library's `ssl`, dnspython
messages over one UDP socket; no Scrapy, no storage, no retries.

- DNS: an MX query per domain (EDNS0, payload 1232, as the crawl; one try, 5 s), CNAMEs
  followed as dnspython's resolver does; NXDOMAIN, SERVFAIL or a timeout ends that lookup.
  `MX 0 .` is a null MX (no mail); no MX records is an implicit MX (A and AAAA of the domain
  itself); otherwise A and AAAA of each MX host, each host looked up once (a shared future)
  however many domains name it (a failed lookup is forgotten and asked again, as the crawler
  does). IP-literal MX names are neither resolved nor probed.
- SMTP: each IP probed once, with the first MX name that reached it as SNI (so never two
  connections to one IP at a time): connect (3 s), greeting, EHLO (HELO after a 5xx),
  STARTTLS when advertised, TLS with the crawler's legacy client settings (no
  verification during the handshake, TLS 1.0-1.3, `@SECLEVEL=0`), the peer certificate
  read as DER (Python 3.11 gives only the leaf), EHLO again, QUIT. Every stage has a 5 s
  deadline; a failure anywhere just ends the probe. Never MAIL FROM.
- At most `--concurrency` (500) domain lookups and probes in flight together, and at
  most 100 DNS queries outstanding (see DNS_IN_FLIGHT); the list is read as it goes.
- Not done: the crawler's SNI re-probes (an IP probed again when a later MX name does not
  match its certificate), so on a world with such IPs this client probes fewer times.
- IPv6 addresses other than ::1 are skipped (the crawler's `SMTP_IPV6=auto` on a machine
  without global IPv6), and so is any non-loopback address: this is a benchmark for the
  loopback test network, never a scanner.

    python -m benchmarks.bare --domains FILE --dns 127.x.y.z:PORT --smtp-port PORT \
        [--concurrency 500] [--json OUT]

Prints (and writes as JSON) the domains, DNS queries sent, probes (SMTP conversations
started), probes reaching TLS, wall seconds, this process's CPU (user + sys), CPU ms
per probe and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import random
import re
import resource
import socket
import ssl
import sys
import time
import warnings
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset

CONCURRENCY = 500
CONNECT_TIMEOUT = 3.0  # seconds
STAGE_TIMEOUT = 5.0  # seconds: every other SMTP/TLS stage, and each DNS query
EHLO_NAME = "scanner.mxcensus.test"
LEGACY_CIPHERS = "ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0"
OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)  # 3.12+ names it
MAX_LINE = 4096  # bytes of one reply line (docs/design.md: longer is a protocol error)
MAX_REPLY = 65536  # bytes of a whole reply
# Queries outstanding at once: the crawl feeds domains lazily (about a dozen in DNS at a
# time); 500 domains at once would overflow the single-threaded test DNS server's socket
# buffer (208 KiB, some 200 queries), and with one try a dropped query loses a domain.
DNS_IN_FLIGHT = 100
DNS_RECEIVE_BUFFER = 4 << 20  # bytes asked for the UDP socket's receive buffer
OPEN_FILES = 4096  # soft RLIMIT_NOFILE wanted: 500 connections and their closing peers

_HOSTNAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?![0-9]+\Z)(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


@dataclass
class Stats:
    domains: int = 0  # valid, distinct names read from the list
    skipped_lines: int = 0  # blank, comment, invalid or duplicate lines
    dns_queries: int = 0
    dns_timeouts: int = 0  # queries unanswered after the timeout (one try)
    dns_errors: int = 0  # NXDOMAIN, SERVFAIL and other error rcodes
    probes: int = 0  # SMTP conversations started (connect attempted)
    probes_tls: int = 0  # probes whose TLS handshake completed
    certificates: int = 0  # leaf certificates read as DER
    skipped_addresses: int = 0  # IPv6 other than ::1, or not loopback
    unexpected_errors: int = 0  # exceptions no probe or lookup should raise
    examples: list[str] = field(default_factory=list)  # a few of those, for the report


class LookupFailed(Exception):
    """NXDOMAIN, SERVFAIL (or any other error rcode), timeout, or an unusable reply."""


class SmtpError(Exception):
    """The peer closed the connection, or did not speak SMTP."""


# ---------------------------------------------------------------------------------------
# DNS: one UDP socket, replies matched to queries by id and question


class DnsClient(asyncio.DatagramProtocol):
    """Sends dnspython query messages over one connected UDP socket."""

    def __init__(self, stats: Stats, timeout: float = STAGE_TIMEOUT) -> None:
        self.stats = stats
        self.timeout = timeout
        self.pending: dict[int, tuple[dns.message.Message, asyncio.Future[Any]]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.in_flight = asyncio.Semaphore(DNS_IN_FLIGHT)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry = self.pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 12 else None
        if entry is None:
            return  # late (timed out) or stray
        query, future = entry
        try:
            response = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return
        if not future.done() and query.is_response(response):
            future.set_result(response)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable: the query times out, as with any resolver

    def _free_id(self) -> int:
        while (qid := random.getrandbits(16)) in self.pending:
            pass
        return qid

    async def query(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Any:
        """The response message, or None after the timeout (one try, timed from sending)."""
        async with self.in_flight:
            return await self._query(qname, rdtype)

    async def _query(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Any:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        qid = self._free_id()
        # EDNS0 with a 1232-byte payload, as the crawl asks: the same queries on the wire.
        query = dns.message.make_query(qname, rdtype, id=qid, use_edns=0, payload=1232)
        future: asyncio.Future[Any] = loop.create_future()
        self.pending[qid] = (query, future)
        timer = loop.call_later(self.timeout, _expire, future)
        self.transport.sendto(query.to_wire())
        self.stats.dns_queries += 1
        try:
            return await future
        finally:
            timer.cancel()
            del self.pending[qid]

    async def lookup(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.rrset.RRset | None:
        """The answer RRset after following CNAMEs (None: no data); raises LookupFailed."""
        qname = dns.name.from_text(name)
        response = await self.query(qname, rdtype)
        if response is None:
            self.stats.dns_timeouts += 1
            raise LookupFailed(name)
        if response.rcode() != dns.rcode.NOERROR:
            self.stats.dns_errors += 1
            raise LookupFailed(name)
        try:
            return dns.resolver.Answer(qname, rdtype, dns.rdataclass.IN, response).rrset
        except dns.exception.DNSException as e:  # e.g. a CNAME chain too long
            raise LookupFailed(name) from e


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


async def open_dns(ip: str, port: int, stats: Stats) -> DnsClient:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    # Answers pile up while the loop does TLS handshakes: room for them (capped by rmem_max).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DNS_RECEIVE_BUFFER)
    sock.setblocking(False)
    sock.connect((ip, port))
    _, client = await loop.create_datagram_endpoint(lambda: DnsClient(stats), sock=sock)
    return client


# ---------------------------------------------------------------------------------------
# SMTP: a minimal protocol with bounded line reading, and the conversation


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[bytes, ...]  # texts after "NNN-" / "NNN "

    def keywords(self) -> set[str]:
        """EHLO keywords: the first word of every line but the greeting one."""
        return {
            line.split(maxsplit=1)[0].decode("ascii", "replace").upper()
            for line in self.lines[1:]
            if line.strip()
        }


class SmtpConnection(asyncio.Protocol):
    """Bytes in a buffer, read a line at a time; the same protocol object carries on
    after `loop.start_tls` swaps the transport under it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.waiter: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\n", 0, MAX_LINE + 1)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                raise SmtpError("reply line too long")
            if self.eof:
                raise SmtpError("connection closed")
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    async def reply(self) -> Reply:
        """One reply: lines `NNN-text` continue it, `NNN text` (or `NNN`) ends it."""
        lines: list[bytes] = []
        size = 0
        while True:
            line = await self.line()
            size += len(line)
            if size > MAX_REPLY:
                raise SmtpError("reply too long")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in b" -\r\n":
                raise SmtpError("not an SMTP reply")
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return Reply(int(line[:3]), tuple(lines))

    async def command(self, text: bytes) -> Reply:
        """Send a command and read its reply, within one stage deadline."""
        assert self.transport is not None
        async with asyncio.timeout(STAGE_TIMEOUT):
            self.transport.write(text + b"\r\n")
            return await self.reply()

    async def start_tls(self, context: ssl.SSLContext, sni: str) -> ssl.SSLObject:
        # Plaintext sent after the 220 came before the handshake: discard it (RFC 3207 §5).
        self.buffer.clear()
        assert self.transport is not None
        try:
            async with asyncio.timeout(STAGE_TIMEOUT):
                transport = await self.loop.start_tls(
                    self.transport,
                    self,
                    context,
                    server_hostname=sni,
                    ssl_handshake_timeout=STAGE_TIMEOUT,
                    ssl_shutdown_timeout=STAGE_TIMEOUT,
                )
        except BaseException:
            # The failed TLS layer closed the socket without telling this protocol.
            self.transport.abort()
            self.connection_lost(None)
            raise
        if transport is None:
            raise SmtpError("connection closed during the handshake")
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        return ssl_object

    async def close(self) -> None:
        """Close politely (TLS close_notify included); abort what does not close in time."""
        if self.transport is None:
            return
        self.transport.close()
        try:
            async with asyncio.timeout(STAGE_TIMEOUT):
                await self.closed
        except TimeoutError:
            self.transport.abort()


def legacy_context() -> ssl.SSLContext:
    """The crawler's legacy opportunistic client, in stdlib ssl: TLS 1.0-1.3, security
    level 0, no anonymous/NULL/PSK suites, nothing verified during the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 is deprecated: we know
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers(LEGACY_CIPHERS)
    context.options |= ssl.OP_NO_TICKET | OP_LEGACY_SERVER_CONNECT
    return context


async def connect(ip: str, port: int) -> SmtpConnection:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_TIMEOUT):
        _, connection = await loop.create_connection(SmtpConnection, ip, port)
    return connection


async def quit_or_close(connection: SmtpConnection, last: Reply) -> None:
    """QUIT and read its reply, unless the server said 421 (it closes the channel)."""
    if last.code != 421:
        await connection.command(b"QUIT")


async def converse(
    connection: SmtpConnection, sni: str, context: ssl.SSLContext, stats: Stats
) -> None:
    """Greeting, EHLO (HELO after 5xx), STARTTLS, TLS, EHLO, QUIT; raises on failure."""
    ehlo = b"EHLO " + EHLO_NAME.encode("ascii")
    async with asyncio.timeout(STAGE_TIMEOUT):
        reply = await connection.reply()
    if not expected(reply, 220):
        return await quit_or_close(connection, reply)
    reply = await connection.command(ehlo)
    if reply.code // 100 == 5:
        reply = await connection.command(b"HELO " + EHLO_NAME.encode("ascii"))
        expected(reply, 250)
        return await quit_or_close(connection, reply)  # HELO carries no STARTTLS
    if not expected(reply, 250) or "STARTTLS" not in reply.keywords():
        return await quit_or_close(connection, reply)
    reply = await connection.command(b"STARTTLS")
    if not expected(reply, 220):
        return await quit_or_close(connection, reply)
    session = await connection.start_tls(context, sni)
    stats.probes_tls += 1
    read_tls_facts(session, stats)
    reply = await connection.command(ehlo)
    await quit_or_close(connection, reply)


def expected(reply: Reply, code: int) -> bool:
    """Whether the reply is `code`; False for a refusal (4xx/5xx, after which the
    crawler says QUIT); raises SmtpError for anything else (it just closes)."""
    if reply.code == code:
        return True
    if reply.code // 100 in (4, 5):
        return False
    raise SmtpError(f"unexpected reply {reply.code}")


def read_tls_facts(session: ssl.SSLObject, stats: Stats) -> tuple[Any, ...]:
    """What the crawler reads of a session: version, cipher, the chain as DER."""
    leaf = session.getpeercert(binary_form=True)
    if leaf:
        stats.certificates += 1
    return session.version(), session.cipher(), leaf


# ---------------------------------------------------------------------------------------
# The census: domains → MX hosts → addresses → one probe per IP


@dataclass(frozen=True)
class HostAddresses:
    ips: tuple[str, ...] = ()
    failed: bool = False  # the lookup failed (not kept: the next domain asks again)


class Census:
    def __init__(self, dns_client: DnsClient, smtp_port: int, concurrency: int, stats: Stats):
        self.dns = dns_client
        self.smtp_port = smtp_port
        self.stats = stats
        self.slots = asyncio.Semaphore(concurrency)
        self.context = legacy_context()
        self.hosts: dict[str, asyncio.Future[HostAddresses]] = {}
        self.probed: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, domains: Iterable[str]) -> None:
        for domain in domains:
            await self.slots.acquire()  # released when the domain's DNS is done
            self.spawn(self.domain(domain))
        while self.tasks:
            await asyncio.wait(set(self.tasks))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.unexpected(error)

    def unexpected(self, error: BaseException) -> None:
        self.stats.unexpected_errors += 1
        if len(self.stats.examples) < 5:
            self.stats.examples.append(f"{type(error).__name__}: {error}")

    async def domain(self, name: str) -> None:
        try:
            targets = await self.mail_targets(name)
        finally:
            self.slots.release()
        for mx_host, ip in targets:
            self.route(ip, mx_host)

    async def mail_targets(self, domain: str) -> list[tuple[str, str]]:
        """(MX name, IP) pairs to probe, MX hosts by preference, A before AAAA."""
        try:
            rrset = await self.dns.lookup(domain, dns.rdatatype.MX)
        except LookupFailed:
            return []
        records = sorted((r.preference, host_name(r.exchange)) for r in rrset or ())
        names = list(dict.fromkeys(name for _, name in records if name))
        if records and not names:
            return []  # null MX (RFC 7505)
        if not names:  # implicit MX (RFC 5321 §5.1): not shared, as in the crawler
            implicit = await self.addresses(domain)
            return [(domain, ip) for ip in implicit.ips]
        names = [name for name in names if not is_ip_literal(name)]
        hosts = await asyncio.gather(*(self.host(name) for name in names))
        return [(name, ip) for name, host in zip(names, hosts, strict=True) for ip in host.ips]

    def host(self, name: str) -> asyncio.Future[HostAddresses]:
        """An MX host's addresses, looked up once however many domains name it."""
        future = self.hosts.get(name)
        if future is None:
            future = self.hosts[name] = asyncio.ensure_future(self.addresses(name))
            future.add_done_callback(lambda done: self._forget_failure(name, done))
        return future

    def _forget_failure(self, name: str, future: asyncio.Future[HostAddresses]) -> None:
        if future.cancelled() or future.exception() is not None or future.result().failed:
            self.hosts.pop(name, None)

    async def addresses(self, name: str) -> HostAddresses:
        results = await asyncio.gather(
            self.dns.lookup(name, dns.rdatatype.A),
            self.dns.lookup(name, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        ips: list[str] = []
        failed = False
        for result in results:
            if isinstance(result, LookupFailed):
                failed = True
            elif isinstance(result, BaseException):
                raise result
            elif result is not None:
                ips.extend(r.address for r in result)
        return HostAddresses(tuple(ips), failed and not ips)

    def route(self, ip: str, mx_host: str) -> None:
        """Probe each IP once, with the first MX name that reached it as SNI."""
        if ip in self.probed:
            return
        self.probed.add(ip)
        if not probeable(ip):
            self.stats.skipped_addresses += 1
            return
        self.spawn(self.probe(ip, mx_host))

    async def probe(self, ip: str, sni: str) -> None:
        async with self.slots:
            self.stats.probes += 1
            connection = None
            try:
                connection = await connect(ip, self.smtp_port)
                await converse(connection, sni, self.context, self.stats)
            except (OSError, TimeoutError, SmtpError):
                pass  # refused, timed out, closed, not SMTP, TLS failed: the probe ends
            finally:
                if connection is not None:
                    await connection.close()


def host_name(exchange: dns.name.Name) -> str:
    return exchange.to_text().rstrip(".").lower()


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def probeable(ip: str) -> bool:
    """Loopback only: IPv4 127/8 and ::1 (other IPv6 is skipped as `SMTP_IPV6=auto`
    skips it on a machine without global IPv6)."""
    return ipaddress.ip_address(ip).is_loopback


# ---------------------------------------------------------------------------------------
# Input, measurement, command line


def read_domains(lines: Iterable[str], stats: Stats) -> Iterator[str]:
    """Plain-text list, one domain a line (`#` comments): normalised as the crawler does
    for plain host names (strip, lower-case, one trailing dot dropped); invalid and
    duplicate lines skipped."""
    seen: set[str] = set()
    for raw in lines:
        name = raw.split("#", 1)[0].strip().lower()
        name = name[:-1] if name.endswith(".") else name
        if not name or len(name) > 253 or not _HOSTNAME.match(name) or name in seen:
            stats.skipped_lines += 1
            continue
        seen.add(name)
        stats.domains += 1
        yield name


def parse_address(text: str) -> tuple[str, int]:
    """`ip:port` or `[ipv6]:port`, loopback only."""
    host, _, port = text.rpartition(":")
    ip = ipaddress.ip_address(host.strip("[]"))
    if not ip.is_loopback:
        raise ValueError(f"{text}: not a loopback address")
    return str(ip), int(port)


def raise_open_files_limit(wanted: int = OPEN_FILES) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def census(args: argparse.Namespace, stats: Stats) -> None:
    ip, port = parse_address(args.dns)
    client = await open_dns(ip, port, stats)
    try:
        with args.domains.open(encoding="utf-8", errors="replace") as lines:
            await Census(client, args.smtp_port, args.concurrency, stats).run(
                read_domains(lines, stats)
            )
    finally:
        if client.transport is not None:
            client.transport.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    started = time.monotonic()
    asyncio.run(census(args, stats))
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        **asdict(stats),
        "concurrency": args.concurrency,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_probe": round(1000 * cpu / stats.probes, 3) if stats.probes else None,
        "peak_rss_mb": peak_rss_mb(usage.ru_maxrss),
    }


def peak_rss_mb(maxrss_kib: int) -> float:
    """This process's own peak (VmHWM): ru_maxrss also counts the parent it was forked
    from, before the exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(maxrss_kib / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--domains", type=Path, required=True, help="plain-text domain list")
    parser.add_argument("--dns", required=True, help="the resolver, IP:PORT (loopback)")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        parse_address(args.dns)
    except ValueError as e:
        parser.error(f"--dns: {e}")
    if args.concurrency < 1 or not 0 < args.smtp_port < 65536:
        parser.error("--concurrency must be >= 1 and --smtp-port a port number")
    raise_open_files_limit()
    results = measure(args)
    for name, value in results.items():
        print(f"{name:18} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
