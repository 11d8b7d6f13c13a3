"""Verdicts: each target (MX host, IP) gets its category and reasons.

The TLS facts belong to the IP, the name match to the MX host, so the chain is
judged once per probe (trust, dates, key) and the name once per target. A
target is judged by the probe made with its own name as SNI when there is one
(providers pick certificates by SNI), else by the IP's first probe; a later,
better-fitting probe replaces the verdict (the store upserts).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.items import DomainItem, ProbeItem, TargetVerdict
from pipelines.record import ca_bundle_path
from pipelines.verify import ChainVerdict, TrustStore, judge_chain, judge_target
from schema.vocab import Category, Flag, Reason


@dataclass(frozen=True)
class _Judged:
    """What a probe contributes to its targets' verdicts (kept per IP for the run)."""

    port: int
    sni: str
    outcome: Category | None  # None: TLS negotiated, the certificate decides
    error: str | None
    error_stage: str | None
    chain: ChainVerdict | None


def verdict(mx_host: str, ip: str, probe: _Judged, exhausted: bool = False) -> TargetVerdict:
    if probe.chain is None:
        category = probe.outcome or Category.ERROR
        return TargetVerdict(
            mx_host, ip, probe.port, probe.sni, category, (), probe.error, probe.error_stage
        )
    reasons = judge_target(probe.chain, mx_host)
    category = Category.OPPORTUNISTIC if reasons else Category.STRICT
    # Judged by a certificate sent for another name, with no probe left for this one.
    flags = (
        (str(Flag.SNI_PROBES_EXHAUSTED),)
        if exhausted and probe.sni != mx_host and (Reason.HOSTNAME_MISMATCH in reasons)
        else ()
    )
    return TargetVerdict(mx_host, ip, probe.port, probe.sni, category, reasons, flags=flags)


class ClassifyPipeline:
    def __init__(self, crawler: Any):
        self.store = TrustStore.from_file(ca_bundle_path(crawler.settings))
        self._probes: dict[str, dict[str, _Judged]] = {}  # ip -> sni -> probe, first first
        self._names: dict[str, set[str]] = {}  # ip -> MX hosts that reach it
        # (MX host, ip) -> (SNI of the probe that judged it, SNI probes exhausted)
        self._judged: dict[tuple[str, str], tuple[str, bool]] = {}
        self.sni_probes = max(1, crawler.settings.getint("SMTP_SNI_PROBES"))

    @classmethod
    def from_crawler(cls, crawler: Any) -> ClassifyPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, DomainItem):
            item.verdicts = list(self._domain_verdicts(item))
        elif isinstance(item, ProbeItem):
            item.verdicts = list(self._probe_verdicts(item))
        return item

    def _domain_verdicts(self, item: DomainItem) -> Iterator[TargetVerdict]:
        skipped = {(host, ip) for host, ip, _ in item.skipped}
        for host in item.dns.hosts:
            for ip in host.addresses:
                if (host.name, ip) not in skipped:
                    self._names.setdefault(ip, set()).add(host.name)
                    yield from self._judge(host.name, ip)

    def _probe_verdicts(self, item: ProbeItem) -> Iterator[TargetVerdict]:
        probe, final = item.probe, item.probe.final
        chain = None
        if final.tls is not None:
            # The certificate is judged as of the probe's own time (DESIGN.md: scan time).
            when = datetime.fromtimestamp(final.started_at, UTC)
            chain = item.chain = judge_chain(final.tls.chain_der, self.store, when)
        error = final.error and str(final.error)
        stage = final.error_stage and str(final.error_stage)
        judged = _Judged(probe.port, probe.sni, final.outcome, error, stage, chain)
        self._probes.setdefault(probe.ip, {}).setdefault(probe.sni, judged)
        for name in sorted(self._names.get(probe.ip, ())):
            yield from self._judge(name, probe.ip)

    def _judge(self, name: str, ip: str) -> Iterator[TargetVerdict]:
        """The target's verdict when it is new or a better-fitting probe arrived.

        The probe made with the target's own name as SNI judges it, unless that
        probe never reached the server (an error, e.g. a timeout on the re-probe):
        then the IP's first probe, which did, still tells the truth.
        """
        probes = self._probes.get(ip)
        if not probes:
            return
        own = probes.get(name)
        probe = own if own and own.outcome is not Category.ERROR else next(iter(probes.values()))
        # Every probe the spider may make of this IP is in, and none was this name's.
        exhausted = own is None and len(probes) >= self.sni_probes
        if self._judged.get((name, ip)) != (probe.sni, exhausted):
            self._judged[name, ip] = (probe.sni, exhausted)  # written once per change
            yield verdict(name, ip, probe, exhausted)
