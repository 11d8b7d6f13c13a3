"""The comparison across labels (the Italian study's "comparison with EU neighbours"):
per label of domain_results, the STARTTLS table's shares and the Figure-1 categories."""

from __future__ import annotations

from sqlalchemy import Engine

from reports import sql
from reports.palette import CATEGORIES
from reports.pivot import category_columns, pivot_categories
from reports.table import Column, Table, share, table


def tables(engine: Engine, run_id: int) -> list[Table]:
    domains = sql.rows(engine, sql.LABEL_DOMAINS, run=run_id)
    covered = {
        r["label"]: r["domains_covered"] for r in sql.rows(engine, sql.LABEL_COVERED, run=run_id)
    }
    mx = {r["label"]: r for r in sql.rows(engine, sql.LABEL_MX, run=run_id)}
    # Labels in a stable order: most domains first; NULL (no label) last.
    domains.sort(key=lambda r: (r["label"] is None, -r["domains"], r["label"] or ""))
    starttls, categories = [], []
    for d in domains:
        label, m = d["label"], mx.get(d["label"]) or {}
        starttls.append(
            {
                "label": label,
                "domains": d["domains"],
                "domains_covered": covered.get(label, 0),
                "domains_share": share(covered.get(label, 0), d["domains"]),
                "unique_mx": m.get("unique_mx", 0),
                "mx_with_starttls": m.get("mx_with_starttls", 0),
                "mx_share": share(m.get("mx_with_starttls", 0), m.get("unique_mx", 0)),
                "connection_errors": m.get("connection_errors", 0),
                "no_starttls": m.get("no_starttls", 0),
            }
        )
        for unit, row in (("domain", d), ("mx_host", m)):
            counts = [{"category": c, "n": row.get(c, 0)} for c in CATEGORIES]
            categories.append(
                {
                    "label": label,
                    "unit": unit,
                    **pivot_categories(counts),
                    "error": row.get("error", 0),
                }
            )
    return [
        table(
            "labels",
            "STARTTLS by label (the Italian study's comparison with EU neighbours)",
            [
                Column("label", "label"),
                Column("domains", "domains", "count"),
                Column("domains_covered", "domains with STARTTLS", "count"),
                Column("domains_share", "domains %", "share"),
                Column("unique_mx", "MX hosts", "count"),
                Column("mx_with_starttls", "MX with STARTTLS", "count"),
                Column("mx_share", "MX %", "share"),
                Column("connection_errors", "connection errors", "count"),
                Column("no_starttls", "no STARTTLS", "count"),
            ],
            starttls,
            "Per label (domain_results.label): domains covered by an MX host with STARTTLS, "
            "and the probed MX hosts its domains name (a host shared by labels counts in each).",
        ),
        table(
            "label_categories",
            "Figure 1 categories by label",
            [
                Column("label", "label"),
                Column("unit", "unit"),
                *category_columns(),
                Column("counted", "counted", "count"),
                Column("error", "error", "count"),
            ],
            categories,
            "Domains by their primary MX hosts' category; MX hosts named by the label's "
            "domains. Shares of the units in the four categories.",
        ),
    ]
