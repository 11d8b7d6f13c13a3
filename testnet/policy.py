"""The spec's policy data: the DNSSEC-signed zone, TLSA records, and what a policy scan
(`-a depth=policy`) must yield, declared by hand.

    [dnssec]
    zone = "sec.test"            # signed at start with a key made then (ECDSA P-256)
    resolver = "127.53.0.2"      # a validating resolver (unbound) in front of the DNS
    bogus = ["NAME", …]          # owner names whose signatures are corrupted

    [policy.hosts."MX HOST"]     # its TLSA RRset at _25._tcp.MXHOST, and the expectation
    tlsa = [{usage = 3, selector = 1, mtype = 1, cert = "CERT"}, {…, data = "HEX"}]
    tlsa_bogus = true            # the TLSA RRset's signature is corrupted
    expect = {tlsa_status = "secure", dane = "valid"}   # dane: of every target of the host

    [policy.domains."DOMAIN"]
    expect = {dnssec = true, dane = "all"}

A TLSA record names a certificate of the spec (`cert`), whose digest is computed at start
from the certificate as made, or gives its data as hex. The loader checks that the data is
well formed; it never derives an expectation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schema.vocab import Dane, DaneCoverage, MtaSts, TlsaStatus, TlsRpt

if TYPE_CHECKING:
    from testnet.spec import Spec

TLSA_PREFIX = "_25._tcp."  # RFC 7672 §2.2: SMTP on port 25


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    cert: str | None = None  # a spec certificate, digested at start
    data: str | None = None  # hex, as published


@dataclass(frozen=True)
class HostPolicy:
    """An MX host's TLSA records and the hand-declared mx_dane row and target dane."""

    name: str
    tlsa: tuple[Tlsa, ...] = ()
    tlsa_bogus: bool = False
    tlsa_status: TlsaStatus | None = None
    dane: Dane | None = None  # every target of the host


@dataclass(frozen=True)
class DomainPolicy:
    """A domain's MTA-STS and TLS-RPT records, and its hand-declared domain_policy row."""

    name: str
    expect: Mapping[str, Any] = field(default_factory=dict)
    mta_sts_txt: tuple[str, ...] = ()  # TXT at _mta-sts.DOMAIN
    tls_rpt_txt: tuple[str, ...] = ()  # TXT at _smtp._tls.DOMAIN


@dataclass(frozen=True)
class PolicyServer:
    """An HTTPS server of MTA-STS policies (testnet/https.py), on MTA_STS_PORT."""

    name: str
    ip: str
    chain: tuple[str, ...]  # cert names, leaf first
    body: str = ""
    content_type: str = "text/plain"
    status: int = 200
    location: str | None = None  # a redirect's target
    pad_to: int = 0  # bytes: padded with an unknown key's line to this size (RFC 8461 §3.3)

    @property
    def payload(self) -> bytes:
        body = self.body.encode("utf-8")
        if len(body) < self.pad_to:
            body += b"padding: " + b"x" * max(0, self.pad_to - len(body) - 10) + b"\n"
        return body


@dataclass(frozen=True)
class NetworkPolicy:
    zone: str | None = None  # the signed zone
    resolver: str | None = None  # the validating resolver's address
    bogus: frozenset[str] = frozenset()
    hosts: Mapping[str, HostPolicy] = field(default_factory=dict)
    domains: Mapping[str, DomainPolicy] = field(default_factory=dict)
    servers: Mapping[str, PolicyServer] = field(default_factory=dict)

    def signed(self, name: str) -> bool:
        return self.zone is not None and (name == self.zone or name.endswith("." + self.zone))


DOMAIN_EXPECT = {
    "dnssec": (bool,),
    "dane": tuple(str(v) for v in DaneCoverage),
    "mta_sts": tuple(str(v) for v in MtaSts),
    "mta_sts_id": (str,),
    "mta_sts_mx_match": (bool,),
    "tls_rpt": tuple(str(v) for v in TlsRpt),
    "downgrade_protected": (bool,),
}


def policy_of(spec: Spec) -> NetworkPolicy:
    """The spec's policy data, parsed (validated when the spec was loaded)."""
    found = getattr(spec, "_policy", None)
    if found is None:
        errors: list[str] = []
        found = parse(spec.extras, errors)
        object.__setattr__(spec, "_policy", found)
    return found


def parse(raw: Mapping[str, Any], errors: list[str]) -> NetworkPolicy:
    dnssec = raw.get("dnssec", {})
    if not isinstance(dnssec, Mapping):
        errors.append("[dnssec]: must be a table")
        dnssec = {}
    _known("[dnssec]", dnssec, ("zone", "resolver", "bogus"), errors)
    policy = raw.get("policy", {})
    if not isinstance(policy, Mapping):
        errors.append("[policy]: must be a table")
        policy = {}
    _known("[policy]", policy, ("hosts", "domains", "servers"), errors)
    hosts = {}
    for name, entry in dict(policy.get("hosts", {})).items():
        hosts[name] = _host(f'[policy.hosts."{name}"]', name, entry, errors)
    domains = {}
    for name, entry in dict(policy.get("domains", {})).items():
        where = f'[policy.domains."{name}"]'
        _known(where, entry, ("expect", "mta_sts_txt", "tls_rpt_txt"), errors)
        expect = dict(entry.get("expect", {}))
        for key, value in expect.items():
            allowed = DOMAIN_EXPECT.get(key)
            if allowed is None:
                errors.append(f"{where} expect: unknown key {key}")
            elif allowed in ((bool,), (str,)):
                if not isinstance(value, allowed[0]):
                    errors.append(f"{where} expect.{key}: must be a {allowed[0].__name__}")
            elif value not in allowed:
                errors.append(f"{where} expect.{key}: {value!r} is not one of {allowed}")
        domains[name] = DomainPolicy(
            name,
            expect,
            tuple(entry.get("mta_sts_txt", ())),
            tuple(entry.get("tls_rpt_txt", ())),
        )
    servers = {}
    for name, entry in dict(policy.get("servers", {})).items():
        where = f"[policy.servers.{name}]"
        keys = ("ip", "chain", "body", "content_type", "status", "location", "pad_to")
        _known(where, entry, keys, errors)
        servers[name] = PolicyServer(
            name,
            str(entry.get("ip", "")),
            tuple(entry.get("chain", ())),
            str(entry.get("body", "")),
            str(entry.get("content_type", "text/plain")),
            int(entry.get("status", 200)),
            entry.get("location"),
            int(entry.get("pad_to", 0)),
        )
    zone = dnssec.get("zone")
    return NetworkPolicy(
        zone=str(zone).lower().strip(".") if zone else None,
        resolver=dnssec.get("resolver"),
        bogus=frozenset(str(n).lower() for n in dnssec.get("bogus", [])),
        hosts=hosts,
        domains=domains,
        servers=servers,
    )


def _known(where: str, entry: Any, keys: tuple[str, ...], errors: list[str]) -> None:
    if not isinstance(entry, Mapping):
        errors.append(f"{where}: must be a table")
        return
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)}")


def _host(where: str, name: str, entry: Any, errors: list[str]) -> HostPolicy:
    _known(where, entry, ("tlsa", "tlsa_bogus", "expect"), errors)
    records = []
    for record in entry.get("tlsa", []):
        _known(f"{where} tlsa", record, ("usage", "selector", "mtype", "cert", "data"), errors)
        tlsa = Tlsa(
            int(record.get("usage", -1)),
            int(record.get("selector", -1)),
            int(record.get("mtype", -1)),
            record.get("cert"),
            record.get("data"),
        )
        if not (0 <= tlsa.usage <= 3 and 0 <= tlsa.selector <= 1 and 0 <= tlsa.mtype <= 2):
            errors.append(f"{where} tlsa: usage 0-3, selector 0-1, mtype 0-2")
        if (tlsa.cert is None) == (tlsa.data is None):
            errors.append(f"{where} tlsa: give cert or data, not both")
        if tlsa.data is not None:
            try:
                bytes.fromhex(tlsa.data)
            except ValueError:
                errors.append(f"{where} tlsa: data {tlsa.data!r} is not hex")
        records.append(tlsa)
    expect = dict(entry.get("expect", {}))
    _known(f"{where} expect", expect, ("tlsa_status", "dane"), errors)
    status = expect.get("tlsa_status")
    dane = expect.get("dane")
    try:
        return HostPolicy(
            name,
            tuple(records),
            bool(entry.get("tlsa_bogus", False)),
            TlsaStatus(status) if status is not None else None,
            Dane(dane) if dane is not None else None,
        )
    except ValueError as e:
        errors.append(f"{where} expect: {e}")
        return HostPolicy(name, tuple(records))


def validate(spec: Spec, errors: list[str]) -> None:
    """Policy data that fits the rest of the spec: declared names and certificates."""
    policy = parse(spec.extras, errors)
    if policy.zone is not None and not policy.zone.endswith("." + spec.zone):
        errors.append(f"[dnssec] zone {policy.zone} is not under .{spec.zone}")
    if (policy.zone is None) != (policy.resolver is None):
        errors.append("[dnssec]: zone and resolver go together")
    for host in policy.hosts.values():
        if spec.lookup(host.name) is None:
            errors.append(f'[policy.hosts."{host.name}"]: not a declared name')
        for record in host.tlsa:
            if record.cert is not None and record.cert not in spec.certs:
                errors.append(f'[policy.hosts."{host.name}"]: unknown cert {record.cert}')
    for name in policy.domains:
        if name not in spec.domains:
            errors.append(f'[policy.domains."{name}"]: not a listed domain')
    smtp_ips = {server.ip for server in spec.servers.values()}
    for server in policy.servers.values():
        where = f"[policy.servers.{server.name}]"
        try:
            loopback = ipaddress.ip_address(server.ip).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            errors.append(f"{where} ip: {server.ip!r} is not a loopback address")
        if server.ip in smtp_ips or server.ip == spec.dns_ip:
            errors.append(f"{where} ip: {server.ip} is taken by another server")
        if not server.chain or any(c not in spec.certs for c in server.chain):
            errors.append(f"{where} chain: certificates of the spec, leaf first")
    for name in policy.bogus:
        if not policy.signed(name):
            errors.append(f"[dnssec] bogus {name}: not in the signed zone")
    object.__setattr__(spec, "_policy", policy)
