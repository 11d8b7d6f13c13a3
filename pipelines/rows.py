"""Items → table rows (pure): one place that says how each fact is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crawler.items import DomainItem, ProbeItem, ProtocolsItem, TargetVerdict
from crawler.policy import DomainPolicyItem
from crawler.smtp.facts import Attempt, Reply, protocol_status
from pipelines.certinfo import sha256_hex

Rows = dict[str, list[dict[str, Any]]]


def domain_rows(item: DomainItem, run_id: int, crawl_id: int) -> Rows:
    dns = item.dns
    rows: Rows = {
        "domains": [
            {
                "run_id": run_id,
                "domain": dns.domain,
                "crawl_id": crawl_id,
                "label": item.label,
                "weight": item.weight,
                "line": item.line,
                "status": str(dns.status),
                "null_mx": dns.null_mx,
                "implicit_mx": any(r.implicit for r in dns.mx),
                "mx_count": dns.mx_count,
                "mx_rrset": list(dns.mx_rrset),
                "dns_detail": dns.detail,
            }
        ],
        "mx_records": [
            {
                "run_id": run_id,
                "domain": dns.domain,
                "mx_host": r.host,
                "preference": r.preference,
                "implicit": r.implicit,
            }
            for r in dns.mx
        ],
        "mx_hosts": [
            {
                "run_id": run_id,
                "name": h.name,
                "canonical_name": h.canonical,
                "dns_outcome": str(h.outcome),
                "dns_detail": h.detail,
                "ip_literal": h.ip_literal,
            }
            for h in dns.hosts
        ],
    }
    if dns.policy:  # -a depth=policy: a crawl's rows all have these columns, or none do
        rows["domains"][0]["dnssec"] = dns.dnssec
        for row, host in zip(rows["mx_hosts"], dns.hosts, strict=True):
            tlsa = host.tlsa
            row.update(
                dnssec=host.dnssec,
                tlsa_name=tlsa and tlsa.name,
                tlsa_status=tlsa and tlsa.status and str(tlsa.status),
                tlsa=",".join(tlsa.records) or None if tlsa else None,
                tlsa_detail=tlsa and tlsa.detail,
            )
    skipped = {(host, ip): reason for host, ip, reason in item.skipped}
    rows["mx_addresses"] = [
        {
            "run_id": run_id,
            "mx_host": h.name,
            "ip": ip,
            "family": 6 if ":" in ip else 4,
            "skip_reason": skipped.get((h.name, ip)),
        }
        for h in dns.hosts
        for ip in h.addresses
    ]
    rows["targets"] = target_rows(item.verdicts, run_id)
    return rows


def _code(reply: Reply | None) -> int | None:
    return reply.code if reply else None


def _text(reply: Reply | None) -> str | None:
    return reply.text if reply else None


def _epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def attempt_summary(attempt: Attempt) -> dict[str, Any]:
    """What each attempt leaves in `probes.attempts` (the last one also fills the columns)."""
    return {
        "started_at": _epoch(attempt.started_at).isoformat(),
        "outcome": str(attempt.outcome or "tls"),
        "error": attempt.error and str(attempt.error),
        "error_stage": attempt.error_stage and str(attempt.error_stage),
        "error_detail": attempt.error_detail,
        "timings": attempt.timings,
        "transcript": [list(entry) for entry in attempt.transcript],
    }


def probe_rows(item: ProbeItem, run_id: int, crawl_id: int) -> Rows:
    probe, final = item.probe, item.probe.final
    tls = final.tls
    chain = [sha256_hex(der) for der in tls.chain_der] if tls else None
    row = {
        "run_id": run_id,
        "crawl_id": crawl_id,
        "ip": probe.ip,
        "port": probe.port,
        "sni": probe.sni,
        "started_at": _epoch(probe.attempts[0].started_at),
        "attempt_count": len(probe.attempts),
        "wire_outcome": str(final.outcome or "tls"),
        "error": final.error and str(final.error),
        "error_stage": final.error_stage and str(final.error_stage),
        "error_detail": final.error_detail,
        "flags": ",".join(sorted(final.flags)) or None,
        "banner_code": _code(final.banner),
        "banner_text": _text(final.banner),
        "ehlo_code": _code(final.ehlo),
        "ehlo_text": _text(final.ehlo),
        "helo_code": _code(final.helo),
        "helo_text": _text(final.helo),
        "extensions": " ".join(final.extensions) or None,
        "starttls_advertised": final.starttls_advertised,
        "starttls_code": _code(final.starttls_reply),
        "starttls_text": _text(final.starttls_reply),
        "plaintext_after_starttls": final.plaintext_after_starttls or None,
        "tls_version": tls and tls.version,
        "cipher": tls and tls.cipher,
        "forward_secrecy": tls and tls.forward_secrecy,
        "kx_group": tls and tls.kx_group,
        "cert_sha256": chain[0] if chain else None,
        "chain": chain,
        "post_tls_ehlo_code": _code(final.post_tls_ehlo),
        "post_tls_ehlo_text": _text(final.post_tls_ehlo),
        "post_tls_extensions": " ".join(final.post_tls_extensions) or None,
        "quit_sent": final.quit_sent,
        "timings": final.timings,
        "transcript": [list(entry) for entry in final.transcript],
        "attempts": [attempt_summary(a) for a in probe.attempts],
    }
    chain_verdict = item.chain
    row.update(
        chain_reasons=",".join(chain_verdict.reasons) or None if chain_verdict else None,
        verify_error=chain_verdict and chain_verdict.openssl_error,
        cert_parse_error=chain_verdict and chain_verdict.parse_error,
        leaf_names=list(chain_verdict.leaf_names) if chain_verdict else None,
    )
    return {"probes": [row], "targets": target_rows(item.verdicts, run_id)}


def protocol_rows(item: ProtocolsItem, run_id: int, crawl_id: int) -> Rows:
    """One row per version tried (or not: untestable) on one IP:port."""
    scan = item.scan
    rows = []
    for version, attempt in scan.tries:
        tls = attempt and attempt.tls
        rows.append(
            {
                "run_id": run_id,
                "ip": scan.ip,
                "port": scan.port,
                "version": str(version),
                "crawl_id": crawl_id,
                "sni": scan.sni,
                "started_at": attempt and _epoch(attempt.started_at),
                "status": str(protocol_status(attempt)),
                "error": attempt and attempt.error and str(attempt.error),
                "error_stage": attempt and attempt.error_stage and str(attempt.error_stage),
                "error_detail": attempt and attempt.error_detail,
                "starttls_code": attempt and _code(attempt.starttls_reply),
                "tls_version": tls and tls.version,
                "cipher": tls and tls.cipher,
                "forward_secrecy": tls and tls.forward_secrecy,
                "kx_group": tls and tls.kx_group,
                "quit_sent": attempt and attempt.quit_sent,
                "timings": attempt and attempt.timings,
                "transcript": attempt and [list(entry) for entry in attempt.transcript],
            }
        )
    return {"protocol_probes": rows}


def policy_rows(item: DomainPolicyItem, run_id: int, crawl_id: int) -> Rows:
    """A domain's MTA-STS and TLS-RPT facts (-a depth=policy)."""
    fetch, policy = item.fetch, item.policy
    error = (fetch and fetch.error) or (policy.error if policy else None)
    if item.txt.error:
        error = item.txt.error
    elif item.record.error:
        error = item.record.error
    row = {
        "run_id": run_id,
        "domain": item.domain,
        "crawl_id": crawl_id,
        "mta_sts_txt": list(item.txt.mta_sts) if item.txt.mta_sts is not None else None,
        "mta_sts_id": item.record.id,
        "mta_sts": item.mta_sts and str(item.mta_sts),
        "policy_url": fetch and fetch.url,
        "policy_status": fetch and fetch.status,
        "policy_mode": policy and policy.mode,
        "policy_max_age": policy and policy.max_age,
        "policy_mx": list(policy.mx) if policy and policy.valid else None,
        "mta_sts_mx_match": item.mx_match,
        "policy_text": fetch and fetch.text,
        "policy_error": error,
        "tls_rpt_txt": list(item.txt.tls_rpt) if item.txt.tls_rpt is not None else None,
        "tls_rpt": item.tls_rpt and str(item.tls_rpt),
    }
    return {"domain_policies": [row]}


def target_rows(verdicts: list[TargetVerdict], run_id: int) -> list[dict[str, Any]]:
    return [
        {
            "run_id": run_id,
            "mx_host": v.mx_host,
            "ip": v.ip,
            "port": v.port,
            "sni": v.sni,
            "category": str(v.category),
            "reasons": ",".join(v.reasons) or None,
            "error": v.error,
            "error_stage": v.error_stage,
            "flags": ",".join(v.flags) or None,
        }
        for v in verdicts
    ]
