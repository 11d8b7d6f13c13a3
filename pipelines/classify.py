"""Verdicts: each target (MX host, IP) gets its category and reasons.

The TLS facts belong to the IP, the name match to the MX host, so the chain is
judged once per probe (trust, dates, key) and the name once per target. A
target is judged by the probe made with its own name as SNI when there is one
(providers pick certificates by SNI), else by the IP's first probe; a later,
better-fitting probe replaces the verdict (the store upserts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
from crawler.recent import Interner
from crawler.record import ca_bundle_path
from pipelines.verify import TrustStore, judge_chain, judge_target
from schema.vocab import Category, Flag, Reason


@dataclass(frozen=True, slots=True)
class _Chain:
    """What judging a target needs of its chain's verdict: kept per probe for the run,
    so only these two of ChainVerdict's fields (a national list has ~10^5 IPs)."""

    reasons: tuple[str, ...]  # the chain's own (trust, dates, key)
    leaf_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Judged:
    """What a probe contributes to its targets' verdicts (kept per IP for the run)."""

    port: int
    sni: str
    outcome: Category | None  # None: TLS negotiated, the certificate decides
    error: str | None
    error_stage: str | None
    chain: _Chain | None


@dataclass(slots=True)
class _Ip:
    """An IP's probes (one per SNI, the first first) and the MX hosts that reach it,
    each with how its verdict was last judged: (SNI of the judging probe, SNI probes
    exhausted), None before any probe."""

    probes: tuple[_Judged, ...] = ()
    targets: dict[str, tuple[str, bool] | None] = field(default_factory=dict)

    def probe(self, sni: str) -> _Judged | None:
        for probe in self.probes:  # at most SMTP_SNI_PROBES
            if probe.sni == sni:
                return probe
        return None


# The IPs of a provider (and of one MX host) share their chain, probe facts and how
# their targets were judged: one copy of each while it recurs, not one per IP.
_shared: Interner[Any] = Interner()


def _chain(reasons: tuple[str, ...], leaf_names: tuple[str, ...]) -> _Chain:
    return _shared(_Chain(_shared(reasons), _shared(leaf_names)))


def _judged(
    port: int,
    sni: str,
    outcome: Category | None,
    error: str | None,
    stage: str | None,
    chain: _Chain | None,
) -> _Judged:
    return _shared(_Judged(port, sni, outcome, error, stage, chain))


def stored_judged(stored: StoredProbe) -> _Judged:
    """A probe another crawl of the run committed, judged as it was then."""
    chain = None
    if stored.wire_outcome == "tls":
        chain = _chain(stored.chain_reasons, stored.leaf_names)
    outcome = None if chain else Category(stored.wire_outcome)
    return _judged(stored.port, stored.sni, outcome, stored.error, stored.error_stage, chain)


def verdict(mx_host: str, ip: str, probe: _Judged, exhausted: bool = False) -> TargetVerdict:
    if probe.chain is None:
        category = probe.outcome or Category.ERROR
        return TargetVerdict(
            mx_host, ip, probe.port, probe.sni, category, (), probe.error, probe.error_stage
        )
    reasons = judge_target(probe.chain.reasons, probe.chain.leaf_names, mx_host)
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
        # Every IP of the run: its probes and targets, or its one probe (see _settle).
        self._ips: dict[str, _Ip | _Judged] = {}
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

    def _ip(self, ip: str) -> _Ip:
        state = self._ips.get(ip)
        if state is None:
            state = self._ips[ip] = _Ip()
        elif isinstance(state, _Judged):
            state = self._ips[ip] = _Ip((state,), {state.sni: _shared((state.sni, False))})
        return state

    def _settle(self, ip: str, state: _Ip) -> None:
        """Most IPs end with one probe and one MX host, its SNI, judged by it: then the
        (shared) probe alone stands for the state, as `_ip` reads it back."""
        if len(state.probes) == 1 and len(state.targets) == 1:
            probe = state.probes[0]
            if state.targets.get(probe.sni) == (probe.sni, False):
                self._ips[ip] = probe

    def _domain_verdicts(self, item: DomainItem) -> Iterator[TargetVerdict]:
        skipped = {(host, ip) for host, ip, _ in item.skipped}
        for host in item.dns.hosts:
            for ip in host.addresses:
                if (host.name, ip) not in skipped:
                    yield from self._reached(host.name, ip)

    def _probe_verdicts(self, item: ProbeItem) -> Iterator[TargetVerdict]:
        probe, final = item.probe, item.probe.final
        chain = None
        if final.tls is not None:
            # The certificate is judged as of the probe's own time (docs/design.md: scan time).
            when = datetime.fromtimestamp(final.started_at, UTC)
            item.chain = judge_chain(final.tls.chain_der, self.store, when)
            chain = _chain(item.chain.reasons, item.chain.leaf_names)
        error = final.error and str(final.error)
        stage = final.error_stage and str(final.error_stage)
        judged = _judged(probe.port, probe.sni, final.outcome, error, stage, chain)
        yield from self._add_probes(probe.ip, [judged])

    def _stored_verdicts(self, item: StoredProbesItem) -> Iterator[TargetVerdict]:
        if item.probes:
            yield from self._add_probes(item.probes[0].ip, map(stored_judged, item.probes))

    def _targets_verdicts(self, item: TargetsItem) -> Iterator[TargetVerdict]:
        for name, ip in item.targets:
            yield from self._reached(name, ip)

    def _reached(self, name: str, ip: str) -> Iterator[TargetVerdict]:
        """An MX host reaches the IP: judged now if the IP's probes are in."""
        state = self._ip(ip)
        state.targets.setdefault(name, None)
        yield from self._judge(name, ip, state)
        self._settle(ip, state)

    def _add_probes(self, ip: str, judged: Iterable[_Judged]) -> Iterator[TargetVerdict]:
        """Probes of one IP, in the order they were made: the first one stays first."""
        state = self._ip(ip)
        for probe in judged:
            if state.probe(probe.sni) is None:
                state.probes += (probe,)
        for name in sorted(state.targets):
            yield from self._judge(name, ip, state)
        self._settle(ip, state)

    def _judge(self, name: str, ip: str, state: _Ip) -> Iterator[TargetVerdict]:
        """The target's verdict when it is new or a better-fitting probe arrived.

        The probe made with the target's own name as SNI judges it, unless that
        probe never reached the server (an error, e.g. a timeout on the re-probe):
        then the IP's first probe, which did, still tells the truth.
        """
        if not state.probes:
            return
        own = state.probe(name)
        probe = own if own and own.outcome is not Category.ERROR else state.probes[0]
        # Every probe the spider may make of this IP is in, and none was this name's.
        exhausted = own is None and len(state.probes) >= self.sni_probes
        if state.targets.get(name) != (probe.sni, exhausted):
            state.targets[name] = _shared((probe.sni, exhausted))  # once per change
            yield verdict(name, ip, probe, exhausted)
