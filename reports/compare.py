"""What changed between two runs of a list (the Italian study's "updated — and almost
unchanged — results"): the totals then and now, the units whose category changed, and
the MX hosts that appeared or vanished."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from reports import sql
from reports.palette import CATEGORIES, UNITS
from reports.runs import RunRef
from reports.table import Column, Report, Table, table
from reports.tables import ITALIAN, run_table
from schema.examples import run_query


def build(engine: Engine, a: RunRef, b: RunRef, database: str, limit: int | None) -> Report:
    """`engine` is a snapshot of both runs; `limit` caps each list of units (None: all)."""
    cap = -1 if limit is None else limit
    transitions = sql.rows(engine, sql.TRANSITIONS, a=a.id, b=b.id)
    changed = sql.rows(engine, sql.CHANGED, a=a.id, b=b.id, limit=cap)
    tables = [
        runs_table(engine, a, b),
        italian(run_query(engine, "italian_table", a.id), run_query(engine, "italian_table", b.id)),
        figure1(
            run_query(engine, "figure1_categories", a.id),
            run_query(engine, "figure1_categories", b.id),
        ),
        table(
            "coverage",
            "Units in both runs, or in one only",
            [
                Column("unit", "unit"),
                Column("both_runs", "in both", "count"),
                Column("only_a", f"only in run {a.id}", "count"),
                Column("only_b", f"only in run {b.id}", "count"),
            ],
            sql.rows(engine, sql.COVERAGE, a=a.id, b=b.id),
        ),
        table(
            "transitions",
            "Category changes (units in both runs), old → new",
            [
                Column("unit", "unit"),
                Column("old", f"run {a.id}"),
                Column("new", f"run {b.id}"),
                Column("n", "n", "count"),
            ],
            transitions,
            "Domains by their primary MX hosts' category. '-': no category (not probed, or "
            "the domain's DNS status is not ok).",
        ),
        table(
            "changed",
            "Units whose category changed",
            [
                Column("unit", "unit"),
                Column("name", "domain / MX host / IP"),
                Column("old", f"run {a.id}"),
                Column("new", f"run {b.id}"),
            ],
            changed,
            _capped(limit, sum(r["n"] for r in transitions), len(changed)),
        ),
        only_in(engine, "new_mx_hosts", "New MX hosts", b, a, limit),
        only_in(engine, "vanished_mx_hosts", "Vanished MX hosts", a, b, limit),
    ]
    return Report(
        f"mxcensus comparison: {a} → {b}",
        f"database {database}",
        tuple(tables),
        kind="compare",
    )


def _capped(limit: int | None, total: int, shown: int) -> str:
    if limit is None or shown >= total:
        return ""
    return f"{shown} of {total} shown (at most {limit} per unit); --format csv or json lists all."


def runs_table(engine: Engine, a: RunRef, b: RunRef) -> Table:
    first, second = run_table(engine, a.id), run_table(engine, b.id)
    return table(
        "runs",
        "The two runs",
        [Column("which", ""), *first.columns],
        [{"which": "then", **first.rows[0]}, {"which": "now", **second.rows[0]}],
    )


def italian(then: list[dict[str, Any]], now: list[dict[str, Any]]) -> Table:
    (x,), (y,) = then, now
    return table(
        "italian_table",
        "STARTTLS support on MX hosts, then and now",
        [
            Column("measure", "measure", shown=False),
            Column("description", ""),
            Column("a", "then", "count"),
            Column("b", "now", "count"),
            Column("change", "change", "count"),
        ],
        (
            {"measure": m, "description": d, "a": x[m], "b": y[m], "change": y[m] - x[m]}
            for m, d, _ in ITALIAN
        ),
    )


def figure1(then: list[dict[str, Any]], now: list[dict[str, Any]]) -> Table:
    a = {(r["unit"], r["category"]): r for r in then}
    b = {(r["unit"], r["category"]): r for r in now}
    units = [u for u in UNITS if _has(a, u) or _has(b, u)]
    rows = []
    for unit in units:
        for category in CATEGORIES:
            x, y = a.get((unit, category), {}), b.get((unit, category), {})
            # A unit a run has no count for (no weights: no "all email") stays empty.
            a_n, a_share = (x.get("n", 0), x.get("share", 0.0)) if _has(a, unit) else (None, None)
            b_n, b_share = (y.get("n", 0), y.get("share", 0.0)) if _has(b, unit) else (None, None)
            rows.append(
                {
                    "unit": unit,
                    "title": UNITS[unit],
                    "category": category,
                    "a_n": a_n,
                    "a_share": a_share,
                    "b_n": b_n,
                    "b_share": b_share,
                    "change": None
                    if a_share is None or b_share is None
                    else float(b_share) - float(a_share),
                }
            )
    return table(
        "figure1",
        "Figure 1 categories, then and now",
        [
            Column("unit", "unit", shown=False),
            Column("title", "unit"),
            Column("category", "category"),
            Column("a_n", "then", "number"),
            Column("a_share", "then %", "share"),
            Column("b_n", "now", "number"),
            Column("b_share", "now %", "share"),
            Column("change", "change (points)", "share"),
        ],
        rows,
    )


def _has(counts: dict[tuple[str, str], Any], unit: str) -> bool:
    return any(u == unit for u, _ in counts)


def only_in(
    engine: Engine, name: str, title: str, present: RunRef, absent: RunRef, limit: int | None
) -> Table:
    params = {"present": present.id, "absent": absent.id}
    found = sql.rows(engine, sql.MX_ONLY_IN, **params, limit=-1 if limit is None else limit)
    total = sql.rows(engine, sql.MX_ONLY_IN_COUNT, **params)[0]
    return table(
        name,
        f"{title}: named in run {present.id}, not in run {absent.id}",
        [
            Column("mx_host", "MX host"),
            Column("category", "category"),
            Column("ip_count", "IPs", "count"),
            Column("domains", "domains", "count"),
        ],
        found,
        _capped(limit, next(iter(total.values())), len(found)),
    )
