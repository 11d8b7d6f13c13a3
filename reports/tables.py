"""A run's report as tables: the Italian study's table, Facebook's Figures 1-4, key sizes,
verification results, protocol versions, protocol support (reports/protocols.py),
connection errors and the label comparison.

schema/queries/*.sql answer most tables (through schema/examples.run_query); reports/sql.py
the rest. Python only reshapes their few aggregate rows (pivots, shares).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from reports import labels, policy, protocols, sql
from reports.palette import UNITS
from reports.pivot import category_columns, pivot_categories
from reports.runs import RunRef
from reports.table import Column, Report, Table, share, table
from schema.examples import run_query
from schema.models import Crawl, Run

ITALIAN = (  # (measure, description, share of)
    ("domains", "domains", None),
    ("unique_mx", "unique MX hosts (probed)", None),
    ("mx_with_starttls", "MX with STARTTLS", "unique_mx"),
    ("domains_covered", "domains they cover", "domains"),
    ("connection_errors", "connection errors", "unique_mx"),
    ("no_starttls", "no STARTTLS", "unique_mx"),
    ("not_probed", "not probed (no address, or every address skipped)", None),
)


def build(engine: Engine, run: RunRef, database: str) -> Report:
    """Every table of the report for one run; `engine` is a snapshot (reports/snapshot.py)."""
    info = run_table(engine, run.id)
    support = protocols.tables(engine, run.id)  # none without -a depth=protocols
    tables = [
        info,
        crawls_table(engine, run.id),
        table(
            "domain_status",
            "Domains by DNS status",
            [Column("status", "status"), Column("domains", "domains", "count")],
            sql.rows(engine, sql.DOMAIN_STATUS, run=run.id),
        ),
        italian_table(run_query(engine, "italian_table", run.id)),
        figure1_table(
            run_query(engine, "figure1_categories", run.id),
            sql.rows(engine, sql.FIGURE1_APART, run=run.id),
            weighted=bool(info.rows[0]["weighted_domains"]),
        ),
        figure2_table(run_query(engine, "figure2_reasons", run.id)),
        table(
            "key_sizes",
            "Certificates' key size (leaf key of the certificates seen with TLS)",
            [
                Column("key_type", "key type"),
                Column("key_bits", "bits", "count"),
                Column("mx_hosts", "MX hosts", "count"),
                Column("ips", "IPs", "count"),
            ],
            run_query(engine, "key_sizes", run.id),
            "A host whose addresses present different keys counts under each.",
        ),
        table(
            "verification_results",
            "Certificate verification results (targets with TLS)",
            [
                Column("result", "result"),
                Column("targets", "targets", "count"),
                Column("mx_hosts", "MX hosts", "count"),
            ],
            run_query(engine, "verification_results", run.id),
            "'ok' passed strict validation; otherwise the combination of reasons.",
        ),
        with_shares(
            "protocol_versions",
            "Negotiated protocol versions (per IP)",
            [Column("tls_version", "version"), Column("ips", "IPs", "count")],
            run_query(engine, "protocol_versions", run.id),
            "ips",
            "" if support else protocols.HOW,
        ),
        ciphers_table(run_query(engine, "cipher_suites", run.id)),
        table(
            "forward_secrecy",
            "Forward secrecy (Facebook's Figure 4; IPs with a TLS session)",
            [
                Column("ips_with_tls", "IPs with TLS", "count"),
                Column("with_forward_secrecy", "with forward secrecy", "count"),
                Column("share", "share", "share"),
            ],
            run_query(engine, "forward_secrecy", run.id),
        ),
        *support,
        table(
            "connection_errors",
            "Connection errors (targets that never said whether they offer STARTTLS)",
            [
                Column("error", "error"),
                Column("error_stage", "stage"),
                Column("targets", "targets", "count"),
                Column("mx_hosts", "MX hosts", "count"),
                Column("ips", "IPs", "count"),
            ],
            run_query(engine, "connection_errors", run.id),
        ),
        *labels.tables(engine, run.id),
        *policy.tables(engine, run.id),  # -a depth=policy runs only
    ]
    return Report(
        f"mxcensus report: {run}",
        f"database {database}; run created {info.rows[0]['created_at']}",
        tuple(tables),
    )


def run_table(engine: Engine, run_id: int) -> Table:
    rows = sql.rows(engine, sql.RUN, run=run_id)
    with engine.connect() as conn:  # through the model: a datetime on every backend
        created = conn.execute(select(Run.created_at).where(Run.id == run_id)).scalar_one()
    return table(
        "run",
        "Run",
        [
            Column("run_id", "run", "count"),
            Column("name", "name"),
            Column("created_at", "created"),
            Column("crawls", "crawls", "count"),
            Column("domains", "domains", "count"),
            Column("labels", "labels", "count"),
            Column("weighted_domains", "weighted domains", "count"),
        ],
        [{**row, "created_at": created} for row in rows],
    )


def crawls_table(engine: Engine, run_id: int) -> Table:
    columns = (Crawl.id, Crawl.status, Crawl.started_at, Crawl.finished_at, Crawl.source)
    with engine.connect() as conn:  # through the model: JSON comes back parsed
        crawls = conn.execute(
            select(*columns, Crawl.shard, Crawl.counts)
            .where(Crawl.run_id == run_id)
            .order_by(Crawl.id)
        ).mappings()
        rows = [
            {
                "crawl": c["id"],
                "status": c["status"],
                "started": c["started_at"],
                "finished": c["finished_at"],
                "source": c["source"],
                "shard": c["shard"],
                **{k: ((c["counts"] or {}).get("list") or {}).get(k) for k in LIST_COUNTS},
            }
            for c in crawls
        ]
    return table(
        "crawls",
        "Crawls of this run",
        [
            Column("crawl", "crawl", "count"),
            Column("status", "status"),
            Column("started", "started"),
            Column("finished", "finished"),
            Column("source", "list"),
            Column("shard", "shard"),
            Column("entries", "domains", "count"),
            Column("invalid", "invalid lines", "count"),
            Column("duplicates", "duplicates", "count"),
        ],
        rows,
    )


LIST_COUNTS = ("entries", "invalid", "duplicates")


def italian_table(result: list[dict[str, Any]]) -> Table:
    (row,) = result
    return table(
        "italian_table",
        "STARTTLS support on MX hosts (the Italian government study's table)",
        [
            Column("measure", "measure", shown=False),
            Column("description", ""),
            Column("n", "n", "count"),
            Column("share", "share", "share"),
        ],
        (
            {
                "measure": m,
                "description": d,
                "n": row[m],
                "share": share(row[m], row[of]) if of else None,
            }
            for m, d, of in ITALIAN
        ),
        "Shares of the unique MX hosts probed; 'domains they cover' (domains with at least "
        "one MX host offering STARTTLS) of all domains. MX with STARTTLS + connection errors "
        "+ no STARTTLS = unique MX hosts.",
    )


def figure1_table(
    categories: list[dict[str, Any]], apart: list[dict[str, Any]], weighted: bool
) -> Table:
    units = [u for u in UNITS if weighted or u != "all_email"]
    excluded = {r["unit"]: r for r in apart}
    rows = [
        {
            "unit": u,
            "title": UNITS[u],
            **pivot_categories([r for r in categories if r["unit"] == u]),
            **{k: (excluded.get(u) or {}).get(k) for k in ("error", "not_probed", "not_ok")},
        }
        for u in units
    ]
    return table(
        "figure1",
        "Strict / Opportunistic / Failure / None (Facebook's Figure 1)",
        [
            Column("unit", "unit", shown=False),
            Column("title", ""),
            *category_columns("number"),
            Column("counted", "counted", "number"),
            Column("error", "error", "number"),
            Column("not_probed", "not probed", "number"),
            Column("not_ok", "no MX (DNS)", "number"),
        ],
        rows,
        "Domains count their primary (lowest-preference) MX hosts' worst category; 'All "
        "email' sums the list's weights under it. Shares are of the units in the four "
        "categories; error (no answer), not probed and domains without a usable MX (DNS "
        "status not ok) are counted apart.",
    )


def figure2_table(result: list[dict[str, Any]]) -> Table:
    reasons = sorted(
        {r["reasons"] for r in result},
        key=lambda reason: (-sum(r["n"] for r in result if r["reasons"] == reason), reason),
    )
    cell = {(r["unit"], r["reasons"]): r for r in result}
    rows = [
        {
            "reasons": reason,
            **{
                f"{column}{suffix}": (cell.get((unit, reason)) or {}).get(key, 0)
                for unit, column in (("mx_host", "mx_hosts"), ("ip", "ips"))
                for suffix, key in (("", "n"), ("_share", "share"))
            },
        }
        for reason in reasons
    ]
    return table(
        "figure2",
        "Why strict validation failed (Facebook's Figure 2; opportunistic units)",
        [
            Column("reasons", "reasons"),
            Column("mx_hosts", "MX hosts", "count"),
            Column("mx_hosts_share", "MX hosts %", "share"),
            Column("ips", "IPs", "count"),
            Column("ips_share", "IPs %", "share"),
        ],
        rows,
        "Shares of the opportunistic MX hosts / IPs; one combination of reasons per unit.",
    )


def ciphers_table(result: list[dict[str, Any]]) -> Table:
    ips = {r["cipher"]: r["n"] for r in result if r["unit"] == "ip"}
    hosts = {r["cipher"]: r["n"] for r in result if r["unit"] == "mx_host"}
    total = sum(ips.values())
    ciphers = sorted(ips.keys() | hosts.keys(), key=lambda c: (-ips.get(c, 0), c))
    return table(
        "cipher_suites",
        "Negotiated cipher suites (Facebook's Figure 3)",
        [
            Column("cipher", "cipher suite"),
            Column("ips", "IPs", "count"),
            Column("ips_share", "IPs %", "share"),
            Column("mx_hosts", "MX hosts", "count"),
        ],
        (
            {
                "cipher": c,
                "ips": ips.get(c, 0),
                "ips_share": share(ips.get(c, 0), total),
                "mx_hosts": hosts.get(c, 0),
            }
            for c in ciphers
        ),
        "An IP counts its first probe's session; an MX host counts once per cipher suite "
        "its addresses negotiated.",
    )


def with_shares(
    name: str,
    title: str,
    columns: list[Column],
    result: list[dict[str, Any]],
    of: str,
    note: str = "",
) -> Table:
    total = sum(r[of] or 0 for r in result)
    return table(
        name,
        title,
        [*columns, Column("share", "share", "share")],
        ({**r, "share": share(r[of], total)} for r in result),
        note,
    )
