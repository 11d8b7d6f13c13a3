"""A domain's MTA-STS and TLS-RPT facts (`-a depth=policy`): from its TXT records to the
policy fetch (at most one per domain, only when the `_mta-sts` record is valid) and the
`DomainPolicyItem` the store writes to `domain_policies`.

The spider calls `after_dns` with each domain's DNS facts and `after_fetch` with each
policy response; the rules are in crawler/mtasts.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import scrapy

from crawler.handlers.https_policy import PolicyFetch, PolicyResponse
from crawler.mailroute import DomainDns
from crawler.mtasts import (
    Policy,
    PolicyTxt,
    StsRecord,
    mta_sts_status,
    mx_matches,
    parse_policy,
    parse_sts_txt,
    parse_tls_rpt,
)
from schema.vocab import MtaSts, TlsRpt

SLOT = {"download_slot": "mta-sts"}  # one slot: the handler caps each address itself


@dataclass(frozen=True)
class DomainPolicyItem:
    """One domain's MTA-STS and TLS-RPT facts."""

    domain: str
    txt: PolicyTxt
    record: StsRecord
    mta_sts: MtaSts | None  # None: the TXT lookup failed
    tls_rpt: TlsRpt | None
    fetch: PolicyFetch | None = None
    policy: Policy | None = None
    mx_match: bool | None = None  # every MX host matches an mx: pattern; None: no policy


def after_dns(facts: DomainDns, priority: int) -> Iterator[Any]:
    """The policy request when the domain publishes a valid `_mta-sts` record, else the
    domain's item at once."""
    txt = facts.txt
    if txt is None:
        return
    record = parse_sts_txt(txt.mta_sts or ())
    tls_rpt = parse_tls_rpt(txt.tls_rpt) if txt.tls_rpt is not None else None
    if txt.mta_sts is not None and record.valid:
        yield scrapy.Request(
            f"mta-sts://{facts.domain}",
            callback=after_fetch,
            meta=SLOT,
            priority=priority,
            cb_kwargs={
                "txt": txt,
                "record": record,
                "tls_rpt": tls_rpt,
                "mx_hosts": tuple(r.host for r in facts.mx),
            },
            dont_filter=True,
        )
        return
    mta_sts = mta_sts_status(record, None) if txt.mta_sts is not None else None
    yield DomainPolicyItem(facts.domain, txt, record, mta_sts, tls_rpt)


def after_fetch(
    response: PolicyResponse,
    txt: PolicyTxt,
    record: StsRecord,
    tls_rpt: TlsRpt | None,
    mx_hosts: tuple[str, ...],
) -> Iterator[Any]:
    fetch = response.fetch
    policy = parse_policy(fetch.text) if fetch.text is not None else None
    mx_match = None
    if policy is not None and policy.valid:
        mx_match = bool(mx_hosts) and all(mx_matches(host, policy.mx) for host in mx_hosts)
    domain = response.url.removeprefix("mta-sts://").rstrip("/")
    # Not fetched on purpose (EXCLUDE_FILE, ALLOW_NONPUBLIC_TARGETS): unknown, not invalid.
    mta_sts = None if fetch.skipped else mta_sts_status(record, policy)
    yield DomainPolicyItem(domain, txt, record, mta_sts, tls_rpt, fetch, policy, mx_match)
