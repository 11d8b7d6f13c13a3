"""Verdicts: each target (MX host, IP) gets its category and reasons.

The TLS facts belong to the IP, the name match to the MX host, so the chain is
judged once per probe (trust, dates, key) and the name once per target. A
target is judged by the probe made with its own name as SNI when there is one
(providers pick certificates by SNI), else by the IP's first probe; a later,
better-fitting probe replaces the verdict (the store upserts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.items import DomainItem, ProbeItem, TargetVerdict
from pipelines.record import ca_bundle_path
from pipelines.verify import ChainVerdict, TrustStore, judge_chain, judge_target
from schema.vocab import Category


@dataclass(frozen=True)
class _Judged:
    """What a probe contributes to its targets' verdicts (kept per IP for the run)."""

    port: int
    sni: str
    outcome: Category | None  # None: TLS negotiated, the certificate decides
    error: str | None
    error_stage: str | None
    chain: ChainVerdict | None


def verdict(mx_host: str, ip: str, probe: _Judged) -> TargetVerdict:
    if probe.chain is None:
        category = probe.outcome or Category.ERROR
        return TargetVerdict(
            mx_host, ip, probe.port, probe.sni, category, (), probe.error, probe.error_stage
        )
    reasons = judge_target(probe.chain, mx_host)
    category = Category.OPPORTUNISTIC if reasons else Category.STRICT
    return TargetVerdict(mx_host, ip, probe.port, probe.sni, category, reasons, None, None)


class ClassifyPipeline:
    def __init__(self, crawler: Any):
        self.store = TrustStore.from_file(ca_bundle_path(crawler.settings))
        self._probes: dict[str, dict[str, _Judged]] = {}  # ip -> sni -> probe, first first
        self._names: dict[str, set[str]] = {}  # ip -> MX hosts that reach it

    @classmethod
    def from_crawler(cls, crawler: Any) -> ClassifyPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, DomainItem):
            item.verdicts = list(self._domain_verdicts(item))
        elif isinstance(item, ProbeItem):
            item.verdicts = list(self._probe_verdicts(item))
        return item

    def _domain_verdicts(self, item: DomainItem):
        skipped = {(host, ip) for host, ip, _ in item.skipped}
        for host in item.dns.hosts:
            for ip in host.addresses:
                if (host.name, ip) in skipped:
                    continue
                self._names.setdefault(ip, set()).add(host.name)
                probes = self._probes.get(ip)
                if probes:
                    yield verdict(
                        host.name, ip, probes.get(host.name) or next(iter(probes.values()))
                    )

    def _probe_verdicts(self, item: ProbeItem):
        probe, final = item.probe, item.probe.final
        chain = None
        if final.tls is not None:
            # The certificate is judged as of the probe's own time (DESIGN.md: scan time).
            when = datetime.fromtimestamp(final.started_at, UTC)
            chain = item.chain = judge_chain(final.tls.chain_der, self.store, when)
        judged = _Judged(
            probe.port,
            probe.sni,
            final.outcome,
            final.error and str(final.error),
            final.error_stage and str(final.error_stage),
            chain,
        )
        probes = self._probes.setdefault(probe.ip, {})
        first = not probes
        probes.setdefault(probe.sni, judged)
        for name in sorted(self._names.get(probe.ip, ())):
            # The first probe judges every name; a later one only its own SNI name.
            if first or name == probe.sni:
                yield verdict(name, probe.ip, judged)
