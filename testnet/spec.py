"""The test network as data: load a spec, check it, and say what a scan must yield.

A spec (TOML or JSON, same schema; see `specs/internet.toml` for a commented example)
describes a whole mail internet on loopback:

- `[network]`  `dns` (the authoritative server's address), `zone` (the zone it serves),
  `reply_delay_ms` (every DNS answer and every SMTP reply of a polite server sent this much
  later: a network with latency, for benchmarks; default 0), `dispatch` (serve every IPv4
  SMTP address from one wildcard socket that dispatches on the local address, instead of
  one socket per address: for worlds with more servers than file descriptors; a dead
  address is then declared as a script that closes, since a wildcard listener cannot
  refuse; see `network.Dispatcher`).
- `comment`    free text (a generated spec's header in JSON, which has no comments).
- `[scanner]`  the scanner settings the expectations assume (UPPER_CASE names, as `-s`).
- `[list]`     `invalid` and `duplicates`: extra input lines appended to the domain list.
- `[certs.NAME]` certificates: `issuer` (a CA cert name; absent: self-signed), `ca`,
  `trusted` (a root written to ca.pem), `names` (SAN dNSNames), `cn`, `san`, `key`
  (`rsa2048`, `rsa1024`, `ec256`, `ec384`), `valid_days` ([from, to], days from start),
  `corrupt_signature`.
- `[domains."NAME"]` listed domains: DNS data (`mx` as "PREF EXCHANGE" strings, `a`, `aaaa`,
  `cname`, `txt`, `dns` = nxdomain | servfail | timeout) and the expected `status`.
- `[hosts."NAME"]` other names (MX hosts, CNAME targets): the same DNS data. An IP-literal MX
  exchange is declared here under its literal, with only `expect`.
- `[servers.NAME]` one per address: `ip`, `kind` (esmtp, script, refused, blackhole; inferred),
  the behaviour options, `expect` (what every target on this IP yields) and
  `expect_for."MX NAME"` (a whole replacement for targets reached through that name),
  `protocols` (the TLS versions it accepts: a matrix's name or an inline table).
- `[protocols]` named matrices and their `default`; see `protocols`.

- `[dnssec]`, `[policy]` the signed zone, its validating resolver, TLSA records, MTA-STS and
  TLS-RPT records and policy servers, and what `-a depth=policy` must yield (testnet/policy.py).

Expectations are declared by hand. The loader only checks that they are well formed and
that each domain's status agrees with its DNS data; it never derives a verdict.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from schema.vocab import (
    Category,
    DomainStatus,
    ErrorCode,
    Flag,
    HostDnsOutcome,
    Reason,
    SkipReason,
    Stage,
)
from testnet import protocols

KEY_TYPES = ("rsa2048", "rsa1024", "ec256", "ec384")
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
DNS_FAULTS = ("nxdomain", "servfail", "timeout")
ON_STARTTLS = ("tls", "reject", "tls_with_plaintext")
POST_TLS_EHLO = ("ok", "reject", "close")
SERVER_KINDS = ("esmtp", "script", "refused", "blackhole")
# Script steps without an argument may be written as bare strings.
BARE_STEPS = ("read_line", "read_any", "close", "abort", "hang")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class SpecError(ValueError):
    """The spec is malformed or inconsistent; the message lists every problem found."""


@dataclass(frozen=True)
class CertSpec:
    """A certificate made at start by `pki`."""

    name: str
    issuer: str | None = None  # None: self-signed
    ca: bool = False
    trusted: bool = False  # a root the scanner trusts (written to ca.pem)
    names: tuple[str, ...] = ()  # SAN dNSNames
    cn: str | None = None  # subject CN; default: the first name, else the cert's own name
    san: bool = True  # False: CN only, no SAN extension (RFC 6125 CN fallback)
    key: str = "rsa2048"
    valid_days: tuple[int, int] = (-30, 365)  # notBefore, notAfter in days from start
    corrupt_signature: bool = False  # flip a signature byte: a chain that cannot verify


@dataclass(frozen=True)
class TlsSpec:
    """How a polite server negotiates TLS after STARTTLS."""

    chain: tuple[str, ...]  # cert names, leaf first, as sent when SNI picks nothing else
    sni: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # SNI name -> chain
    min_version: str | None = None
    max_version: str | None = None
    ciphers: str = "DEFAULT"  # OpenSSL cipher list for TLS <= 1.2
    seclevel: int | None = None  # appended as @SECLEVEL=N before certificates load
    close_unless: str | None = None  # a version: close (no alert) on a hello not offering it


@dataclass(frozen=True)
class Esmtp:
    """Options of a polite ESMTP server (`kind = "esmtp"`)."""

    hostname: str
    banner: tuple[str, ...]  # one line per reply line (RFC 5321 4.2: 220- continuations)
    banner_code: int = 220
    banner_delay: float = 0.0  # seconds before the greeting
    ehlo_code: int = 250
    ehlo_keywords: tuple[str, ...] = ("PIPELINING", "SIZE 10240000", "8BITMIME")
    helo_code: int = 250
    starttls: bool = False  # advertised in the EHLO reply
    on_starttls: str = "tls"  # tls | reject | tls_with_plaintext
    starttls_code: int = 454  # the reply when on_starttls = reject
    post_tls_ehlo: str = "ok"  # ok | reject (5xx) | close
    tls: TlsSpec | None = None


@dataclass(frozen=True)
class Step:
    """One step of a hostile byte script (executed by `hostile`)."""

    op: str  # send, line, sleep, drip, read_line, read_any, close, abort, hang
    data: bytes = b""
    seconds: float = 0.0
    repeat: int = 1


@dataclass(frozen=True)
class Expectation:
    """What a target must yield, in docs/design.md's vocabulary."""

    category: Category | None = None  # None only with a skip_reason
    reasons: tuple[Reason, ...] = ()
    error: ErrorCode | None = None
    error_stage: Stage | None = None
    flags: tuple[Flag, ...] = ()
    skip_reason: SkipReason | None = None


@dataclass(frozen=True)
class ServerSpec:
    """Whatever answers (or deliberately does not) on one address."""

    name: str
    ip: str
    kind: str
    esmtp: Esmtp | None = None
    script: tuple[Step, ...] = ()
    expect: Expectation | None = None
    expect_for: Mapping[str, Expectation] = field(default_factory=dict)
    decoy: bool = False  # reached by no target: any connection to it is a scanner bug
    protocols: Mapping[str, str] | None = None  # TLS version -> status (`protocols`)

    def expectation(self, mx_host: str) -> Expectation | None:
        return self.expect_for.get(mx_host, self.expect)


@dataclass(frozen=True)
class Mx:
    preference: int
    exchange: str  # "" for the null MX (RFC 7505), else a name or an IP literal


@dataclass(frozen=True)
class DnsName:
    """One owner name and its records; `dns` makes the server misbehave for it."""

    name: str
    mx: tuple[Mx, ...] = ()
    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()
    cname: str | None = None
    txt: tuple[str, ...] = ()
    dns: str | None = None  # nxdomain | servfail | timeout


@dataclass(frozen=True)
class DomainSpec:
    """A listed domain and its hand-declared status."""

    name: str
    status: DomainStatus
    records: DnsName


@dataclass(frozen=True)
class ExpectedTarget:
    """One (MX host, IP) target and what the scan must record for it."""

    mx_host: str
    ip: str | None  # None for an IP-literal MX
    category: Category | None
    reasons: tuple[str, ...]  # sorted
    error: ErrorCode | None
    error_stage: Stage | None
    flags: tuple[str, ...]  # sorted
    skip_reason: SkipReason | None
    server: str | None = None  # the spec's server name, for messages


@dataclass(frozen=True)
class Spec:
    """A validated spec. Build with `load(path)` or `from_dict(data)`."""

    source: str
    zone: str
    dns_ip: str
    scanner: Mapping[str, Any]
    certs: Mapping[str, CertSpec]
    servers: Mapping[str, ServerSpec]
    domains: Mapping[str, DomainSpec]  # in list order
    hosts: Mapping[str, DnsName]
    literals: Mapping[str, Expectation]  # IP-literal MX exchange -> expectation
    invalid_lines: tuple[str, ...] = ()
    duplicate_lines: tuple[str, ...] = ()
    reply_delay: float = 0.0  # seconds before each DNS answer and SMTP reply
    dispatch: bool = False  # one wildcard socket for every IPv4 SMTP address
    protocols_declared: bool = False  # any matrix declared: then every tested server has one
    default_protocols: str | None = None  # [protocols] default
    # [dnssec] and [policy], as parsed TOML: read through testnet.policy.policy_of.
    extras: Mapping[str, Any] = field(default_factory=dict)
    _by_ip: Mapping[str, ServerSpec] = field(init=False, repr=False, compare=False)

    # -- the input list -----------------------------------------------------------------

    @property
    def domain_lines(self) -> list[str]:
        """The domain list as fed to the scanner: every domain, then the bad lines."""
        return [*self.domains, *self.invalid_lines, *self.duplicate_lines]

    @property
    def expected_invalid(self) -> int:
        return len(self.invalid_lines)

    @property
    def expected_duplicates(self) -> int:
        return len(self.duplicate_lines)

    # -- DNS data -----------------------------------------------------------------------

    def names(self) -> Iterator[DnsName]:
        """Every declared owner name (domains and hosts)."""
        for domain in self.domains.values():
            yield domain.records
        yield from self.hosts.values()

    def lookup(self, name: str) -> DnsName | None:
        domain = self.domains.get(name)
        return domain.records if domain else self.hosts.get(name)

    def canonical(self, name: str) -> DnsName | None:
        """Follow CNAMEs (validated acyclic and declared) to the name holding records, or
        to a name the DNS server misbehaves for."""
        entry, seen = self.lookup(name), {name}
        while entry is not None and entry.cname and entry.dns is None:
            if entry.cname in seen:
                return None  # a loop (reported by validation)
            seen.add(entry.cname)
            entry = self.lookup(entry.cname)
        return entry

    def host_outcome(self, name: str) -> HostDnsOutcome:
        """How resolving `name`'s addresses goes, from the DNS data."""
        entry = self.canonical(name)
        if entry is None or entry.dns == "nxdomain":
            return HostDnsOutcome.NXDOMAIN
        if entry.dns == "servfail":
            return HostDnsOutcome.SERVFAIL
        if entry.dns == "timeout":
            return HostDnsOutcome.TIMEOUT
        return HostDnsOutcome.OK if entry.a or entry.aaaa else HostDnsOutcome.NO_ADDRESS

    def addresses(self, name: str) -> tuple[str, ...]:
        if self.host_outcome(name) is not HostDnsOutcome.OK:
            return ()
        entry = self.canonical(name)
        assert entry is not None
        return (*entry.a, *entry.aaaa)

    def implied_status(self, domain: str) -> DomainStatus:
        """The status the DNS data implies; validation compares it with the declared one."""
        entry = self.canonical(domain)
        if entry is None or entry.dns == "nxdomain":
            return DomainStatus.NXDOMAIN
        if entry.dns == "servfail":
            return DomainStatus.SERVFAIL
        if entry.dns == "timeout":
            return DomainStatus.DNS_TIMEOUT
        if any(mx.exchange == "" for mx in entry.mx):
            return DomainStatus.NULL_MX
        if entry.mx:
            usable = any(
                _ip_literal(mx.exchange) or self.host_outcome(mx.exchange) is HostDnsOutcome.OK
                for mx in entry.mx
            )
            return DomainStatus.OK if usable else DomainStatus.MX_WITHOUT_ADDRESS
        if entry.a or entry.aaaa:
            return DomainStatus.OK  # RFC 5321 5.1: implicit MX
        return DomainStatus.NO_MX_NO_ADDRESS

    def mx_hosts(self, domain: str) -> list[tuple[str, bool]]:
        """(MX host, implicit) pairs a domain names, IP literals included, null MX excluded."""
        entry = self.canonical(domain)
        if entry is None or entry.dns is not None:
            return []
        if entry.mx:
            return [(mx.exchange, False) for mx in entry.mx if mx.exchange]
        if entry.a or entry.aaaa:
            return [(domain, True)]
        return []

    # -- expectations -------------------------------------------------------------------

    def expected_domains(self) -> dict[str, str]:
        """Listed domain -> expected status."""
        return {name: str(d.status) for name, d in self.domains.items()}

    def expected_hosts(self) -> dict[str, str]:
        """MX host named by a listed domain -> its DNS outcome (IP literals excluded)."""
        hosts: dict[str, str] = {}
        for domain in self.domains:
            for host, _ in self.mx_hosts(domain):
                if not _ip_literal(host):
                    hosts.setdefault(host, str(self.host_outcome(host)))
        return hosts

    def expected_targets(self) -> list[ExpectedTarget]:
        """Every (MX host, IP) a scan of the list reaches, sorted by MX host and IP."""
        found: dict[tuple[str, str | None], ExpectedTarget] = {}
        for domain in self.domains:
            for host, _ in self.mx_hosts(domain):
                if _ip_literal(host):
                    found[(host, None)] = _target(host, None, self.literals[host], None)
                    continue
                for ip in self.addresses(host):
                    server = self.server_at(ip)
                    expectation = server.expectation(host) if server else None
                    assert server is not None and expectation is not None  # validated
                    found[(host, ip)] = _target(host, ip, expectation, server.name)
        return sorted(found.values(), key=lambda t: (t.mx_host, t.ip or ""))

    def expected_protocols(self) -> dict[str, dict[str, str]]:
        """IP -> TLS version -> protocol status, for every IP a target reaches whose
        STARTTLS the scanner tests (as declared by hand; see `protocols`)."""
        return protocols.expected(self)

    def server_at(self, ip: str) -> ServerSpec | None:
        return self._by_ip.get(ip)

    def __post_init__(self) -> None:
        # An index, not data: kept out of init, repr and comparisons.
        object.__setattr__(self, "_by_ip", {s.ip: s for s in self.servers.values()})


def _target(host: str, ip: str | None, e: Expectation, server: str | None) -> ExpectedTarget:
    return ExpectedTarget(
        mx_host=host,
        ip=ip,
        category=e.category,
        reasons=tuple(sorted(str(r) for r in e.reasons)),
        error=e.error,
        error_stage=e.error_stage,
        flags=tuple(sorted(str(f) for f in e.flags)),
        skip_reason=e.skip_reason,
        server=server,
    )


# ---------------------------------------------------------------------------------------
# Loading


def load(path: str | Path) -> Spec:
    """Read a TOML or JSON spec and validate it."""
    path = Path(path).resolve()
    raw = path.read_bytes()
    data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    return from_dict(data, source=str(path))


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Spec:
    """Build a Spec from plain data (as parsed from TOML); raise SpecError listing problems."""
    errors: list[str] = []
    parser = _Parser(errors)
    spec = parser.spec(data, source)
    if not errors:
        _validate(spec, errors)
    if errors:
        raise SpecError(f"{source}: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
    return spec


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _valid_name(name: str) -> bool:
    return len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


class _Parser:
    """Turns parsed TOML into dataclasses, collecting every error instead of stopping."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.matrices: Mapping[str, Mapping[str, str]] = {}
        self.default: str | None = None  # [protocols] default

    def fail(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def table(self, where: str, value: Any, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, "must be a table")
            return {}
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(unknown)}")
        return dict(value)

    def strings(self, where: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, "must be a list of strings")
            return ()
        return tuple(value)

    def enum(self, where: str, cls: type, value: Any) -> Any:
        if value is None:
            return None
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(str(m) for m in cls)
            self.fail(where, f"{value!r} is not one of {allowed}")
            return None

    def choice(self, where: str, value: Any, allowed: tuple[str, ...]) -> Any:
        if value is not None and value not in allowed:
            self.fail(where, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def ips(self, where: str, value: Any, version: int) -> tuple[str, ...]:
        result = []
        for text in self.strings(where, value):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                self.fail(where, f"{text!r} is not an IP address")
                continue
            if ip.version != version:
                self.fail(where, f"{text} is not IPv{version}")
            # Safety: the scanner connects to whatever DNS says; keep it all on loopback.
            if not ip.is_loopback:
                self.fail(where, f"{text} is not a loopback address")
            result.append(ip.compressed)
        return tuple(result)

    # -- top level ----------------------------------------------------------------------

    def spec(self, data: Mapping[str, Any], source: str) -> Spec:
        top = self.table("spec", data, _TOP_KEYS)
        self.matrices, self.default = protocols.parse_table(top.get("protocols", {}), self.errors)
        network = self.table(
            "[network]", top.get("network", {}), ("dns", "zone", "reply_delay_ms", "dispatch")
        )
        delay = network.get("reply_delay_ms", 0)
        if type(delay) not in (int, float) or not 0 <= delay <= 60_000:
            self.fail("[network] reply_delay_ms", "must be a number of ms in 0..60000")
            delay = 0
        dispatch = network.get("dispatch", False)
        if not isinstance(dispatch, bool):
            self.fail("[network] dispatch", "must be true or false")
        zone = str(network.get("zone", "test")).lower().strip(".")
        dns_ip = str(network.get("dns", "127.53.0.1"))
        if not _loopback(dns_ip):
            self.fail("[network] dns", f"{dns_ip} is not a loopback address")
        listing = self.table("[list]", top.get("list", {}), ("invalid", "duplicates"))
        certs = {
            name: self.cert(name, value)
            for name, value in self.table(
                "[certs]", top.get("certs", {}), top.get("certs", {})
            ).items()
        }
        domains: dict[str, DomainSpec] = {}
        raw_domains = top.get("domains", {})
        for name, value in self.table("[domains]", raw_domains, raw_domains).items():
            where = f'[domains."{name}"]'
            entry = self.table(where, value, (*_RECORD_KEYS, "status"))
            status = self.enum(f"{where} status", DomainStatus, entry.get("status"))
            if status is None:
                self.fail(where, "needs a status (declared by hand)")
            domains[name] = DomainSpec(name, status, self.records(where, name, entry))
        hosts: dict[str, DnsName] = {}
        literals: dict[str, Expectation] = {}
        raw_hosts = top.get("hosts", {})
        for name, value in self.table("[hosts]", raw_hosts, raw_hosts).items():
            where = f'[hosts."{name}"]'
            if _ip_literal(name):
                entry = self.table(where, value, ("expect",))
                literals[name] = self.expectation(f"{where} expect", entry.get("expect", {}))
            else:
                entry = self.table(where, value, _RECORD_KEYS)
                hosts[name] = self.records(where, name, entry)
        servers = {
            name: self.server(name, value)
            for name, value in self.table(
                "[servers]", top.get("servers", {}), top.get("servers", {})
            ).items()
        }
        scanner = self.table("[scanner]", top.get("scanner", {}), top.get("scanner", {}))
        return Spec(
            source=source,
            zone=zone,
            dns_ip=ipaddress.ip_address(dns_ip).compressed if _loopback(dns_ip) else dns_ip,
            scanner=MappingProxyType(scanner),
            certs=MappingProxyType(certs),
            servers=MappingProxyType(servers),
            domains=MappingProxyType(domains),
            hosts=MappingProxyType(hosts),
            literals=MappingProxyType(literals),
            invalid_lines=self.strings("[list] invalid", listing.get("invalid", [])),
            duplicate_lines=self.strings("[list] duplicates", listing.get("duplicates", [])),
            reply_delay=delay / 1000,
            dispatch=dispatch is True,
            protocols_declared="protocols" in top
            or any(s.protocols is not None for s in servers.values()),
            default_protocols=self.default,
            extras=MappingProxyType({k: top[k] for k in POLICY_KEYS if k in top}),
        )

    def cert(self, name: str, value: Any) -> CertSpec:
        where = f"[certs.{name}]"
        entry = self.table(
            where,
            value,
            (
                "issuer",
                "ca",
                "trusted",
                "names",
                "cn",
                "san",
                "key",
                "valid_days",
                "corrupt_signature",
            ),
        )
        ca = bool(entry.get("ca", False))
        days = entry.get("valid_days", [-3650, 3650] if ca else [-30, 365])
        if not (isinstance(days, list) and len(days) == 2 and all(type(d) is int for d in days)):
            self.fail(f"{where} valid_days", "must be [from, to] in whole days")
            days = [-30, 365]
        return CertSpec(
            name=name,
            issuer=entry.get("issuer"),
            ca=ca,
            trusted=bool(entry.get("trusted", False)),
            names=tuple(n.lower() for n in self.strings(f"{where} names", entry.get("names", []))),
            cn=entry.get("cn"),
            san=bool(entry.get("san", True)),
            key=self.choice(f"{where} key", entry.get("key", "rsa2048"), KEY_TYPES),
            valid_days=(days[0], days[1]),
            corrupt_signature=bool(entry.get("corrupt_signature", False)),
        )

    def records(self, where: str, name: str, entry: Mapping[str, Any]) -> DnsName:
        mx = []
        for text in self.strings(f"{where} mx", entry.get("mx", [])):
            parts = text.split()
            if len(parts) != 2 or not parts[0].isdigit():
                self.fail(f"{where} mx", f"{text!r} is not 'PREFERENCE EXCHANGE'")
                continue
            # "." is the null MX (RFC 7505); a trailing dot is zone-file notation.
            exchange = "" if parts[1] == "." else parts[1].lower().rstrip(".")
            mx.append(Mx(int(parts[0]), exchange))
        cname = entry.get("cname")
        return DnsName(
            name=name,
            mx=tuple(mx),
            a=self.ips(f"{where} a", entry.get("a", []), 4),
            aaaa=self.ips(f"{where} aaaa", entry.get("aaaa", []), 6),
            cname=cname.lower().rstrip(".") if isinstance(cname, str) else None,
            txt=self.strings(f"{where} txt", entry.get("txt", [])),
            dns=self.choice(f"{where} dns", entry.get("dns"), DNS_FAULTS),
        )

    def expectation(self, where: str, value: Any) -> Expectation:
        entry = self.table(
            where, value, ("category", "reasons", "error", "error_stage", "flags", "skip_reason")
        )
        return Expectation(
            category=self.enum(f"{where} category", Category, entry.get("category")),
            reasons=tuple(
                self.enum(f"{where} reasons", Reason, r)
                for r in self.strings(f"{where} reasons", entry.get("reasons", []))
            ),
            error=self.enum(f"{where} error", ErrorCode, entry.get("error")),
            error_stage=self.enum(f"{where} error_stage", Stage, entry.get("error_stage")),
            flags=tuple(
                self.enum(f"{where} flags", Flag, f)
                for f in self.strings(f"{where} flags", entry.get("flags", []))
            ),
            skip_reason=self.enum(f"{where} skip_reason", SkipReason, entry.get("skip_reason")),
        )

    def server(self, name: str, value: Any) -> ServerSpec:
        where = f"[servers.{name}]"
        entry = self.table(where, value, (*_SERVER_KEYS, *_ESMTP_KEYS))
        kind = entry.get("kind", "script" if "script" in entry else "esmtp")
        self.choice(f"{where} kind", kind, SERVER_KINDS)
        ip = str(entry.get("ip", ""))
        if not _loopback(ip):
            self.fail(f"{where} ip", f"{ip!r} is not a loopback address")
        else:
            ip = ipaddress.ip_address(ip).compressed
        misplaced = set(entry) & set(_ESMTP_KEYS)
        if kind != "esmtp" and misplaced:
            self.fail(where, f"{', '.join(sorted(misplaced))} only apply to kind = esmtp")
        if kind != "script" and "script" in entry:
            self.fail(where, "script only applies to kind = script")
        expect_for = self.table(
            f"{where} expect_for", entry.get("expect_for", {}), entry.get("expect_for", {})
        )
        server = ServerSpec(
            name=name,
            ip=ip,
            kind=kind,
            esmtp=self.esmtp(where, name, entry) if kind == "esmtp" else None,
            script=self.script(f"{where} script", entry.get("script", [])),
            expect=self.expectation(f"{where} expect", entry["expect"])
            if "expect" in entry
            else None,
            expect_for=MappingProxyType(
                {
                    host.lower(): self.expectation(f'{where} expect_for."{host}"', e)
                    for host, e in expect_for.items()
                }
            ),
            decoy=bool(entry.get("decoy", False)),
        )
        matrix = protocols.resolve(
            f"{where} protocols",
            server,
            entry.get("protocols"),
            self.matrices,
            self.default,
            self.errors,
        )
        return server if matrix is None else dataclasses.replace(server, protocols=matrix)

    def esmtp(self, where: str, name: str, entry: Mapping[str, Any]) -> Esmtp:
        hostname = str(entry.get("hostname", f"{name}.mx.test"))
        tls = self.tls(f"{where} tls", entry["tls"]) if "tls" in entry else None
        banner = self.strings(f"{where} banner", entry.get("banner", f"{hostname} ESMTP testnet"))
        keywords = self.strings(
            f"{where} ehlo_keywords", entry.get("ehlo_keywords", list(Esmtp.ehlo_keywords))
        )
        return Esmtp(
            hostname=hostname,
            banner=banner or ("",),
            banner_code=int(entry.get("banner_code", 220)),
            banner_delay=float(entry.get("banner_delay", 0.0)),
            ehlo_code=int(entry.get("ehlo_code", 250)),
            ehlo_keywords=keywords,
            helo_code=int(entry.get("helo_code", 250)),
            starttls=bool(entry.get("starttls", tls is not None)),
            on_starttls=self.choice(
                f"{where} on_starttls", entry.get("on_starttls", "tls"), ON_STARTTLS
            ),
            starttls_code=int(entry.get("starttls_code", 454)),
            post_tls_ehlo=self.choice(
                f"{where} post_tls_ehlo", entry.get("post_tls_ehlo", "ok"), POST_TLS_EHLO
            ),
            tls=tls,
        )

    def tls(self, where: str, value: Any) -> TlsSpec:
        entry = self.table(
            where,
            value,
            ("chain", "sni", "min_version", "max_version", "ciphers", "seclevel", "close_unless"),
        )
        sni = self.table(f"{where} sni", entry.get("sni", {}), entry.get("sni", {}))
        seclevel = entry.get("seclevel")
        if seclevel is not None and not (isinstance(seclevel, int) and 0 <= seclevel <= 5):
            self.fail(f"{where} seclevel", "must be 0..5")
        return TlsSpec(
            chain=self.strings(f"{where} chain", entry.get("chain", [])),
            sni=MappingProxyType(
                {k.lower(): self.strings(f"{where} sni.{k}", v) for k, v in sni.items()}
            ),
            min_version=self.choice(f"{where} min_version", entry.get("min_version"), TLS_VERSIONS),
            max_version=self.choice(f"{where} max_version", entry.get("max_version"), TLS_VERSIONS),
            ciphers=str(entry.get("ciphers", "DEFAULT")),
            seclevel=seclevel,
            close_unless=self.choice(
                f"{where} close_unless", entry.get("close_unless"), TLS_VERSIONS
            ),
        )

    def script(self, where: str, value: Any) -> tuple[Step, ...]:
        if not isinstance(value, list):
            self.fail(where, "must be a list of steps")
            return ()
        steps = []
        for item in value:
            if isinstance(item, str):
                if item not in BARE_STEPS:
                    self.fail(where, f"{item!r} is not one of {', '.join(BARE_STEPS)}")
                steps.append(Step(item))
                continue
            step = self.step(where, item)
            if step is not None:
                steps.append(step)
        return tuple(steps)

    def step(self, where: str, item: Any) -> Step | None:
        entry = self.table(
            where, item, ("send", "line", "pad_to", "repeat", "sleep", "drip", "interval")
        )
        repeat = int(entry.get("repeat", 1))
        if "send" in entry:
            return Step("send", _bytes(entry["send"]), repeat=repeat)
        if "line" in entry:
            # A reply line with CRLF, padded with "x" to pad_to bytes (oversized replies).
            text = _bytes(entry["line"])
            text += b"x" * max(0, int(entry.get("pad_to", 0)) - len(text))
            return Step("send", text + b"\r\n", repeat=repeat)
        if "sleep" in entry:
            return Step("sleep", seconds=float(entry["sleep"]))
        if "drip" in entry:
            return Step("drip", _bytes(entry["drip"]), seconds=float(entry.get("interval", 1.0)))
        self.fail(where, f"{item!r} is not a step")
        return None


def _bytes(text: Any) -> bytes:
    # Scripts are byte-exact: TOML strings carry \r\n and \u00XX escapes as latin-1 bytes.
    return str(text).encode("latin-1")


# Top-level tables ("comment": a generated spec's header, in JSON).
_TOP_KEYS = ("network", "scanner", "list", "certs", "domains", "hosts", "servers")
_TOP_KEYS += ("protocols", "comment")
POLICY_KEYS = ("dnssec", "policy")  # testnet/policy.py
_TOP_KEYS += POLICY_KEYS
_RECORD_KEYS = ("mx", "a", "aaaa", "cname", "txt", "dns")
_SERVER_KEYS = ("ip", "kind", "expect", "expect_for", "decoy", "script", "protocols")
_ESMTP_KEYS = (
    "hostname",
    "banner",
    "banner_code",
    "banner_delay",
    "ehlo_code",
    "ehlo_keywords",
    "helo_code",
    "starttls",
    "on_starttls",
    "starttls_code",
    "post_tls_ehlo",
    "tls",
)


# ---------------------------------------------------------------------------------------
# Consistency


def _validate(spec: Spec, errors: list[str]) -> None:
    from testnet import policy  # the policy data's own module reads this one's

    policy.validate(spec, errors)
    _validate_names(spec, errors)
    _validate_certs(spec, errors)
    _validate_servers(spec, errors)
    _validate_expectations(spec, errors)
    protocols.validate(spec, errors)


def _in_zone(spec: Spec, name: str) -> bool:
    return name == spec.zone or name.endswith("." + spec.zone)


def _validate_names(spec: Spec, errors: list[str]) -> None:
    reserved = {spec.zone, f"ns.{spec.zone}"}
    for name in [*spec.domains, *spec.hosts]:
        if name in spec.domains and name in spec.hosts:
            errors.append(f"{name}: declared both as a domain and as a host")
        if not _valid_name(name) or not _in_zone(spec, name) or name in reserved:
            errors.append(f"{name}: not a valid, unreserved name under .{spec.zone}")
    for entry in spec.names():
        where = entry.name
        if entry.dns and (entry.mx or entry.a or entry.aaaa or entry.cname or entry.txt):
            errors.append(f"{where}: dns = {entry.dns} leaves no room for records")
        if entry.cname and (entry.mx or entry.a or entry.aaaa or entry.txt):
            errors.append(f"{where}: a CNAME owner has no other data (RFC 1034 3.6.2)")
        target_entry = spec.lookup(entry.cname) if entry.cname else None
        if entry.cname and (target_entry is None or target_entry.dns is not None):
            # A dangling or failing alias would need RFC 6604 answers this server omits.
            errors.append(f"{where}: CNAME target {entry.cname} is not declared with records")
        if any(mx.exchange == "" for mx in entry.mx) and len(entry.mx) > 1:
            errors.append(f"{where}: a null MX stands alone (RFC 7505 3)")
        for mx in entry.mx:
            if not mx.exchange:
                continue
            if _ip_literal(mx.exchange):
                if mx.exchange not in spec.literals:
                    errors.append(f"{where}: IP-literal MX {mx.exchange} needs a [hosts] entry")
            elif spec.lookup(mx.exchange) is None:
                errors.append(f"{where}: MX {mx.exchange} is not declared")
        seen = {entry.name}
        target = entry.cname
        while target:
            if target in seen:
                errors.append(f"{where}: CNAME loop through {target}")
                break
            seen.add(target)
            nxt = spec.lookup(target)
            target = nxt.cname if nxt else None
    for literal, expectation in spec.literals.items():
        if not _loopback(literal):
            errors.append(f"{literal}: IP-literal MX must be a loopback address")
        if expectation.skip_reason is not SkipReason.IP_LITERAL_MX or expectation.category:
            errors.append(f"{literal}: an IP-literal MX expects skip_reason = ip_literal_mx only")
    for name, domain in spec.domains.items():
        if name != name.lower():
            errors.append(f"{name}: listed domains are written in lower case")
        if domain.status is DomainStatus.INVALID:
            errors.append(f"{name}: invalid lines belong in [list] invalid")
        implied = spec.implied_status(name)
        if domain.status is not None and domain.status is not implied:
            errors.append(f"{name}: status {domain.status} but its DNS data says {implied}")


def _validate_certs(spec: Spec, errors: list[str]) -> None:
    for cert in spec.certs.values():
        if cert.issuer is not None:
            issuer = spec.certs.get(cert.issuer)
            if issuer is None or not issuer.ca:
                errors.append(f"cert {cert.name}: issuer {cert.issuer} is not a declared CA")
        if cert.trusted and (cert.issuer is not None or not cert.ca):
            errors.append(f"cert {cert.name}: only a self-signed CA can be trusted")
        chain, seen = cert, set()
        while chain is not None and chain.issuer is not None:
            if chain.name in seen:
                errors.append(f"cert {cert.name}: issuer loop")
                break
            seen.add(chain.name)
            chain = spec.certs.get(chain.issuer)


def _validate_servers(spec: Spec, errors: list[str]) -> None:
    seen: dict[str, str] = {}
    for server in spec.servers.values():
        if server.ip in seen:
            errors.append(f"server {server.name}: ip {server.ip} already used by {seen[server.ip]}")
        seen[server.ip] = server.name
        if server.ip == spec.dns_ip:
            errors.append(f"server {server.name}: ip {server.ip} is the DNS server's")
        if spec.dispatch and server.kind in ("refused", "blackhole") and ":" not in server.ip:
            # One wildcard listener accepts every IPv4 address: nothing can refuse or drop.
            errors.append(
                f"server {server.name}: kind = {server.kind} cannot be served with"
                " [network] dispatch = true (declare a script that closes instead)"
            )
        if server.kind == "script" and not server.script:
            errors.append(f"server {server.name}: a script server needs script steps")
        tls = server.esmtp.tls if server.esmtp else None
        esmtp = server.esmtp
        if esmtp and esmtp.starttls and esmtp.on_starttls != "reject" and not tls:
            errors.append(f"server {server.name}: STARTTLS would succeed but there is no tls")
        if tls:
            for chain in (tls.chain, *tls.sni.values()):
                if not chain:
                    errors.append(f"server {server.name}: empty certificate chain")
                for cert in chain:
                    if cert not in spec.certs:
                        errors.append(f"server {server.name}: unknown cert {cert}")


def _validate_expectations(spec: Spec, errors: list[str]) -> None:
    reached: dict[str, set[str]] = {}
    for domain, d in spec.domains.items():
        if d.status is not DomainStatus.OK:
            continue
        for host, _ in spec.mx_hosts(domain):
            if _ip_literal(host):
                continue
            for ip in spec.addresses(host):
                reached.setdefault(ip, set()).add(host)
    for ip, hosts in reached.items():
        server = spec.server_at(ip)
        if server is None:
            errors.append(f"{ip} (reached by {', '.join(sorted(hosts))}) has no server")
            continue
        if server.decoy:
            errors.append(f"server {server.name}: a decoy reached by {', '.join(sorted(hosts))}")
        for host in hosts:
            expectation = server.expectation(host)
            if expectation is None:
                errors.append(f"server {server.name}: no expectation for {host}")
            else:
                _check_expectation(f"server {server.name} via {host}", expectation, errors)
        for host in set(server.expect_for) - hosts:
            errors.append(f"server {server.name}: expect_for {host}, which never reaches it")
    for server in spec.servers.values():
        if server.ip not in reached and not server.decoy:
            errors.append(f"server {server.name}: reached by no target (mark it decoy = true)")


def _check_expectation(where: str, e: Expectation, errors: list[str]) -> None:
    if e.skip_reason is not None:
        errors.append(f"{where}: skip_reason {e.skip_reason} is not expected of a probed target")
    if e.category is None:
        errors.append(f"{where}: needs a category")
    if (e.category is Category.OPPORTUNISTIC) != bool(e.reasons):
        errors.append(f"{where}: reasons go with (and only with) opportunistic")
    failed = e.category in (Category.ERROR, Category.FAILURE)
    if failed != (e.error is not None) or failed != (e.error_stage is not None):
        errors.append(f"{where}: error and error_stage go with (and only with) error/failure")
