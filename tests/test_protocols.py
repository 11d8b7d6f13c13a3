"""The test network's protocol matrices (issue 11): declared by hand in the spec, checked
here with clients of our own against real servers on loopback — a pinned pyOpenSSL client
like the scanner's (the same bundled OpenSSL) and Debian's `openssl s_client` — plus the
ClientHello parser behind the connection log's `offered` and the servers' `close_unless`.
"""

from __future__ import annotations

import contextlib
import random
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

import testnet
from schema.vocab import ProtocolStatus, TlsVersion
from testnet import clienthello
from testnet.spec import Spec, SpecError, from_dict, load
from testnet.state import State

SPEC = Path(testnet.DEFAULT_SPEC)
OPENSSL = "/usr/bin/openssl"
EHLO = "scanner.example.net"
# The scanner's client (crawler/smtp/tls.py), pinned: min = max = the version.
CIPHERS = b"ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0"
PINS = {
    TlsVersion.SSLV3: SSL.SSL3_VERSION,
    TlsVersion.TLSV1: SSL.TLS1_VERSION,
    TlsVersion.TLSV1_1: SSL.TLS1_1_VERSION,
    TlsVersion.TLSV1_2: SSL.TLS1_2_VERSION,
    TlsVersion.TLSV1_3: SSL.TLS1_3_VERSION,
}
TESTABLE = [v for v in TlsVersion if v is not TlsVersion.SSLV3]


@pytest.fixture(scope="module")
def internet() -> Spec:
    return load(SPEC)


@pytest.fixture(scope="module")
def running_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[State]:
    """A testnet of our own: its connection log holds our conversations only."""
    with testnet.running(SPEC, tmp_path_factory.mktemp("testnet")) as state:
        yield state


def pinned_context(version: TlsVersion | None) -> SSL.Context:
    """The scanner's client context; pinned to `version` (None: the full range). Raises
    SSL.Error when this OpenSSL cannot be limited to that version at all."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    pin = 0 if version is None else PINS[version]
    ctx.set_min_proto_version(pin)
    ctx.set_max_proto_version(pin)
    ctx.set_cipher_list(CIPHERS)
    ctx.set_options(SSL.OP_NO_TICKET | getattr(SSL, "OP_LEGACY_SERVER_CONNECT", 0))
    ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def client_hello(version: TlsVersion | None, sni: bytes = b"mx.example.test") -> bytes | None:
    """The first flight of a client, made in memory; None if it cannot make one."""
    try:
        conn = SSL.Connection(pinned_context(version), None)
    except SSL.Error:
        return None
    conn.set_tlsext_host_name(sni)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return conn.bio_read(65536)
    except SSL.Error:
        return None
    return None


# ---------------------------------------------------------------------------------------
# The ClientHello parser


def test_parser_reads_the_versions_real_clients_offer() -> None:
    for version in TESTABLE:
        hello = client_hello(version)
        assert hello is not None and clienthello.record_size(hello) == len(hello)
        # A pinned TLS <= 1.2 client sends no supported_versions: its legacy version says.
        assert clienthello.offered(hello) == (str(version),), version
    full = client_hello(None)
    assert full is not None
    assert clienthello.offered(full) == ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    # The scanner's OpenSSL cannot offer SSLv3: `untestable`, no connection.
    assert client_hello(TlsVersion.SSLV3) is None


def test_parser_is_tolerant_of_truncation_and_garbage() -> None:
    hello = client_hello(TlsVersion.TLSV1_3)
    assert hello is not None and len(hello) > 1000  # key shares: a big hello
    for cut in range(len(hello)):
        assert clienthello.offered(hello[:cut]) is None
    assert clienthello.record_size(hello[:4]) is None  # wait for the header
    assert clienthello.record_size(b"EHLO x\r\n") == 0  # not TLS: stop peeking at once
    assert clienthello.record_size(b"\x16\x03\x01\xff\xff") == 0  # too big to wait for
    assert clienthello.offered(b"\x15\x03\x03\x00\x02\x02\x28") is None  # an alert
    # A handshake record that is not a ClientHello (a ServerHello's type, 2).
    assert clienthello.offered(b"\x16" + hello[1:5] + b"\x02" + hello[6:]) is None
    # Lengths inside the hello that overrun it.
    broken = bytearray(hello)
    broken[6:9] = (len(hello)).to_bytes(3, "big")
    assert clienthello.offered(bytes(broken)) is None
    rng = random.Random(11)
    for _ in range(2000):
        junk = bytearray(hello)
        for _ in range(rng.randint(1, 8)):
            junk[rng.randrange(5, len(junk))] = rng.randrange(256)
        result = clienthello.offered(bytes(junk))
        assert result is None or set(result) <= {str(v) for v in TlsVersion}
        clienthello.offered(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))


# ---------------------------------------------------------------------------------------
# The spec: declarations and their validation


def test_every_tested_server_has_its_declared_matrix(internet: Spec) -> None:
    matrices = internet.expected_protocols()
    tested = {
        t.ip
        for t in internet.expected_targets()
        if t.category in ("strict", "opportunistic", "failure")
    }
    assert set(matrices) == tested
    for ip, matrix in matrices.items():
        assert list(matrix) == [str(v) for v in TlsVersion], ip
        assert set(matrix.values()) <= {str(s) for s in ProtocolStatus}
        assert matrix["SSLv3"] == "untestable", ip  # see the spec's [protocols] comment
    supported = {
        name: [v for v, s in matrices[internet.servers[name].ip].items() if s == "supported"]
        for name in ("tls10", "tls10-12", "tls12", "tls13", "nofs", "close12", "strict")
    }
    assert supported == {
        "tls10": ["TLSv1"],
        "tls10-12": ["TLSv1", "TLSv1.1", "TLSv1.2"],
        "tls12": ["TLSv1.2"],
        "tls13": ["TLSv1.3"],
        "nofs": ["TLSv1.2"],
        "close12": ["TLSv1.2"],
        "strict": ["TLSv1.2", "TLSv1.3"],
    }
    assert set(matrices[internet.servers["tls-silent"].ip].values()) == {"untestable", "error"}
    assert "::1" in matrices  # the IPv6 server, by its address


MATRIX = {"SSLv3": "untestable", "TLSv1": "error", "TLSv1.1": "error"}
MATRIX |= {"TLSv1.2": "error", "TLSv1.3": "error"}


def protocol_spec(**servers: dict[str, Any]) -> dict[str, Any]:
    """A one-domain-per-server spec with a [protocols] table."""
    data: dict[str, Any] = {
        "certs": {"ca": {"ca": True, "trusted": True}, "leaf": {"issuer": "ca"}},
        "protocols": {"default": "plain-tls", "plain-tls": MATRIX},
        "domains": {},
        "servers": {},
    }
    for i, (name, server) in enumerate(servers.items(), 1):
        data["domains"][f"{name}.test"] = {"a": [f"127.9.0.{i}"], "status": "ok"}
        data["servers"][name] = {"ip": f"127.9.0.{i}", **server}
    return data


STRICT = {"tls": {"chain": ["leaf", "ca"]}, "expect": {"category": "strict"}}
REJECT = {"starttls": True, "on_starttls": "reject"}
FAILED = {"category": "failure", "error": "starttls_rejected", "error_stage": "starttls"}


def spec_errors(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        from_dict(data)
    return str(caught.value)


def test_spec_requires_matrices_where_starttls_is_expected() -> None:
    spec = from_dict(protocol_spec(a=STRICT, b={**REJECT, "expect": FAILED, "protocols": MATRIX}))
    assert spec.expected_protocols() == {"127.9.0.1": MATRIX, "127.9.0.2": MATRIX}
    # The default stands for plain TLS only: a STARTTLS refusal must say what it yields.
    message = spec_errors(protocol_spec(b={**REJECT, "expect": FAILED}))
    assert "server b: expected to advertise STARTTLS" in message
    assert "declares no protocols" in message
    # ... and so must a server whose TLS options differ from the defaults.
    tls12 = {**STRICT, "tls": {"chain": ["leaf", "ca"], "min_version": "TLSv1.2"}}
    message = spec_errors(protocol_spec(c=tls12))
    assert "server c:" in message and "not the defaults" in message
    # A script after a 220 to STARTTLS, too.
    script = {"script": ["close"], "expect": FAILED}
    assert "server d: expected to advertise STARTTLS" in spec_errors(protocol_spec(d=script))
    # Without [protocols] or any server matrix, nothing is declared (benchmark worlds).
    bare = protocol_spec(a=STRICT)
    del bare["protocols"]
    with pytest.raises(SpecError, match="declares no protocol matrices"):
        from_dict(bare).expected_protocols()


def test_spec_refuses_matrices_where_no_version_is_tested() -> None:
    plain = {"expect": {"category": "none"}, "protocols": "plain-tls"}
    message = spec_errors(protocol_spec(a=STRICT, p=plain))
    assert "server p: protocols declared, but no target" in message
    dead = {"kind": "refused", "protocols": MATRIX}
    dead["expect"] = {"category": "error", "error": "connection_refused", "error_stage": "connect"}
    assert "server r: protocols declared" in spec_errors(protocol_spec(a=STRICT, r=dead))
    # The default stands only where STARTTLS is expected: not for a 554 greeting with TLS.
    greeting = {**STRICT, "banner_code": 554}
    greeting["expect"] = {"category": "error", "error": "greeting_rejected"}
    greeting["expect"]["error_stage"] = "banner"
    spec = from_dict(protocol_spec(a=STRICT, g=greeting))
    assert spec.servers["g"].protocols is None
    assert list(spec.expected_protocols()) == ["127.9.0.1"]


def test_spec_refuses_bad_matrices() -> None:
    bad_status = {**STRICT, "protocols": {**MATRIX, "TLSv1.2": "yes"}}
    assert "TLSv1.2: 'yes' is not one of supported" in spec_errors(protocol_spec(a=bad_status))
    bad_version = {**STRICT, "protocols": {**MATRIX, "TLSv1.0": "supported"}}
    assert "unknown version 'TLSv1.0'" in spec_errors(protocol_spec(a=bad_version))
    short = {k: v for k, v in MATRIX.items() if k != "TLSv1.3"}
    assert "no status for TLSv1.3" in spec_errors(protocol_spec(a={**STRICT, "protocols": short}))
    named = {**STRICT, "protocols": "nonesuch"}
    assert "no matrix named 'nonesuch'" in spec_errors(protocol_spec(a=named))
    data = protocol_spec(a=STRICT)
    data["protocols"]["default"] = "missing"
    assert "[protocols] default: no matrix named 'missing'" in spec_errors(data)
    data = protocol_spec(a=STRICT)
    data["protocols"]["odd"] = {**MATRIX, "SSLv3": "maybe"}
    assert "[protocols.odd] SSLv3: 'maybe'" in spec_errors(data)
    bad_close = {**STRICT, "tls": {"chain": ["leaf", "ca"], "close_unless": "TLSv9"}}
    assert "close_unless" in spec_errors(protocol_spec(a={**bad_close, "protocols": MATRIX}))


# ---------------------------------------------------------------------------------------
# The declarations against real servers, with our own pinned client


def _reply(sock: socket.socket, buffer: bytearray, deadline: float) -> int:
    while True:
        while b"\n" not in buffer:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed")
            buffer += data
        end = buffer.index(b"\n") + 1
        line = bytes(buffer[:end])
        del buffer[:end]
        if line[3:4] != b"-":
            return int(line[:3])


def pinned_probe(ip: str, port: int, name: str, version: TlsVersion, timeout: float = 1.5):
    """One conversation as `-a depth=protocols` holds it: (status, client address). The
    greeting may take 3 s (the spec's SMTP_BANNER_TIMEOUT), each later stage `timeout`."""
    try:
        context = pinned_context(version)
    except SSL.Error:
        return ProtocolStatus.UNTESTABLE, None
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        deadline = time.monotonic() + 3
        buffer = bytearray()
        try:
            sock.settimeout(timeout)
            sock.connect((ip, port))
            client = sock.getsockname()[:2]
            if _reply(sock, buffer, deadline) != 220:
                return ProtocolStatus.ERROR, client
            sock.sendall(f"EHLO {EHLO}\r\n".encode())
            _reply(sock, buffer, time.monotonic() + timeout)
            sock.sendall(b"STARTTLS\r\n")
            deadline = time.monotonic() + timeout
            if _reply(sock, buffer, deadline) != 220:
                return ProtocolStatus.ERROR, client
        except (OSError, ValueError):
            return ProtocolStatus.ERROR, None
        sock.setblocking(False)
        conn = SSL.Connection(context, sock)
        conn.set_tlsext_host_name(name.encode())
        conn.set_connect_state()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    conn.do_handshake()
                    break
                except SSL.WantReadError:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([sock], [], [], left)[0]:
                        return ProtocolStatus.ERROR, client  # a timeout: error
        except (SSL.Error, OSError):
            return ProtocolStatus.NOT_SUPPORTED, client
        assert conn.get_protocol_version_name() == str(version)
        with contextlib.suppress(SSL.Error, OSError):
            conn.sendall(b"QUIT\r\n")
        return ProtocolStatus.SUPPORTED, client


def _first_name(spec: Spec, ip: str) -> str:
    return min(t.mx_host for t in spec.expected_targets() if t.ip == ip)


def test_declared_matrices_hold_for_a_pinned_client(running_net: State, internet: Spec) -> None:
    """Every (IP, version) of the spec, one conversation each, one IP at a time per IP;
    then the servers' own log shows what each pinned hello offered."""
    matrices = internet.expected_protocols()

    def probe_ip(ip: str) -> tuple[str, dict[str, str], dict[tuple[str, str], str]]:
        name, seen, clients = _first_name(internet, ip), {}, {}
        for version in TlsVersion:
            status, client = pinned_probe(ip, running_net.smtp_port, name, version)
            seen[str(version)] = str(status)
            if client is not None:
                host, port = client
                address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                # Keyed by server too: one client port may be reused towards another IP.
                clients[address, ip] = str(version)
        return ip, seen, clients

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(probe_ip, matrices))
    wrong = {ip: (seen, matrices[ip]) for ip, seen, _ in results if seen != matrices[ip]}
    assert not wrong
    by_client = {client: v for _, _, clients in results for client, v in clients.items()}
    deadline = time.monotonic() + 5
    while True:
        log = {
            (c["client"], c["ip"]): c
            for c in running_net.connections()
            if (c["client"], c["ip"]) in by_client
        }
        if len(log) == len(by_client) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(log) == set(by_client)
    polite_tls = {
        s.ip for s in internet.servers.values() if s.esmtp and s.esmtp.on_starttls != "reject"
    }
    checked = 0
    for client, version in by_client.items():
        entry = log[client]
        if entry["ip"] in polite_tls:
            assert entry["offered"] == [version], entry
            checked += 1
        else:
            assert entry["offered"] is None, entry  # scripts and refusals peek at nothing
    assert checked > 100
    per_version = {(c["ip"], tuple(c["offered"])) for c in log.values() if c["offered"]}
    assert len(per_version) == checked  # each version pinned once per IP


def test_log_records_a_full_range_offer(running_net: State) -> None:
    status = full_range_conversation(running_net, "127.1.0.15", "mx.close12.test")
    assert status == "TLSv1.2"  # close_unless lets a hello offering 1.2 through
    full = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    assert logged(running_net, lambda c: c["server"] == "close12" and c["offered"] == full)


def logged(net: State, match: Any) -> list[dict[str, Any]]:
    """Log entries that `match`, waiting a little: an entry is written at the close."""
    deadline = time.monotonic() + 3
    while True:
        found = [c for c in net.connections() if match(c)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def up_to_tls(net: State, ip: str) -> tuple[socket.socket, bytes]:
    """A connection that has had its 220 to STARTTLS; what came after it, if anything."""
    sock = socket.create_connection((ip, net.smtp_port), timeout=3)
    buffer = bytearray()
    deadline = time.monotonic() + 3
    assert _reply(sock, buffer, deadline) == 220
    sock.sendall(f"EHLO {EHLO}\r\n".encode())
    _reply(sock, buffer, deadline)
    sock.sendall(b"STARTTLS\r\n")
    assert _reply(sock, buffer, deadline) == 220
    return sock, bytes(buffer)


def full_range_conversation(net: State, ip: str, name: str) -> str:
    sock, _ = up_to_tls(net, ip)
    with sock:
        sock.settimeout(None)
        conn = SSL.Connection(pinned_context(None), sock)
        conn.set_tlsext_host_name(name.encode())
        conn.set_connect_state()
        conn.do_handshake()
        version = conn.get_protocol_version_name()
        conn.sendall(b"QUIT\r\n")
        conn.recv(1024)
        return version


def starttls_then_send(net: State, ip: str, data: bytes) -> bytes:
    """Up to STARTTLS's 220, then `data` raw; all the server sends back until it closes."""
    sock, received = up_to_tls(net, ip)
    with sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_close_unless_closes_without_an_alert(running_net: State) -> None:
    for version in (TlsVersion.TLSV1, TlsVersion.TLSV1_1, TlsVersion.TLSV1_3):
        hello = client_hello(version, b"mx.close12.test")
        assert hello is not None
        assert starttls_then_send(running_net, "127.1.0.15", hello) == b"", version  # a FIN
    # tls12 refuses the same hello the usual way: a fatal protocol_version alert (70).
    hello = client_hello(TlsVersion.TLSV1, b"mx.tls12.test")
    assert hello is not None
    answer = starttls_then_send(running_net, "127.1.0.14", hello)
    assert answer[:1] == b"\x15" and answer[-2:] == b"\x02\x46"
    # A first record that is no ClientHello at all: close12 closes, offered = [].
    assert starttls_then_send(running_net, "127.1.0.15", b"EHLO again\r\n") == b""
    status, _ = pinned_probe(
        "127.1.0.15", running_net.smtp_port, "mx.close12.test", TlsVersion.TLSV1_2
    )
    assert status is ProtocolStatus.SUPPORTED
    wanted = {(), ("TLSv1",), ("TLSv1.1",), ("TLSv1.3",)}
    closed = logged(
        running_net,
        lambda c: c["server"] == "close12" and not c["tls"] and tuple(c["offered"]) in wanted,
    )
    assert {tuple(c["offered"]) for c in closed} == wanted


# ---------------------------------------------------------------------------------------
# The declarations of the version-limited servers, by an independent client


def s_client_version(net: State, ip: str, name: str, version: TlsVersion) -> str | None:
    """The version Debian's `openssl s_client -starttls smtp`, pinned, negotiates, or None."""
    flag = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
    ciphers = [] if version is TlsVersion.TLSV1_3 else ["-cipher", "ALL:@SECLEVEL=0"]
    address = f"{ip}:{net.smtp_port}"
    command = [OPENSSL, "s_client", "-starttls", "smtp", "-connect", address, "-servername", name]
    result = subprocess.run(
        [*command, flag[str(version)], *ciphers],
        input="",
        capture_output=True,
        text=True,
        timeout=15,
    )
    out = result.stdout + result.stderr
    cipher = re.search(r"^New, \S+, Cipher is (\S+)$", out, re.M)
    if cipher is None or cipher.group(1) == "(NONE)":
        return None
    if version is TlsVersion.TLSV1_3:
        return "TLSv1.3" if re.search(r"^New, TLSv1.3,", out, re.M) else None
    protocol = re.search(r"^\s*Protocol\s*:\s*(\S+)$", out, re.M)
    return protocol.group(1) if protocol else None


@pytest.mark.parametrize(
    "server", ["tls10", "tls10-12", "tls12", "close12", "tls13", "nofs", "weak-key", "strict"]
)
def test_s_client_confirms_the_declared_versions(
    running_net: State, internet: Spec, server: str
) -> None:
    ip = internet.servers[server].ip
    matrix = internet.expected_protocols()[ip]
    name = _first_name(internet, ip)
    negotiated = {v: s_client_version(running_net, ip, name, v) for v in TESTABLE}
    expected = {v: (str(v) if matrix[str(v)] == "supported" else None) for v in TESTABLE}
    assert negotiated == expected


def test_debian_openssl_cannot_offer_sslv3_either() -> None:
    result = subprocess.run(
        [OPENSSL, "s_client", "-ssl3", "-connect", "127.0.0.1:9"],
        input="",
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert result.returncode != 0
    assert "Unknown option" in result.stderr or "no protocols available" in result.stderr
