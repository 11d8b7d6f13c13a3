"""Compare a run's stored facts with what the test network declares by hand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from testnet.spec import ExpectedTarget, Spec

TARGETS_SQL = """
SELECT a.mx_host, a.ip, a.skip_reason, p.wire_outcome, p.error, p.error_stage, p.flags
FROM mx_addresses a
LEFT JOIN probes p ON p.run_id = a.run_id AND p.ip = a.ip
WHERE a.run_id = :run
UNION ALL
SELECT name, NULL, 'ip_literal_mx', NULL, NULL, NULL, NULL
FROM mx_hosts WHERE run_id = :run AND ip_literal
"""


def scanned_targets(engine: Engine, run_id: int) -> dict[tuple[str, str | None], dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(TARGETS_SQL), {"run": run_id}).mappings().all()
    return {(r["mx_host"], r["ip"]): dict(r) for r in rows}


def scanned_domains(engine: Engine, run_id: int) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT domain, status FROM domains WHERE run_id = :run"), {"run": run_id}
        ).all()
    return dict(rows)


def expected_wire(target: ExpectedTarget) -> dict[str, Any]:
    """What the wire alone must show for a declared target: a TLS session for
    strict and opportunistic, else the category, code and stage as declared."""
    if target.skip_reason:
        return {"skip_reason": str(target.skip_reason)}
    tls = target.category in ("strict", "opportunistic")
    return {
        "skip_reason": None,
        "wire_outcome": "tls" if tls else str(target.category),
        "error": target.error and str(target.error),
        "error_stage": target.error_stage and str(target.error_stage),
        "flags": ",".join(target.flags) or None,
    }


def compare(spec: Spec, engine: Engine, run_id: int) -> list[str]:
    """Every difference between the declarations and the run, as readable lines."""
    problems = []
    domains = scanned_domains(engine, run_id)
    for domain, status in spec.expected_domains().items():
        if domains.get(domain) != str(status):
            problems.append(f"domain {domain}: declared {status}, scanned {domains.get(domain)}")
    targets = scanned_targets(engine, run_id)
    for target in spec.expected_targets():
        key = (target.mx_host, target.ip)
        want = expected_wire(target)
        got = targets.get(key)
        if got is None:
            problems.append(f"target {key}: declared, not in the run")
            continue
        got_view = {k: got.get(k) for k in want}
        if got_view != want:
            problems.append(f"target {key} ({target.server}): declared {want}, scanned {got_view}")
    declared = {(t.mx_host, t.ip) for t in spec.expected_targets()}
    problems += [f"target {key}: in the run, not declared" for key in targets.keys() - declared]
    return problems
