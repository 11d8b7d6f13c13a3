"""The short summary of a run: domains by status, targets by outcome, list counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, text

from schema.models import Crawl


@dataclass(frozen=True)
class Summary:
    run_id: int
    run_name: str
    crawls: list[dict[str, Any]]
    domains: list[tuple[str, int]]  # (status, count)
    targets: list[tuple[str, str, int]]  # (outcome, code, count)
    probes: int


def find_run(engine: Engine, run: str | None = None) -> tuple[int, str] | None:
    """A run by id or name; the latest run when none is given."""
    with engine.connect() as conn:
        if run is None:
            row = conn.execute(text("SELECT id, name FROM runs ORDER BY id DESC LIMIT 1")).first()
        elif run.isdigit():
            row = conn.execute(
                text("SELECT id, name FROM runs WHERE id = :r"), {"r": int(run)}
            ).first()
        else:
            row = conn.execute(
                text("SELECT id, name FROM runs WHERE name = :r"), {"r": run}
            ).first()
    return (row[0], row[1]) if row else None


TARGETS_SQL = """
SELECT COALESCE(category, skip_reason, 'not_probed') AS outcome,
       COALESCE(error, reasons, '') AS code, COUNT(*) AS n
FROM target_results
WHERE run_id = :run
GROUP BY 1, 2
ORDER BY 1, 2
"""


def summarize(engine: Engine, run_id: int, run_name: str) -> Summary:
    params = {"run": run_id}
    with engine.connect() as conn:
        domains = conn.execute(
            text(
                "SELECT status, COUNT(*) FROM domains WHERE run_id = :run GROUP BY status"
                " ORDER BY COUNT(*) DESC, status"
            ),
            params,
        ).all()
        targets = conn.execute(text(TARGETS_SQL), params).all()
        probes = conn.execute(text("SELECT COUNT(*) FROM probes WHERE run_id = :run"), params)
        crawls = (
            conn.execute(  # through the model, so JSON comes back parsed
                select(Crawl.id, Crawl.status, Crawl.finish_reason, Crawl.counts)
                .where(Crawl.run_id == run_id)
                .order_by(Crawl.id)
            )
            .mappings()
            .all()
        )
    return Summary(
        run_id,
        run_name,
        [dict(c) for c in crawls],
        [(s, n) for s, n in domains],
        [(o, c, n) for o, c, n in targets],
        probes.scalar_one(),
    )


def render(summary: Summary) -> str:
    lines = [f"run {summary.run_id} ({summary.run_name})"]
    for crawl in summary.crawls:
        listed = (crawl["counts"] or {}).get("list", {})
        lines.append(
            f"  crawl {crawl['id']}: {crawl['status']} ({crawl['finish_reason'] or 'running'}); "
            f"list: {listed.get('entries', '?')} domains, {listed.get('invalid', '?')} invalid, "
            f"{listed.get('duplicates', '?')} duplicate lines"
        )
    lines.append(f"\ndomains by status ({sum(n for _, n in summary.domains)})")
    lines += [f"  {status:<22}{n:>8}" for status, n in summary.domains]
    total = sum(n for *_, n in summary.targets)
    lines.append(f"\ntargets (MX host, IP) by category ({total}; {summary.probes} probes)")
    lines += [f"  {outcome:<20}{code:<34}{n:>6}" for outcome, code, n in summary.targets]
    return "\n".join(lines)
