"""Compare a run's stored facts with what the test network declares by hand."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from testnet.spec import ExpectedTarget, Spec

TARGETS_SQL = """
SELECT mx_host, ip, category, reasons, error, error_stage, flags, skip_reason
FROM target_results
WHERE run_id = :run
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


def expected_row(target: ExpectedTarget) -> dict[str, Any]:
    """The target_results columns a declared target implies."""
    return {
        "category": target.category and str(target.category),
        "reasons": ",".join(target.reasons) or None,
        "error": target.error and str(target.error),
        "error_stage": target.error_stage and str(target.error_stage),
        "flags": ",".join(target.flags) or None,
        "skip_reason": target.skip_reason and str(target.skip_reason),
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
        want = expected_row(target)
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


def scanned_protocols(engine: Engine, run_id: int) -> dict[str, dict[str, str]]:
    """IP → version → status, as `ip_protocols` holds them for the run."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT ip, version, status FROM ip_protocols WHERE run_id = :run"),
            {"run": run_id},
        ).all()
    found: dict[str, dict[str, str]] = {}
    for ip, version, status in rows:
        found.setdefault(ip, {})[version] = status
    return found


def compare_protocols(spec: Spec, engine: Engine, run_id: int) -> list[str]:
    """Every difference between the run's protocol matrix (`-a depth=protocols`) and the
    network's declared one, one line each."""
    expected, scanned = spec.expected_protocols(), scanned_protocols(engine, run_id)
    problems = []
    for ip in sorted(expected.keys() | scanned.keys()):
        want, got = expected.get(ip, {}), scanned.get(ip, {})
        for version in sorted(want.keys() | got.keys()):
            if want.get(version) != got.get(version):
                problems.append(
                    f"{ip} {version}: declared {want.get(version)}, scanned {got.get(version)}"
                )
    return problems
