"""The test network itself (docs/design.md, "Test network"), checked with independent clients:
dnspython for its DNS, plain sockets and Python's ssl for its SMTP servers, and
`openssl s_client -starttls smtp` for its certificates.

If these pass, a scan that disagrees with the spec's declarations is the scanner's fault.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

import testnet
from schema.vocab import Category, DomainStatus, ErrorCode, Flag, Reason, SkipReason, Stage
from testnet.control import PROJECT_ROOT, environment
from testnet.spec import Spec, SpecError, from_dict, load
from testnet.state import State

SPEC = Path(testnet.DEFAULT_SPEC)
OPENSSL = "/usr/bin/openssl"
EHLO = "scanner.example.net"


@pytest.fixture(scope="module")
def internet() -> Spec:
    return load(SPEC)


@pytest.fixture(scope="module")
def running_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[State]:
    """A testnet of our own (its log is ours alone), stopped at the end of the module."""
    with testnet.running(SPEC, tmp_path_factory.mktemp("testnet")) as state:
        yield state


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testnet", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=environment(),
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------
# The spec


def test_spec_declares_the_whole_vocabulary(internet: Spec) -> None:
    """Every category, reason, code, stage, flag and status is declared somewhere.
    `unreachable` needs a route that fails, which loopback cannot offer without root."""
    targets = internet.expected_targets()
    assert {t.category for t in targets} - {None} == set(Category)
    assert {r for t in targets for r in t.reasons} == {str(r) for r in Reason}
    assert {t.error for t in targets} - {None} == set(ErrorCode) - {ErrorCode.UNREACHABLE}
    assert {t.error_stage for t in targets} - {None} == set(Stage)
    # sni_probes_exhausted needs SMTP_SNI_PROBES below the spec's setting: see
    # test_crawl_behaviour's SNI-cap test.
    assert {f for t in targets for f in t.flags} == {str(f) for f in Flag} - {
        "sni_probes_exhausted"
    }
    statuses = set(internet.expected_domains().values())
    assert statuses == {str(s) for s in DomainStatus} - {"invalid"}
    assert internet.expected_invalid == 4
    assert internet.expected_duplicates == 3
    (literal,) = [t for t in targets if t.skip_reason]
    assert (literal.mx_host, literal.ip, literal.category) == ("127.8.0.9", None, None)
    assert literal.skip_reason is SkipReason.IP_LITERAL_MX


def test_expectations_can_differ_by_mx_name(internet: Spec) -> None:
    """One IP, several names: the server's expectation, replaced for one name."""
    by_key = {(t.mx_host, t.ip): t for t in internet.expected_targets()}
    assert by_key[("mx.a-shared.test", "127.7.2.1")].category == "strict"
    assert by_key[("mx.b-shared.test", "127.7.2.1")].category == "strict"
    shared_c = by_key[("mx.c-shared.test", "127.7.2.1")]
    assert (shared_c.category, shared_c.reasons) == ("opportunistic", ("hostname_mismatch",))
    assert by_key[("mx2.provider.test", "127.7.1.3")].category == "strict"
    assert by_key[("mx.eu.provider.test", "127.7.1.3")].reasons == ("hostname_mismatch",)
    assert by_key[("implicit.test", "127.1.0.11")].category == "strict"
    split = {by_key[("mx.split.test", ip)].category for ip in ("127.7.3.1", "127.7.3.2")}
    assert split == {"strict", "none"}
    assert internet.expected_hosts()["gone.partial.test"] == "nxdomain"
    assert internet.expected_hosts()["slow.partial.test"] == "timeout"


def test_domains_command_prints_the_raw_list(internet: Spec) -> None:
    result = cli("domains", str(SPEC))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")[:-1]
    assert lines == internet.domain_lines
    assert lines[0] == "strict.test"
    assert {"bad..name", "-x-.test", "two words.test", "strict.test.", "  Shop.TEST  "} <= set(
        lines
    )


def test_spec_refuses_what_would_leave_loopback_or_contradict_itself() -> None:
    base = {
        "domains": {"a.test": {"mx": ["10 mx.a.test"], "status": "ok"}},
        "hosts": {"mx.a.test": {"a": ["192.0.2.1"]}},
        "servers": {"s": {"ip": "192.0.2.1", "expect": {"category": "none"}}},
    }
    with pytest.raises(SpecError, match=r"192\.0\.2\.1 is not a loopback address"):
        from_dict(base)
    wrong = {
        "domains": {"a.test": {"mx": ["10 mx.a.test"], "status": "ok"}},
        "hosts": {"mx.a.test": {"dns": "nxdomain"}},
    }
    with pytest.raises(SpecError, match="status ok but its DNS data says mx_without_address"):
        from_dict(wrong)
    with pytest.raises(SpecError, match="unknown key"):
        from_dict({"servers": {"s": {"ip": "127.9.0.1", "bannner": "typo", "decoy": True}}})
    with pytest.raises(SpecError, match="reasons go with"):
        from_dict(
            {
                "domains": {"a.test": {"a": ["127.9.0.1"], "status": "ok"}},
                "servers": {
                    "s": {
                        "ip": "127.9.0.1",
                        "expect": {"category": "strict", "reasons": ["expired"]},
                    }
                },
            }
        )


# ---------------------------------------------------------------------------------------
# DNS, asked with dnspython


def ask(net: State, name: str, rdtype: str, tcp: bool = False, timeout: float = 2.0):
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, net.dns_ip, port=net.dns_port, timeout=timeout)


def records(response: dns.message.Message, rdtype: str) -> list[str]:
    return sorted(str(r) for rrset in response.answer if rrset.rdtype.name == rdtype for r in rrset)


def test_dns_answers(running_net: State) -> None:
    net = running_net
    strict = ask(net, "strict.test", "MX")
    assert strict.rcode() == dns.rcode.NOERROR and strict.flags & dns.flags.AA
    assert records(strict, "MX") == ["10 mx.strict.test."]
    assert [str(r) for rrset in strict.additional for r in rrset] == ["127.1.0.1"]
    assert records(ask(net, "shop.test", "MX"), "MX") == [
        "10 mx1.provider.test.",
        "20 mx2.provider.test.",
    ]
    assert records(ask(net, "mx1.provider.test", "A"), "A") == ["127.7.1.1", "127.7.1.2"]
    assert records(ask(net, "mx.dual.test", "AAAA"), "AAAA") == ["::1"]
    assert records(ask(net, "mx.dual.test", "A"), "A") == ["127.7.0.6"]
    # CNAMEs are chased for any type, the answer holds both (RFC 1034 4.3.2).
    alias = ask(net, "alias.test", "MX")
    assert records(alias, "CNAME") == ["strict.test."]
    assert records(alias, "MX") == ["10 mx.strict.test."]
    cnamed = ask(net, "mail.cnamed.test", "A")
    assert records(cnamed, "CNAME") == ["smtp.hosting.test."]
    assert records(cnamed, "A") == ["127.1.0.3"]
    assert records(ask(net, "mail.cnamed.test", "CNAME"), "CNAME") == ["smtp.hosting.test."]
    assert records(ask(net, "null-mx.test", "MX"), "MX") == ["0 ."]
    assert records(ask(net, "literal.test", "MX"), "MX") == ["10 127.8.0.9.", "20 mx.strict.test."]
    assert records(ask(net, "txt-only.test", "TXT"), "TXT") == ['"v=spf1 -all"']
    nodata = ask(net, "txt-only.test", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype.name == "SOA"
    nxdomain = ask(net, "nonexistent.test", "MX")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    assert nxdomain.authority[0].rdtype.name == "SOA"
    assert ask(net, "gone.partial.test", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(net, "provider.test", "A").rcode() == dns.rcode.NOERROR  # empty non-terminal
    assert ask(net, "servfail.test", "MX").rcode() == dns.rcode.SERVFAIL
    assert ask(net, "broken.partial.test", "A").rcode() == dns.rcode.SERVFAIL
    assert ask(net, "example.com", "A").rcode() == dns.rcode.REFUSED
    assert records(ask(net, "shop.test", "MX", tcp=True), "MX") == [
        "10 mx1.provider.test.",
        "20 mx2.provider.test.",
    ]


def test_dns_drops_queries_for_timeout_names(running_net: State) -> None:
    """The server stays silent, over UDP and TCP: the resolver's timeout is the outcome."""
    for tcp in (False, True):
        started = time.monotonic()
        with pytest.raises(dns.exception.Timeout):
            ask(running_net, "dns-timeout.test", "MX", tcp=tcp, timeout=0.5)
        assert time.monotonic() - started >= 0.5
    # ...while the server keeps answering everything else.
    assert ask(running_net, "strict.test", "MX").rcode() == dns.rcode.NOERROR


def test_dns_serves_every_declared_mx_and_address(running_net: State, internet: Spec) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [running_net.dns_ip]
    resolver.port = running_net.dns_port
    resolver.lifetime = 2
    for name, domain in internet.domains.items():
        if domain.status is not DomainStatus.OK:
            continue
        entry = internet.canonical(name)
        assert entry is not None
        if entry.mx:
            answer = resolver.resolve(name, "MX")
            got = {(r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer}
            assert got == {(mx.preference, mx.exchange) for mx in entry.mx}, name
    for host, outcome in internet.expected_hosts().items():
        if outcome != "ok":
            continue
        got = set()
        for rdtype in ("A", "AAAA"):
            answer = resolver.resolve(host, rdtype, raise_on_no_answer=False)
            got |= {r.to_text() for r in answer.rrset or ()}
        assert got == set(internet.addresses(host)), host


# ---------------------------------------------------------------------------------------
# SMTP: a plain conversation, openssl s_client, and every declared behaviour on the wire


def test_plain_smtp_conversation(running_net: State) -> None:
    with socket.create_connection(("127.1.0.1", running_net.smtp_port), timeout=3) as sock:
        conn = Wire(sock)
        assert conn.reply("banner", 3) == (220, ["mx.strict.test ESMTP testnet"])
        conn.send(f"EHLO {EHLO}")
        code, lines = conn.reply("ehlo", 2)
        assert code == 250 and lines[0] == f"mx.strict.test greets {EHLO}"
        assert "STARTTLS" in lines[1:]
        conn.send("MAIL FROM:<nobody@example.net>")
        assert conn.reply("mail", 2)[0] == 502  # it never takes mail
        conn.send("QUIT")
        assert conn.reply("quit", 2)[0] == 221


def s_client(net: State, ip: str, name: str, *extra: str) -> str:
    result = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            f"{ip}:{net.smtp_port}",
            "-servername",
            name,
            "-CAfile",
            net.ca_bundle,
            *extra,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=15,
    )
    return result.stdout + result.stderr


def test_openssl_verifies_strict_and_rejects_self_signed(running_net: State) -> None:
    strict = s_client(running_net, "127.1.0.1", "mx.strict.test")
    assert "Verify return code: 0 (ok)" in strict
    assert "CN = mx.strict.test" in strict
    assert "CN = mxcensus testnet intermediate CA" in strict  # leaf + intermediate sent
    self_signed = s_client(running_net, "127.2.0.1", "mx.self-signed.test")
    assert "Verify return code: 18 (self-signed certificate)" in self_signed


@pytest.mark.parametrize(
    ("ip", "name", "code"),
    [
        ("127.2.0.2", "mx.unknown-root.test", 19),  # self-signed certificate in chain
        ("127.2.0.3", "mx.no-intermediate.test", 21),  # unable to verify the first cert
        ("127.2.0.5", "mx.expired.test", 10),
        ("127.2.0.6", "mx.not-yet-valid.test", 9),
        ("127.2.0.8", "mx.bad-signature.test", 7),  # certificate signature failure
        ("127.2.0.4", "mx.mismatch.test", 62),  # hostname mismatch
        ("127.7.1.3", "mx.eu.provider.test", 62),  # a wildcard covers one label
        ("127.7.1.3", "mx2.provider.test", 0),
        ("127.1.0.8", "mx.cn-only.test", 0),  # no SAN: the CN is used
        ("127.1.0.3", "mail.cnamed.test", 0),  # the published name, not the canonical one
    ],
)
def test_openssl_sees_each_certificate_problem(
    running_net: State, ip: str, name: str, code: int
) -> None:
    out = s_client(running_net, ip, name, "-verify_hostname", name)
    assert f"Verify return code: {code} " in out


def test_sni_picks_the_certificate(running_net: State) -> None:
    alpha = s_client(running_net, "127.1.0.9", "mx.alpha-sni.test")
    beta = s_client(running_net, "127.1.0.9", "mx.beta-sni.test")
    assert "CN = mx.alpha-sni.test" in alpha and "CN = mx.beta-sni.test" not in alpha
    assert "CN = mx.beta-sni.test" in beta and "Verify return code: 0 (ok)" in beta


def test_legacy_servers_negotiate_what_they_claim(running_net: State) -> None:
    tls10 = s_client(running_net, "127.1.0.5", "mx.tls10.test", "-cipher", "DEFAULT@SECLEVEL=0")
    assert re.search(r"Protocol\s*:\s*TLSv1\n", tls10)
    nofs = s_client(running_net, "127.1.0.6", "mx.nofs.test")
    assert re.search(r"Cipher\s*:\s*AES128-SHA\n", nofs)
    weak = s_client(running_net, "127.2.0.7", "mx.weak-key.test", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Server public key is 1024 bit" in weak
    no_cipher = s_client(running_net, "127.3.0.8", "mx.no-shared-cipher.test")
    assert "alert handshake failure" in no_cipher


class Fail(Exception):
    def __init__(self, error: str, stage: str) -> None:
        self.error, self.stage = error, stage


class Wire:
    """Just enough SMTP client to see where a server misbehaves: per-stage deadlines,
    the 4 KiB line and 64 KiB reply limits of docs/design.md."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def reply(self, stage: str, seconds: float) -> tuple[int, list[str]]:
        deadline, lines, size = time.monotonic() + seconds, [], 0
        while True:
            while b"\n" not in self.buffer:
                if len(self.buffer) > 4096:
                    raise Fail("protocol_error", stage)
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    raise Fail("timeout", stage) from None
                except ConnectionResetError:
                    data = b""
                if not data:
                    raise Fail("connection_closed", stage)
                self.buffer += data
            line, _, self.buffer = self.buffer.partition(b"\n")
            size += len(line) + 1
            match = re.match(rb"(\d{3})([ -])", line)
            if not match or len(line) > 4096 or size > 65536:
                raise Fail("protocol_error", stage)
            lines.append(line[4:].rstrip(b"\r").decode("latin-1"))
            if match.group(2) == b" ":
                return int(match.group(1)), lines


def wire_outcome(ip: str, port: int, name: str) -> tuple[str, str | None, str | None, list[str]]:
    """(tls | failure | none | error, code, stage, flags), as far as the wire shows."""
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    sock.settimeout(2)
    flags: list[str] = []
    try:
        try:
            sock.connect((ip, port))
        except TimeoutError:
            return "error", "connection_timeout", "connect", flags
        except ConnectionRefusedError:
            return "error", "connection_refused", "connect", flags
        conn = Wire(sock)
        try:
            if conn.reply("banner", 3)[0] != 220:
                return "error", "greeting_rejected", "banner", flags
            conn.send(f"EHLO {EHLO}")
            code, lines = conn.reply("ehlo", 2)
            if 500 <= code < 600:
                flags.append("ehlo_refused")
                conn.send(f"HELO {EHLO}")
                if conn.reply("helo", 2)[0] != 250:
                    return "error", "ehlo_rejected", "helo", flags
                return "none", None, None, flags
            if code != 250:
                return "error", "ehlo_rejected", "ehlo", flags
        except Fail as e:
            return "error", e.error, e.stage, flags
        if "STARTTLS" not in [line.upper() for line in lines[1:]]:
            return "none", None, None, flags
        conn.send("STARTTLS")
        try:
            if conn.reply("starttls", 2)[0] != 220:
                return "failure", "starttls_rejected", "starttls", flags
        except Fail as e:
            return "failure", e.error, e.stage, flags
        if conn.buffer:
            flags.append("plaintext_after_starttls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0")
        try:
            tls = context.wrap_socket(sock, server_hostname=name)
        except TimeoutError:
            return "failure", "timeout", "tls", flags
        except OSError:
            return "failure", "tls_handshake_failed", "tls", flags
        conn = Wire(tls)
        conn.send(f"EHLO {EHLO}")
        try:
            if conn.reply("ehlo", 2)[0] != 250:
                flags.append("post_tls_ehlo_failed")
            conn.send("QUIT")
        except Fail:
            flags.append("post_tls_ehlo_failed")
        return "tls", None, None, flags
    finally:
        sock.close()


def test_every_server_behaves_as_declared_on_the_wire(running_net: State, internet: Spec) -> None:
    """Each target's category (TLS counted as one), code, stage and flags, as a bare
    client sees them. Certificates are judged above, by OpenSSL."""
    targets = [t for t in internet.expected_targets() if t.ip]
    with ThreadPoolExecutor(len(targets)) as pool:
        seen = list(
            pool.map(lambda t: wire_outcome(t.ip, running_net.smtp_port, t.mx_host), targets)
        )
    wrong = []
    for target, (outcome, code, stage, flags) in zip(targets, seen, strict=True):
        tls = target.category in ("strict", "opportunistic")
        want = (
            "tls" if tls else target.category,
            target.error,
            target.error_stage,
            list(target.flags),
        )
        if (outcome, code, stage, sorted(flags)) != want:
            wrong.append(f"{target.mx_host} {target.ip}: want {want}, saw {outcome, code, stage}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------
# The connection log


def logged(net: State, server: str, match: Callable[[dict], bool]) -> list[dict]:
    """The log entries of `server` that `match`, waiting a little: a server writes an
    entry when it sees the connection close."""
    deadline = time.monotonic() + 3
    while True:
        found = [c for c in net.connections() if c["server"] == server and match(c)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_connection_log_records_every_command(running_net: State) -> None:
    ehlo = "log-test.example.net"
    with socket.create_connection(("127.4.0.1", running_net.smtp_port), timeout=3) as sock:
        conn = Wire(sock)
        conn.reply("banner", 3)
        for command in (
            f"EHLO {ehlo}",
            "MAIL FROM:<a@example.net>",
            "RCPT TO:<b@plain.test>",
            "QUIT",
        ):
            conn.send(command)
            conn.reply(command, 2)
        client = "{}:{}".format(*sock.getsockname()[:2])
    (entry,) = logged(running_net, "plain", lambda c: c["client"] == client)
    assert entry["commands"] == [
        f"EHLO {ehlo}",
        "MAIL FROM:<a@example.net>",
        "RCPT TO:<b@plain.test>",
        "QUIT",
    ]
    assert (entry["ip"], entry["port"], entry["tls"]) == ("127.4.0.1", running_net.smtp_port, False)
    assert entry["start"] <= entry["end"]

    s_client(running_net, "127.1.0.12", "mx.ec.test", "-name", "log-tls.example.net")
    (tls,) = logged(running_net, "ec", lambda c: "EHLO log-tls.example.net" in c["commands"])
    assert (tls["tls"], tls["sni"]) == (True, "mx.ec.test")
    assert tls["commands"][1] == "STARTTLS" and tls["tls_version"].startswith("TLSv1")

    # A hostile server reads the SNI out of the ClientHello it never answers.
    assert wire_outcome("127.3.0.5", running_net.smtp_port, "sni.example.test")[1] == (
        "tls_handshake_failed"
    )
    (hostile,) = logged(running_net, "tls-garbage", lambda c: c["sni"] == "sni.example.test")
    assert hostile["binary_bytes"] > 0
    assert hostile["commands"] == [f"EHLO {EHLO}", "STARTTLS"]


# ---------------------------------------------------------------------------------------
# Life cycle


def small_spec(tmp_path: Path, **cert: object) -> Path:
    """A two-server network, generated as data (JSON: the benchmark's route)."""
    data = {
        "certs": {
            "root": {"ca": True, "trusted": True},
            "leaf": {"issuer": "root", "names": ["mx.small.test"], **cert},
        },
        "domains": {
            "small.test": {"mx": ["10 mx.small.test"], "status": "ok"},
            "slow.test": {"mx": ["10 mx.slow.test"], "status": "ok"},
        },
        "hosts": {"mx.small.test": {"a": ["127.9.0.1"]}, "mx.slow.test": {"a": ["127.9.0.2"]}},
        "servers": {
            "small": {
                "ip": "127.9.0.1",
                "tls": {"chain": ["leaf", "root"]},
                "expect": {"category": "strict"},
            },
            "slow": {
                "ip": "127.9.0.2",
                "script": ["hang"],
                "expect": {"category": "error", "error": "timeout", "error_stage": "banner"},
            },
        },
    }
    path = tmp_path / "small.json"
    path.write_text(json.dumps(data))
    return path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_up_detach_and_down(tmp_path: Path) -> None:
    spec = small_spec(tmp_path)
    state_dir = tmp_path / "state"
    started = cli("up", str(spec), "--state", str(state_dir), "--detach")
    assert started.returncode == 0, started.stderr
    state = State.read(state_dir)
    assert json.loads(started.stdout)["pid"] == state.pid and alive(state.pid)
    assert state.dns.startswith("127.53.0.1:") and Path(state.ca_bundle).is_file()
    assert state.scanner_settings()["SMTP_PORT"] == str(state.smtp_port)
    # A connection still open when the network stops is logged at shutdown.
    hanging = socket.create_connection(("127.9.0.2", state.smtp_port), timeout=2)
    time.sleep(0.1)
    stopped = cli("down", "--state", str(state_dir))
    hanging.close()
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(state.pid)
    assert not (state_dir / "state.json").exists()
    assert [c["server"] for c in state.connections()] == ["slow"]


def test_up_fails_loudly(tmp_path: Path) -> None:
    """A weak key without @SECLEVEL=0 cannot be loaded: `up` says so and exits non-zero."""
    spec = small_spec(tmp_path, key="rsa1024")
    started = cli("up", str(spec), "--state", str(tmp_path / "state"), "--detach")
    assert started.returncode != 0
    assert "key too small" in started.stderr


# ---------------------------------------------------------------------------------------
# Benchmark options: a per-reply delay, and many addresses served from one socket

DELAY_MS = 300  # well above a loaded machine's scheduling noise


def delay_spec(tmp_path: Path, **network: object) -> Path:
    """One STARTTLS server and one domain; `network` adds [network] keys."""
    data = {
        "network": network,
        "certs": {
            "root": {"ca": True, "trusted": True},
            "leaf": {"issuer": "root", "names": ["mx.small.test"]},
        },
        "domains": {"small.test": {"mx": ["10 mx.small.test"], "status": "ok"}},
        "hosts": {"mx.small.test": {"a": ["127.9.0.1"]}},
        "servers": {
            "small": {
                "ip": "127.9.0.1",
                "hostname": "mx.small.test",
                "tls": {"chain": ["leaf", "root"]},
                "expect": {"category": "strict"},
            }
        },
    }
    path = tmp_path / "delay.json"
    path.write_text(json.dumps(data))
    return path


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def starttls_conversation(net: State, ip: str) -> list[float]:
    """Seconds each reply took: banner, EHLO, STARTTLS, handshake, EHLO over TLS, QUIT."""
    context = ssl.create_default_context(cafile=net.ca_bundle)
    with socket.create_connection((ip, net.smtp_port), timeout=5) as raw:
        conn = Wire(raw)
        took = [timed(lambda: conn.reply("banner", 5))[0]]
        for command, code in ((f"EHLO {EHLO}", 250), ("STARTTLS", 220)):
            conn.send(command)
            seconds, reply = timed(lambda: conn.reply("command", 5))
            assert reply[0] == code, reply  # type: ignore[index]
            took.append(seconds)
        seconds, tls = timed(lambda: context.wrap_socket(raw, server_hostname="mx.small.test"))
        took.append(seconds)
        secure = Wire(tls)  # type: ignore[arg-type]
        for command, code in ((f"EHLO {EHLO}", 250), ("QUIT", 221)):
            secure.send(command)
            seconds, reply = timed(lambda: secure.reply("command", 5))
            assert reply[0] == code, reply  # type: ignore[index]
            took.append(seconds)
    return took


def test_reply_delay_holds_back_every_answer(tmp_path: Path) -> None:
    """DNS answers and SMTP replies come at least the delay later, in order (STARTTLS's
    220 still precedes the handshake); with no delay they come at once."""
    spec = delay_spec(tmp_path, reply_delay_ms=DELAY_MS)
    with testnet.running(spec, tmp_path / "delayed") as net:
        assert net.reply_delay_ms == DELAY_MS
        seconds, answer = timed(lambda: ask(net, "small.test", "MX"))
        assert seconds >= DELAY_MS / 1000 and records(answer, "MX") == ["10 mx.small.test."]
        seconds, _ = timed(lambda: ask(net, "mx.small.test", "A", tcp=True))
        assert seconds >= DELAY_MS / 1000
        took = starttls_conversation(net, "127.9.0.1")
        # Each reply waits the delay; the handshake waits for none (TLS is not SMTP). The
        # servers' timers run on wall-clock time (Twisted's reactor.seconds), measured here
        # on the monotonic clock: a slewed wall clock ends a timer a few ms early (seen).
        assert min(took[:3] + took[4:]) >= 0.97 * DELAY_MS / 1000, took
    with testnet.running(spec, tmp_path / "overridden", reply_delay_ms=0) as net:
        assert net.reply_delay_ms == 0
        seconds, _ = timed(lambda: ask(net, "small.test", "MX"))
        took = starttls_conversation(net, "127.9.0.1")
        assert max([seconds, *took]) < DELAY_MS / 1000, (seconds, took)


def dispatch_spec(tmp_path: Path) -> Path:
    """Three servers on distinct 127.x addresses, one of them dead, served by one socket."""
    data = {
        "network": {"dispatch": True},
        "certs": {
            "root": {"ca": True, "trusted": True},
            "leaf": {"issuer": "root", "names": ["mx.small.test"]},
        },
        "domains": {
            "small.test": {"mx": ["10 mx.small.test"], "status": "ok"},
            "other.test": {"mx": ["10 mx.other.test"], "status": "ok"},
            "dead.test": {"mx": ["10 mx.dead.test"], "status": "ok"},
        },
        "hosts": {
            "mx.small.test": {"a": ["127.9.0.1"]},
            "mx.other.test": {"a": ["127.10.20.30"]},
            "mx.dead.test": {"a": ["127.9.0.3"]},
        },
        "servers": {
            "small": {
                "ip": "127.9.0.1",
                "hostname": "mx.small.test",
                "tls": {"chain": ["leaf", "root"]},
                "expect": {"category": "strict"},
            },
            "other": {
                "ip": "127.10.20.30",
                "hostname": "mx.other.test",
                "expect": {"category": "none"},
            },
            "dead": {
                "ip": "127.9.0.3",
                "script": ["close"],
                "expect": {
                    "category": "error",
                    "error": "connection_closed",
                    "error_stage": "banner",
                },
            },
        },
    }
    path = tmp_path / "dispatch.json"
    path.write_text(json.dumps(data))
    return path


def test_dispatch_serves_each_address_as_its_server(tmp_path: Path) -> None:
    """One wildcard socket: each address answers as its own server (TLS included), the
    dead one and an address with no server close at once, and all of it is logged."""
    with testnet.running(dispatch_spec(tmp_path), tmp_path / "state") as net:
        assert net.dispatch
        for ip, name in (("127.9.0.1", "mx.small.test"), ("127.10.20.30", "mx.other.test")):
            assert wire_outcome(ip, net.smtp_port, name)[0] == (
                "tls" if "small" in name else "none"
            )
            with socket.create_connection((ip, net.smtp_port), timeout=3) as sock:
                assert Wire(sock).reply("banner", 3) == (220, [f"{name} ESMTP testnet"])
        assert max(starttls_conversation(net, "127.9.0.1")) < 3
        for ip in ("127.9.0.3", "127.9.0.2"):  # declared dead; no server at all
            with socket.create_connection((ip, net.smtp_port), timeout=3) as sock:
                with pytest.raises(Fail) as closed:
                    Wire(sock).reply("banner", 3)
                assert closed.value.error == "connection_closed"
        time.sleep(0.3)
        log = net.connections()
    by_server = Counter(c["server"] for c in log)
    assert by_server == {"small": 3, "other": 2, "dead": 1, "(no server)": 1}
    assert {c["ip"] for c in log if c["tls"]} == {"127.9.0.1"}
    # The ClientHello is peeked at through the dispatcher too.
    offers = [c["offered"] for c in log if c["tls"]]
    assert len(offers) == 2 and all("TLSv1.2" in o and "TLSv1.3" in o for o in offers)
    assert {c["ip"] for c in log if c["server"] == "(no server)"} == {"127.9.0.2"}


def test_dispatch_cannot_refuse(tmp_path: Path) -> None:
    data = json.loads(dispatch_spec(tmp_path).read_text())
    data["servers"]["dead"] = {
        "ip": "127.9.0.3",
        "kind": "refused",
        "expect": {"category": "error", "error": "connection_refused", "error_stage": "connect"},
    }
    with pytest.raises(SpecError, match="cannot be served with"):
        from_dict(data)
