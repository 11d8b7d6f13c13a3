"""Verdicts: each target (MX host, IP) gets its category and reasons.

The TLS facts belong to the IP, the name match to the MX host, so the chain is
judged once per probe (trust, dates, key) and the name once per target. A
target is judged by the probe made with its own name as SNI when there is one
(providers pick certificates by SNI), else by the IP's first probe; a later,
better-fitting probe replaces the verdict (the store upserts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.items import (
    DomainItem,
    ProbeItem,
    StoredProbe,
    StoredProbesItem,
    TargetsItem,
    TargetVerdict,
)
from crawler.record import ca_bundle_path
from pipelines.verify import ChainVerdict, TrustStore, judge_chain, judge_target
from schema.vocab import Category, Flag, Reason


@dataclass(frozen=True, slots=True)
class _Judged:
    """What a probe contributes to its targets' verdicts (kept per IP for the run)."""

    port: int
    sni: str
    outcome: Category | None  # None: TLS negotiated, the certificate decides
    error: str | None
    error_stage: str | None
    chain: ChainVerdict | None


def stored_judged(stored: StoredProbe) -> _Judged:
    """A probe another crawl of the run committed, judged as it was then."""
    chain = None
    if stored.wire_outcome == "tls":
        chain = ChainVerdict(
            reasons=stored.chain_reasons,
            openssl_error=stored.verify_error,
            parse_error=stored.cert_parse_error,
            leaf_names=stored.leaf_names,
            leaf_has_san=False,  # not used to judge: leaf_names are the names matched
            key_type=None,
            key_bits=None,
            not_before=None,
            not_after=None,
        )
    outcome = None if chain else Category(stored.wire_outcome)
    return _Judged(stored.port, stored.sni, outcome, stored.error, stored.error_stage, chain)


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
        elif isinstance(item, StoredProbesItem):
            item.verdicts = list(self._stored_verdicts(item))
        elif isinstance(item, TargetsItem):
            item.verdicts = list(self._targets_verdicts(item))
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
        yield from self._add_probes(probe.ip, [judged])

    def _stored_verdicts(self, item: StoredProbesItem) -> Iterator[TargetVerdict]:
        if item.probes:
            yield from self._add_probes(item.probes[0].ip, map(stored_judged, item.probes))

    def _targets_verdicts(self, item: TargetsItem) -> Iterator[TargetVerdict]:
        for name, ip in item.targets:
            self._names.setdefault(ip, set()).add(name)
            yield from self._judge(name, ip)

    def _add_probes(self, ip: str, judged: Iterable[_Judged]) -> Iterator[TargetVerdict]:
        """Probes of one IP, in the order they were made: the first one stays first."""
        probes = self._probes.setdefault(ip, {})
        for probe in judged:
            probes.setdefault(probe.sni, probe)
        for name in sorted(self._names.get(ip, ())):
            yield from self._judge(name, ip)

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
