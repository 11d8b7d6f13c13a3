"""Items the spider yields: one per domain, one per probe."""

from __future__ import annotations

from dataclasses import dataclass

from crawler.mailroute import DomainDns
from crawler.smtp.facts import Probe


@dataclass
class DomainItem:
    """A domain of the list with its DNS facts and the targets not probed."""

    dns: DomainDns
    label: str | None = None
    weight: float | None = None
    line: int = 0
    skipped: tuple[tuple[str, str, str], ...] = ()  # (mx_host, ip, skip_reason)


@dataclass
class ProbeItem:
    """One SMTP/STARTTLS probe of one IP:port (all its attempts)."""

    probe: Probe
