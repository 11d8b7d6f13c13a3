"""Protocol support among STARTTLS hosts (the Italian study's "Protocols support" chart),
from a crawl with `-a depth=protocols` (the `ip_protocols` view): which TLS versions the
MX hosts and IPs accept, the highest and lowest each accepts, the cipher suite picked at
each version and its forward secrecy.

A host accepts a version when any of its IPs does, and counts under every version it
accepts. `untestable` (the scanner's OpenSSL cannot offer the version: no connection was
made) is shown as such, never as 0 %. A run without the depth has none of these tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from reports import sql
from reports.table import Column, Kind, Table, share, table
from schema.examples import run_query
from schema.vocab import TlsVersion

VERSIONS = tuple(str(v) for v in TlsVersion)  # oldest first
UNITS = ("mx_host", "ip")
SHORT = {"mx_host": "MX", "ip": "IPs"}  # in column titles
HOW = (
    "Which TLS versions each server accepts, not just the best one: crawl with -a depth=protocols."
)


def has_data(engine: Engine, run_id: int) -> bool:
    """A crawl of the run ran with depth=protocols, or the run holds protocol rows."""
    (row,) = sql.rows(engine, sql.PROTOCOL_DEPTH, run=run_id)
    return bool(row["n"])


def tables(engine: Engine, run_id: int) -> list[Table]:
    if not has_data(engine, run_id):
        return []
    support = support_table(run_query(engine, "protocol_support", run_id))
    untestable = {r["version"] for r in support.rows if r["tested"] == "untestable"}
    return [
        support,
        units_table(sql.rows(engine, sql.PROTOCOL_UNITS, run=run_id)),
        range_table(sql.rows(engine, sql.PROTOCOL_RANGE, run=run_id), untestable),
        ciphers_table(sql.rows(engine, sql.PROTOCOL_CIPHERS, run=run_id)),
        forward_secrecy_table(
            sql.rows(engine, sql.PROTOCOL_FORWARD_SECRECY, run=run_id), untestable
        ),
    ]


def per_unit(*columns: tuple[str, str, Kind]) -> list[Column]:
    """The same columns for MX hosts, then IPs: `{unit}_{key}`, `{unit}` in a title
    naming the unit."""
    return [
        Column(f"{unit}_{key}", title.format(unit=short), kind)
        for unit, short in SHORT.items()
        for key, title, kind in columns
    ]


def tested(tried: int, untestable: int) -> str:
    """How a version was measured: `tested`, `untestable` (no unit could be offered it),
    `partly untestable` (shards of a run on scanners with different OpenSSL builds), or
    `not tried` (no row at all: no IP advertised STARTTLS)."""
    if tried and untestable:
        return "partly untestable"
    if untestable:
        return "untestable"
    return "tested" if tried else "not tried"


def support_table(result: list[dict[str, Any]]) -> Table:
    cell = {(r["unit"], r["version"]): r for r in result}
    rows = []
    for version in VERSIONS:
        row: dict[str, Any] = {"version": version}
        tries = untestable = 0
        for unit in UNITS:
            r = cell.get((unit, version)) or {}
            tried = int(r.get("tried") or 0)
            tries += tried
            untestable += int(r.get("untestable") or 0)
            # Untestable (or untried): no count at all, so it never reads as 0 %.
            for key in ("tried", "supported", "not_supported", "error"):
                row[f"{unit}_{key}"] = r.get(key) if tried else None
            row[f"{unit}_share"] = share(r.get("supported"), tried)
        row["tested"] = tested(tries, untestable)
        rows.append(row)
    columns = [
        Column("version", "version"),
        Column("tested", ""),
        *per_unit(
            ("tried", "{unit} tried", "count"),
            ("supported", "accept", "count"),
            ("share", "%", "share"),
            ("not_supported", "refuse", "count"),
            ("error", "error", "count"),
        ),
    ]
    return table(
        "protocol_support",
        "Protocol support among STARTTLS hosts (the Italian study's chart)",
        columns,
        rows,
        "One conversation pinned to each version per IP that advertised STARTTLS "
        "(-a depth=protocols). An MX host accepts a version when any of its IPs does and "
        "counts under every version it accepts; shares are of the hosts / IPs tried at that "
        "version. 'refuse': no handshake came of the pinned ClientHello; 'error': the "
        "conversation failed before the 220 to STARTTLS, or timed out. An untestable "
        "version is one this scanner's OpenSSL cannot offer: no connection, no count.",
    )


UNIT_MEASURES = (  # (measure, description, share of)
    ("starttls", "advertise STARTTLS", None),
    ("tried", "tried, one conversation per version", "starttls"),
    ("accept_any", "accept at least one version", "tried"),
    ("accept_none", "accept none", "tried"),
    ("refuse_all", "accept none: refuse every version tried", "tried"),
    ("no_answer", "accept none: no answer (every conversation failed before TLS)", "tried"),
)


def units_table(result: list[dict[str, Any]]) -> Table:
    by_unit = {r["unit"]: r for r in result}
    for r in by_unit.values():
        r["accept_none"] = (r["tried"] or 0) - (r["accept_any"] or 0)
    rows = []
    for measure, description, of in UNIT_MEASURES:
        row: dict[str, Any] = {"measure": measure, "description": description}
        for unit in UNITS:
            n = by_unit[unit]
            row[unit] = n[measure]
            row[f"{unit}_share"] = share(n[measure], n[of]) if of else None
        rows.append(row)
    return table(
        "protocol_hosts",
        "STARTTLS hosts tried for protocol support, and those that accept no version",
        [
            Column("measure", "measure", shown=False),
            Column("description", ""),
            Column("mx_host", "MX hosts", "count"),
            Column("mx_host_share", "%", "share"),
            Column("ip", "IPs", "count"),
            Column("ip_share", "%", "share"),
        ],
        rows,
        "Shares of the units tried (of those advertising STARTTLS for 'tried'). A host that "
        "accepts none counts under no version above.",
    )


def range_table(result: list[dict[str, Any]], untestable: set[str]) -> Table:
    n = {(r["unit"], r["bound"], VERSIONS[int(r["version_rank"])]): r["n"] for r in result}
    totals = {
        (unit, bound): sum(v for (u, b, _), v in n.items() if (u, b) == (unit, bound))
        for unit in UNITS
        for bound in ("highest", "lowest")
    }
    rows = []
    for version in VERSIONS:
        row: dict[str, Any] = {"version": version}
        for unit in UNITS:
            for bound in ("highest", "lowest"):
                count = None if version in untestable else n.get((unit, bound, version), 0)
                row[f"{unit}_{bound}"] = count
                row[f"{unit}_{bound}_share"] = share(count, totals[unit, bound])
        rows.append(row)
    columns = [
        Column("version", "version"),
        *per_unit(
            ("highest", "{unit}: highest", "count"),
            ("highest_share", "%", "share"),
            ("lowest", "lowest", "count"),
            ("lowest_share", "%", "share"),
        ),
    ]
    return table(
        "protocol_range",
        "Highest and lowest version accepted",
        columns,
        rows,
        "Each MX host (over all its IPs) and each IP that accepts at least one version counts "
        "once under its highest and once under its lowest; shares of those units. An "
        "untestable version has no count.",
    )


def ciphers_table(result: list[dict[str, Any]]) -> Table:
    rank = {v: i for i, v in enumerate(VERSIONS)}
    totals: dict[str, int] = {}
    for r in result:
        totals[r["version"]] = totals.get(r["version"], 0) + r["ips"]
    rows = sorted(
        ({**r, "ips_share": share(r["ips"], totals[r["version"]])} for r in result),
        key=lambda r: (rank.get(r["version"], len(rank)), -r["ips"], r["cipher"] or ""),
    )
    return table(
        "protocol_ciphers",
        "Cipher suites picked at each version",
        [
            Column("version", "version"),
            Column("cipher", "cipher suite"),
            Column("forward_secrecy", "forward secrecy", "bool"),
            Column("ips", "IPs", "count"),
            Column("ips_share", "IPs %", "share"),
            Column("mx_hosts", "MX hosts", "count"),
        ],
        rows,
        "The suite each IP picked when offered the client's whole list at that version only; "
        "shares of the IPs that accept the version. An MX host counts once per suite its "
        "addresses picked.",
    )


def forward_secrecy_table(result: list[dict[str, Any]], untestable: set[str]) -> Table:
    cell = {(r["unit"], r["version"]): r for r in result}
    rows = []
    for version in VERSIONS:
        row: dict[str, Any] = {"version": version}
        for unit in UNITS:
            r = cell.get((unit, version)) or {}
            zero = None if version in untestable else 0  # untestable: no count, not 0
            row[f"{unit}_accept"] = r.get("n", zero)
            row[f"{unit}_fs"] = r.get("with_fs", zero)
            row[f"{unit}_fs_share"] = share(r.get("with_fs"), r.get("n"))
        rows.append(row)
    columns = [
        Column("version", "version"),
        *per_unit(
            ("accept", "{unit} accepting", "count"),
            ("fs", "forward secrecy", "count"),
            ("fs_share", "%", "share"),
        ),
    ]
    return table(
        "protocol_forward_secrecy",
        "Forward secrecy at each version",
        columns,
        rows,
        "Of the units accepting the version: an IP has forward secrecy at it when the suite "
        "it picked has (ECDHE, DHE, every TLS 1.3 suite); an MX host when every one of its "
        "IPs accepting the version does.",
    )
