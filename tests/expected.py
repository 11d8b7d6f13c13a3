"""What the views and queries must show for a crawl of the test network,
computed in plain Python from the network's hand-written declarations.

An independent implementation of docs/design.md's rollup rule: the SQL views and
this module must agree, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from schema.vocab import TlsVersion
from testnet.spec import ExpectedTarget, Spec

ANSWERED = ["strict", "opportunistic", "failure", "none"]
TLS = {"strict", "opportunistic"}


def rule(categories: list[str | None], worst: bool) -> str | None:
    """worst/best among members that answered; error if none did; None if none probed."""
    answered = [c for c in categories if c in ANSWERED]
    if answered:
        pick = max if worst else min
        return pick(answered, key=ANSWERED.index)
    return "error" if "error" in categories else None


@dataclass
class Expected:
    spec: Spec

    @property
    def targets(self) -> list[ExpectedTarget]:
        return self.spec.expected_targets()

    def category(self, t: ExpectedTarget) -> str | None:
        return t.category and str(t.category)

    def domain_hosts(self, domain: str) -> list[tuple[str, int, bool]]:
        """(MX host, preference, implicit) of a domain whose MX query answered."""
        entry = self.spec.canonical(domain)
        hosts = self.spec.mx_hosts(domain)
        if hosts and hosts[0][1]:
            return [(hosts[0][0], 0, True)]
        prefs = {mx.exchange: mx.preference for mx in (entry.mx if entry else ())}
        return [(h, prefs[h], False) for h, _ in hosts]

    def host_targets(self) -> dict[str, list[ExpectedTarget]]:
        found: dict[str, list[ExpectedTarget]] = defaultdict(list)
        for t in self.targets:
            found[t.mx_host].append(t)
        return found

    def mx_results(self) -> dict[str, dict[str, Any]]:
        targets = self.host_targets()
        hosts = {h for d in self.spec.domains for h, _, _ in self.domain_hosts(d)}
        rows = {}
        for host in hosts:
            cats = [self.category(t) for t in targets.get(host, [])]
            probed = any(c is not None for c in cats)
            rows[host] = {
                "ip_count": sum(1 for t in targets.get(host, []) if t.ip),
                "category": rule(cats, worst=True),
                "best_category": rule(cats, worst=False),
                "starttls_any": any(c in (*TLS, "failure") for c in cats) if probed else None,
                "answered": any(c in ANSWERED for c in cats) if probed else None,
            }
        return rows

    def ip_results(self) -> dict[str, dict[str, Any]]:
        by_ip: dict[str, list[ExpectedTarget]] = defaultdict(list)
        for t in self.targets:
            if t.ip:
                by_ip[t.ip].append(t)
        domains_of_host: dict[str, set[str]] = defaultdict(set)
        for d in self.spec.domains:
            for h, _, _ in self.domain_hosts(d):
                domains_of_host[h].add(d)
        rows = {}
        for ip, targets in by_ip.items():
            cats = [self.category(t) for t in targets]
            rows[ip] = {
                "mx_host_count": len({t.mx_host for t in targets}),
                "domain_count": len(set().union(*(domains_of_host[t.mx_host] for t in targets))),
                "category": rule(cats, worst=True),
                "best_category": rule(cats, worst=False),
            }
        return rows

    def domain_results(self) -> dict[str, dict[str, Any]]:
        targets = self.host_targets()
        rows = {}
        for domain, status in self.spec.expected_domains().items():
            hosts = self.domain_hosts(domain) if status == "ok" else []
            cats = [self.category(t) for h, _, _ in hosts for t in targets.get(h, [])]
            top = min((p for _, p, _ in hosts), default=None)
            primary = [
                self.category(t) for h, p, _ in hosts if p == top for t in targets.get(h, [])
            ]
            ok = status == "ok"
            probed = [c for c in cats if c is not None]
            rows[domain] = {
                "status": status,
                "mx_count": sum(1 for _, _, implicit in hosts if not implicit)
                if ok
                else len([h for h, _ in self.spec.mx_hosts(domain)])
                if status == "mx_without_address"
                else 0,
                "implicit_mx": any(implicit for _, _, implicit in hosts),
                "best_category": rule(cats, worst=False) if ok else None,
                "worst_category": rule(cats, worst=True) if ok else None,
                "primary_category": rule(primary, worst=True) if ok else None,
                # Over the probed targets (skipped ones have no category); NULL if none.
                "all_strict": all(c == "strict" for c in probed) if ok and probed else None,
            }
        return rows


# -- protocol support (`-a depth=protocols`) ---------------------------------------------------

VERSIONS = [str(v) for v in TlsVersion]  # oldest first
# An MX host's status at a version is the best of its IPs': it accepts a version when
# any of its IPs does.
PROTOCOL_RANK = ["supported", "not_supported", "error", "untestable"]
Matrix = dict[str, dict[str, str]]  # unit -> version -> status


@dataclass
class Protocols:
    """What the report's protocol tables must show, from a matrix {ip: {version: status}}
    (the declarations') and the targets that reach each IP."""

    expected: Expected
    matrix: Matrix

    def units(self) -> dict[str, Matrix]:
        """Per unit kind ('mx_host', 'ip'): each unit tried and its status per version."""
        ips_of: dict[str, set[str]] = defaultdict(set)
        for ip, hosts in self.hosts_of_ip().items():
            for host in hosts:
                ips_of[host].add(ip)
        hosts = {
            host: {
                v: min(
                    (self.matrix[ip][v] for ip in ips if v in self.matrix[ip]),
                    key=PROTOCOL_RANK.index,
                )
                for v in VERSIONS
                if any(v in self.matrix[ip] for ip in ips)
            }
            for host, ips in ips_of.items()
        }
        return {"mx_host": hosts, "ip": self.matrix}

    def support(self) -> dict[tuple[str, str], dict[str, int]]:
        """(unit, version) -> how many units were tried at it, accept it, refuse it,
        errored, or could not be offered it (untestable: not tried)."""
        found = {}
        for unit, units in self.units().items():
            for v in VERSIONS:
                statuses = [u[v] for u in units.values() if v in u]
                counts = {s: statuses.count(s) for s in PROTOCOL_RANK}
                found[unit, v] = {"tried": len(statuses) - counts["untestable"], **counts}
        return found

    def hosts(self) -> dict[str, dict[str, int]]:
        """Per unit: advertising STARTTLS, tried, and how those tried ended."""
        starttls = {
            "mx_host": sum(1 for r in self.expected.mx_results().values() if r["starttls_any"]),
            "ip": len(
                {
                    t.ip
                    for t in self.expected.targets
                    if self.expected.category(t) in (*TLS, "failure")
                }
            ),
        }
        found = {}
        for unit, units in self.units().items():
            statuses = [set(u.values()) for u in units.values()]
            found[unit] = {
                "starttls": starttls[unit],
                "tried": len(units),
                "accept_any": sum(1 for s in statuses if "supported" in s),
                "accept_none": sum(1 for s in statuses if "supported" not in s),
                "refuse_all": sum(
                    1 for s in statuses if "supported" not in s and "not_supported" in s
                ),
                "no_answer": sum(
                    1 for s in statuses if "supported" not in s and "not_supported" not in s
                ),
            }
        return found

    def range(self) -> dict[tuple[str, str], Counter[str]]:
        """(unit, 'highest' | 'lowest') -> version -> how many units have it as such."""
        found: dict[tuple[str, str], Counter[str]] = {}
        for unit, units in self.units().items():
            accepted = [[v for v in VERSIONS if u.get(v) == "supported"] for u in units.values()]
            found[unit, "highest"] = Counter(a[-1] for a in accepted if a)
            found[unit, "lowest"] = Counter(a[0] for a in accepted if a)
        return found

    def ciphers(self, picked: dict[str, dict[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
        """(version, cipher) -> IPs that picked it there and MX hosts they serve, from
        `picked` {ip: {version: cipher}} (what each server logged)."""
        hosts_of = self.hosts_of_ip()
        found: dict[tuple[str, str], dict[str, Any]] = defaultdict(
            lambda: {"ips": 0, "mx_hosts": set()}
        )
        for ip, versions in picked.items():
            for v, cipher in versions.items():
                found[v, cipher]["ips"] += 1
                found[v, cipher]["mx_hosts"] |= hosts_of[ip]
        return {k: {"ips": r["ips"], "mx_hosts": len(r["mx_hosts"])} for k, r in found.items()}

    def forward_secrecy(
        self, picked: dict[str, dict[str, str]]
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """(unit, version) -> (units accepting it, of those with forward secrecy): an IP
        when its suite has it (ECDHE, DHE, any TLS 1.3 suite), an MX host when every one
        of its IPs accepting the version does."""
        fs = {
            (ip, v): v == "TLSv1.3" or cipher.startswith(("ECDHE-", "DHE-"))
            for ip, versions in picked.items()
            for v, cipher in versions.items()
        }
        found = {}
        for v in VERSIONS:
            ips = [ip for ip in picked if v in picked[ip]]
            found["ip", v] = (len(ips), sum(1 for ip in ips if fs[ip, v]))
            hosts: dict[str, list[bool]] = defaultdict(list)
            for ip in ips:
                for host in self.hosts_of_ip()[ip]:
                    hosts[host].append(fs[ip, v])
            found["mx_host", v] = (len(hosts), sum(1 for h in hosts.values() if all(h)))
        return found

    def hosts_of_ip(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for t in self.expected.targets:
            if t.ip in self.matrix and t.category is not None:
                found[t.ip].add(t.mx_host)
        return found
