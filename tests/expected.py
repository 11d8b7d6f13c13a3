"""What the views and queries must show for a crawl of the test network,
computed in plain Python from the network's hand-written declarations.

An independent implementation of DESIGN.md's rollup rule: the SQL views and
this module must agree, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

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
