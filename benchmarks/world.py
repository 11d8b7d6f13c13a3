"""Generate a test-network spec shaped like a national domain list, for benchmarks.

Why: timing a crawl on the 84-line demo network says nothing about a national list, where a
few providers serve most domains and a long tail hosts its own mail. This writes a spec of N
domains in the format of `testnet/specs/internet.toml`, which `python -m testnet up` serves
and `demo.check.compare` checks a crawl against:

- providers Zipf-distributed: the largest serves about a fifth of the list, size falling as
  rank^-1.3 down to two domains; every other domain hosts its own mail (a provider of one);
- 1-3 MX hosts per provider (every customer names them all, preferences 10, 20, 30) and 1-2
  addresses per MX host, one address per server, from 127.100.0.0 up (clear of the ranges
  internet.toml uses); the largest provider's first MX host also has an AAAA (::1,
  loopback's only IPv6 address);
- a setup per provider: mostly STARTTLS with a trusted chain, some self-signed or
  mismatched certificates, some servers without STARTTLS, a few that reject STARTTLS, a few
  dead (connection refused) addresses; some NXDOMAIN and null-MX domains.

The real spec declares its expectations by hand; here they are derived from what was
generated, one expectation per setup (`SETUPS`). Each IP is reached through one MX name
only, so a crawl probes each IP once (no SNI re-probes). Deterministic given --seed.

Big worlds (more than DISPATCH_ABOVE servers: 10^5 domains have ~44,000, 10^6 ~440,000,
and this machine allows 20,000 open files) are served in the test network's dispatch mode
(`[network] dispatch = true`): one wildcard socket for every IPv4 address. A wildcard
listener accepts connections to every address, so a dead server cannot refuse; there it
accepts and closes at once (a FIN), and is declared as the crawler records a close before
the greeting: error, connection_closed, stage banner (docs/design.md's outcome table). Not an abort:
a reset can arrive before the client has seen its connect complete, and then the crawler
reads it as a failed connect (SO_ERROR ECONNRESET), which is a race, not a declaration.

A spec written with a `.json` suffix is JSON (the testnet reads it ~10x faster than TOML;
the header goes in `comment`).

    python -m benchmarks.world --domains 2000 --out world.toml [--seed 1] [--no-ipv6]
        [--dispatch | --no-dispatch]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZONE = "test"
# 127.100.0.0-127.111.255.255: ~780,000 addresses (10^6 domains need ~440,000)
NETWORKS = (ipaddress.ip_network("127.100.0.0/14"), ipaddress.ip_network("127.104.0.0/13"))
DNS_IP = "127.103.255.254"
IPV6 = "::1"
TOP_SHARE = 0.20  # share of the list served by the largest provider
ZIPF_EXPONENT = 1.3  # provider of rank k serves TOP_SHARE * N / k^1.3 domains (at least 2)

# What a scan must yield for every target of a provider with this setup.
SETUPS: dict[str, dict[str, Any]] = {
    "strict": {"category": "strict"},
    "self_signed": {"category": "opportunistic", "reasons": ["self_signed"]},
    "mismatch": {"category": "opportunistic", "reasons": ["hostname_mismatch"]},
    "no_starttls": {"category": "none"},
    "starttls_rejected": {
        "category": "failure",
        "error": "starttls_rejected",
        "error_stage": "starttls",
    },
    "refused": {"category": "error", "error": "connection_refused", "error_stage": "connect"},
}
# In dispatch mode a dead address accepts and closes at once (see the module docstring).
DEAD_IN_DISPATCH = {"category": "error", "error": "connection_closed", "error_stage": "banner"}
DISPATCH_ABOVE = 10_000  # servers: more need the testnet's dispatch mode (file descriptors)
# (setup, weight): shared providers are mostly well run; the long tail less so.
SHARED_MIX = (
    ("strict", 80),
    ("mismatch", 8),
    ("self_signed", 4),
    ("no_starttls", 6),
    ("starttls_rejected", 2),
)
TAIL_MIX = (
    ("strict", 62),
    ("self_signed", 10),
    ("mismatch", 8),
    ("no_starttls", 12),
    ("starttls_rejected", 3),
    ("refused", 5),
)
STATUS_MIX = (("ok", 93), ("nxdomain", 4), ("null_mx", 3))
SHARED_MX_COUNTS = ((1, 20), (2, 50), (3, 30))
TAIL_MX_COUNTS = ((1, 60), (2, 30), (3, 10))
SHARED_IP_COUNTS = ((1, 40), (2, 60))
TAIL_IP_COUNTS = ((1, 80), (2, 20))
# Input lines a real list carries: counted and skipped by the crawler.
INVALID_LINES = ("not a domain", "bad..name.test", "-dash-.test")

SCANNER = {
    # The expectations assume these: loopback probed, a fully qualified EHLO name, no retry
    # (nothing here is transient). Timeouts are short but roomy enough for a loaded machine.
    "ALLOW_NONPUBLIC_TARGETS": True,
    "SMTP_EHLO_NAME": "scanner.example.net",
    "SMTP_SNI_PROBES": 4,
    "SMTP_RETRIES": 0,
    "SMTP_CONNECT_TIMEOUT": 5,
    "SMTP_BANNER_TIMEOUT": 10,
    "SMTP_COMMAND_TIMEOUT": 10,
    "SMTP_TLS_TIMEOUT": 10,
    "SMTP_PROBE_TIMEOUT": 30,
    "DNS_TIMEOUT": 3,
    "DNS_TRIES": 2,
}


@dataclass
class MxHost:
    name: str
    ips: list[str]


@dataclass
class Provider:
    """Whoever runs the mail servers of some domains: a hoster, or a domain for itself."""

    label: str  # a bare key: names its certificate and servers
    setup: str
    mx: list[MxHost] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)


@dataclass
class Domain:
    name: str
    status: str
    provider: Provider | None = None


@dataclass
class World:
    seed: int
    domains: list[Domain]
    providers: list[Provider]
    dispatch: bool = False

    @property
    def servers(self) -> int:
        return sum(len(mx.ips) for p in self.providers for mx in p.mx)


def pick(rng: random.Random, weighted: Sequence[tuple[Any, int]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def addresses() -> Iterator[str]:
    """IPv4 addresses of NETWORKS in order, skipping .0 and .255 and the DNS server's."""
    for network in NETWORKS:
        for ip in network.hosts():
            text = str(ip)
            if ip.packed[-1] not in (0, 255) and text != DNS_IP:
                yield text


def shared_sizes(domains: int, hosted: int) -> list[int]:
    """Customer counts of the shared providers, largest first (Zipf, at least 2 each)."""
    sizes: list[int] = []
    top = TOP_SHARE * domains
    rank = 1
    while (size := round(top / rank**ZIPF_EXPONENT)) >= 2 and sum(sizes) + size <= hosted:
        sizes.append(size)
        rank += 1
    return sizes


def make_provider(
    rng: random.Random, label: str, parent: str, shared: bool, ips: Iterator[str]
) -> Provider:
    mix, mx_counts, ip_counts = (
        (SHARED_MIX, SHARED_MX_COUNTS, SHARED_IP_COUNTS)
        if shared
        else (TAIL_MIX, TAIL_MX_COUNTS, TAIL_IP_COUNTS)
    )
    provider = Provider(label=label, setup=pick(rng, mix))
    for j in range(1, pick(rng, mx_counts) + 1):
        host_ips = [next(ips) for _ in range(pick(rng, ip_counts))]
        provider.mx.append(MxHost(f"mx{j}.{parent}", host_ips))
    return provider


def build(count: int, seed: int = 1, ipv6: bool = True, dispatch: bool | None = None) -> World:
    """A world of `count` listed domains; `dispatch` None: when it has many servers."""
    rng = random.Random(seed)
    width = len(str(count))
    domains = [Domain(f"org{i:0{width}d}.{ZONE}", pick(rng, STATUS_MIX)) for i in range(count)]
    hosted = [d for d in domains if d.status == "ok"]
    rng.shuffle(hosted)
    ips = addresses()
    providers: list[Provider] = []
    start = 0
    for rank, size in enumerate(shared_sizes(count, len(hosted)), 1):
        label = f"provider{rank}"
        provider = make_provider(rng, label, f"{label}.{ZONE}", True, ips)
        if rank <= 3:
            provider.setup = "strict"  # the big hosters are well run
        providers.append(provider)
        for domain in hosted[start : start + size]:
            domain.provider = provider
        start += size
    for domain in hosted[start:]:
        label = domain.name.removesuffix(f".{ZONE}")
        domain.provider = make_provider(rng, label, domain.name, False, ips)
        providers.append(domain.provider)
    for domain in hosted:
        assert domain.provider is not None
        domain.provider.customers.append(domain.name)
    if ipv6 and providers:
        providers[0].mx[0].ips.append(IPV6)
    world = World(seed=seed, domains=domains, providers=providers)
    world.dispatch = world.servers > DISPATCH_ABOVE if dispatch is None else dispatch
    return world


# ---------------------------------------------------------------------------------------
# TOML


def toml_value(value: Any) -> str:
    """A TOML literal: ASCII strings as JSON strings (a valid TOML basic string), inline
    arrays and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def table(header: str, entries: dict[str, Any]) -> str:
    lines = [f"[{header}]", *(f"{k} = {toml_value(v)}" for k, v in entries.items())]
    return "\n".join(lines) + "\n"


def domain_table(domain: Domain) -> str:
    return table(f'domains."{domain.name}"', domain_entries(domain))


def domain_entries(domain: Domain) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    if domain.status == "nxdomain":
        entries["dns"] = "nxdomain"
    elif domain.status == "null_mx":
        entries["mx"] = ["0 ."]
    else:
        assert domain.provider is not None
        entries["mx"] = [f"{10 * j} {mx.name}" for j, mx in enumerate(domain.provider.mx, 1)]
    entries["status"] = domain.status
    return entries


def cert_table(provider: Provider) -> str:
    return table(f"certs.{provider.label}", cert_entries(provider))


def cert_entries(provider: Provider) -> dict[str, Any]:
    names = [mx.name for mx in provider.mx]
    entries: dict[str, Any]
    if provider.setup == "self_signed":
        entries = {"names": names}  # no issuer: it signs itself
    elif provider.setup == "mismatch":
        # A certificate made for another name (the hoster's old brand, say).
        entries = {"issuer": "intermediate", "names": [f"mail.{provider.label}-hosting.example"]}
    else:
        entries = {"issuer": "intermediate", "names": names}
    return entries


def server_tables(provider: Provider, dispatch: bool = False) -> Iterator[str]:
    for name, entries in server_entries(provider, dispatch):
        yield table(f"servers.{name}", entries)


def server_entries(provider: Provider, dispatch: bool = False) -> Iterator[tuple[str, Any]]:
    dead_closes = dispatch and provider.setup == "refused"
    expect = DEAD_IN_DISPATCH if dead_closes else SETUPS[provider.setup]
    for j, mx in enumerate(provider.mx, 1):
        for a, ip in enumerate(mx.ips, 1):
            entries: dict[str, Any] = {"ip": ip}
            if dead_closes:
                entries["script"] = ["close"]
            elif provider.setup == "refused":
                entries["kind"] = "refused"
            else:
                entries["hostname"] = mx.name
            if provider.setup in ("strict", "mismatch"):
                entries["tls"] = {"chain": [provider.label, "intermediate"]}
            elif provider.setup == "self_signed":
                entries["tls"] = {"chain": [provider.label]}
            elif provider.setup == "starttls_rejected":
                entries.update(starttls=True, on_starttls="reject", starttls_code=454)
            entries["expect"] = expect
            yield f"{provider.label}-mx{j}-{a}", entries


def header(world: World) -> str:
    statuses = Counter(d.status for d in world.domains)
    setups = Counter(p.setup for p in world.providers)
    servers = Counter(p.setup for p in world.providers for mx in p.mx for _ in mx.ips)
    shared = [p for p in world.providers if len(p.customers) > 1]
    top = max((len(p.customers) for p in world.providers), default=0)
    lines = [
        f"Generated by `python -m benchmarks.world --domains {len(world.domains)}"
        f" --seed {world.seed}`.",
        "Do not edit: the expectations derive from the generator, not from a scan.",
        f"domains: {len(world.domains)} ({_counts(statuses)})",
        f"providers: {len(world.providers)} ({len(shared)} shared, largest serves {top});"
        f" by setup: {_counts(setups)}",
        f"servers (one per address): {sum(servers.values())} ({_counts(servers)})",
    ]
    if world.dispatch:
        lines.append("dispatch mode: one SMTP socket; dead addresses accept and close")
    return "".join(f"# {line}\n" for line in lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common())


def network(world: World) -> dict[str, Any]:
    return {"dns": DNS_IP, "zone": ZONE, "dispatch": world.dispatch}


def duplicate_lines(world: World) -> list[str]:
    ok = [d for d in world.domains if d.status == "ok"]
    return [d.name.upper() for d in ok[:2]] + [f"{d.name}." for d in ok[2:3]]


def render(world: World) -> str:
    """The whole spec as TOML text."""
    duplicates = duplicate_lines(world)
    parts = [
        header(world),
        table("network", network(world)),
        table("scanner", SCANNER),
        table("list", {"invalid": list(INVALID_LINES), "duplicates": duplicates}),
        table("certs.root", {"ca": True, "trusted": True, "cn": "mxcensus bench root CA"}),
        table(
            "certs.intermediate",
            {"ca": True, "issuer": "root", "cn": "mxcensus bench intermediate CA"},
        ),
    ]
    parts += [domain_table(d) for d in world.domains]
    for provider in world.providers:
        parts += [table(f'hosts."{mx.name}"', _address_records(mx)) for mx in provider.mx]
        if provider.setup in ("strict", "mismatch", "self_signed"):
            parts.append(cert_table(provider))
        parts += list(server_tables(provider, world.dispatch))
    return "\n".join(parts)


def render_json(world: World) -> str:
    """The same spec as JSON: TOML tables turned into nested objects."""
    data: dict[str, Any] = {"comment": header(world).splitlines()}
    data["network"] = network(world)
    data["scanner"] = SCANNER
    data["list"] = {"invalid": list(INVALID_LINES), "duplicates": duplicate_lines(world)}
    data["certs"] = {
        "root": {"ca": True, "trusted": True, "cn": "mxcensus bench root CA"},
        "intermediate": {"ca": True, "issuer": "root", "cn": "mxcensus bench intermediate CA"},
    }
    data["domains"] = {d.name: domain_entries(d) for d in world.domains}
    data["hosts"], data["servers"] = {}, {}
    for provider in world.providers:
        for mx in provider.mx:
            data["hosts"][mx.name] = _address_records(mx)
        if provider.setup in ("strict", "mismatch", "self_signed"):
            data["certs"][provider.label] = cert_entries(provider)
        data["servers"].update(server_entries(provider, world.dispatch))
    return json.dumps(data, separators=(",", ":"))


def _address_records(mx: MxHost) -> dict[str, list[str]]:
    records = {"a": [ip for ip in mx.ips if ":" not in ip]}
    aaaa = [ip for ip in mx.ips if ":" in ip]
    return {**records, "aaaa": aaaa} if aaaa else records


def write(
    count: int, out: Path, seed: int = 1, ipv6: bool = True, dispatch: bool | None = None
) -> World:
    """Generate and write the spec (JSON if `out` ends in .json); return its world."""
    world = build(count, seed, ipv6, dispatch)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_json(world) if out.suffix == ".json" else render(world)
    out.write_text(text, encoding="utf-8")
    return world


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.world", description=__doc__)
    parser.add_argument("--domains", type=int, default=2000, help="listed domains")
    parser.add_argument("--out", type=Path, required=True, help="the spec to write (TOML)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-ipv6", action="store_true", help="no AAAA record (::1)")
    parser.add_argument(
        "--dispatch",
        action=argparse.BooleanOptionalAction,
        help=f"serve from one wildcard socket (default: above {DISPATCH_ABOVE} servers)",
    )
    args = parser.parse_args(argv)
    if args.domains < 1:
        parser.error("--domains must be at least 1")
    world = write(args.domains, args.out, args.seed, not args.no_ipv6, args.dispatch)
    print(header(world), end="")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
