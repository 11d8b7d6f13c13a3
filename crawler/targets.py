"""Which addresses may be probed: public-address rule, exclusions, IPv6 reach."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from crawler.domainnames import normalize_domain
from schema.vocab import SkipReason

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ADDRESS_CACHE = 65536  # addresses whose verdict is kept (the cache restarts when full)


@dataclass(frozen=True)
class Exclusions:
    """Domains (and their subdomains) and networks whose owners asked not to be scanned."""

    domains: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_file(cls, path: str) -> Exclusions:
        if not path:
            return cls()
        domains, networks = set(), []
        for raw in Path(path).read_text(encoding="utf-8").splitlines():
            item = raw.split("#", 1)[0].strip().lower().rstrip(".")
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                domains.add(normalize_domain(item))  # as list entries are: A-labels
        return cls(frozenset(domains), tuple(networks))

    def excludes_domain(self, domain: str) -> bool:
        if not self.domains:
            return False
        labels = domain.split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))

    def excludes_ip(self, ip: str) -> bool:
        return self.excludes_address(ipaddress.ip_address(ip))

    def excludes_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in net for net in self.networks)


@lru_cache(maxsize=1)
def has_global_ipv6_address() -> bool:
    """Whether this machine has a global IPv6 address (not link-local, ULA or loopback)."""
    try:
        rows = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return False
    addresses = (ipaddress.IPv6Address(int(row.split()[0], 16)) for row in rows if row.strip())
    return any(a.is_global for a in addresses)


@dataclass
class TargetPolicy:
    allow_nonpublic: bool = False
    ipv6: str = "auto"  # auto | on | off
    exclusions: Exclusions = field(default_factory=Exclusions)

    def __post_init__(self) -> None:
        if self.ipv6 not in ("auto", "on", "off"):
            raise ValueError(f"SMTP_IPV6 must be auto, on or off, not {self.ipv6!r}")
        # A hoster's address comes back with every customer: judge it once.
        self._by_address: dict[str, SkipReason | None] = {}

    def skip_reason(self, ip: str, mx_host: str = "") -> SkipReason | None:
        """Why this target must not be probed, or None to probe it. An MX host
        under an excluded domain is excluded whichever domain names it."""
        if self.exclusions.excludes_domain(mx_host):
            return SkipReason.EXCLUDED
        try:
            return self._by_address[ip]
        except KeyError:
            if len(self._by_address) >= ADDRESS_CACHE:
                self._by_address.clear()
            reason = self._by_address[ip] = self._address_reason(ip)
            return reason

    def _address_reason(self, ip: str) -> SkipReason | None:
        address = ipaddress.ip_address(ip)
        if self.exclusions.excludes_address(address):
            return SkipReason.EXCLUDED
        if not address.is_global and not self.allow_nonpublic:
            return SkipReason.NON_PUBLIC_ADDRESS
        if address.version == 6 and not self._ipv6_reachable(address):
            return SkipReason.IPV6_DISABLED
        return None

    def _ipv6_reachable(self, address: ipaddress.IPv6Address) -> bool:
        if self.ipv6 == "off":
            return False
        if self.ipv6 == "on" or address.is_loopback:
            return True
        return has_global_ipv6_address()
