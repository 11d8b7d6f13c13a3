"""Items the spider yields: one per domain, one per probe, and what the run already holds.

The classify pipeline adds the verdicts of the targets each item completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crawler.mailroute import DomainDns
from crawler.smtp.facts import Probe, ProtocolScan
from schema.vocab import Category

if TYPE_CHECKING:
    from pipelines.verify import ChainVerdict


@dataclass(frozen=True)
class TargetVerdict:
    """The category of one target (MX host, IP), and the probe (its SNI) that judged it."""

    mx_host: str
    ip: str
    port: int
    sni: str
    category: Category
    reasons: tuple[str, ...] = ()  # sorted; only for opportunistic
    error: str | None = None  # only for error and failure
    error_stage: str | None = None
    flags: tuple[str, ...] = ()  # the target's own flags (the probe's are on the probe)


@dataclass
class DomainItem:
    """A domain of the list with its DNS facts and the targets not probed."""

    dns: DomainDns
    label: str | None = None
    weight: float | None = None
    line: int = 0
    skipped: tuple[tuple[str, str, str], ...] = ()  # (mx_host, ip, skip_reason)
    verdicts: list[TargetVerdict] = field(default_factory=list)


@dataclass
class ProbeItem:
    """One SMTP/STARTTLS probe of one IP:port (all its attempts)."""

    probe: Probe
    chain: ChainVerdict | None = None  # the certificate chain's own verdict
    verdicts: list[TargetVerdict] = field(default_factory=list)


@dataclass(frozen=True)
class StoredProbe:
    """A probe another crawl of the run committed (or this one, before a resume):
    what judging its targets needs, as the probes table holds it."""

    ip: str
    port: int
    sni: str
    wire_outcome: str  # error | none | failure | tls
    error: str | None
    error_stage: str | None
    chain_reasons: tuple[str, ...]  # the chain's own verdict (trust, dates, key)
    verify_error: str | None
    cert_parse_error: str | None
    leaf_names: tuple[str, ...]


@dataclass
class StoredProbesItem:
    """The run's committed probes of one IP:port, in the order they were made:
    they judge this crawl's targets without another connection."""

    probes: tuple[StoredProbe, ...]
    verdicts: list[TargetVerdict] = field(default_factory=list)


@dataclass
class TargetsItem:
    """Targets (MX host, IP) of domains an earlier crawl of the run stored, still
    to be judged: a resumed crawl finishes them without asking DNS again."""

    targets: tuple[tuple[str, str], ...]
    verdicts: list[TargetVerdict] = field(default_factory=list)


@dataclass
class ProtocolsItem:
    """The conversations with one IP:port pinned to each TLS version (`-a depth=protocols`)."""

    scan: ProtocolScan
