"""The report's section on protection against downgrade (`-a depth=policy`, issue 12):
adoption of DNSSEC, DANE, MTA-STS (by mode) and TLS-RPT, and the share of domains (and,
with weights, of mail) protected against STARTTLS downgrade, by label, so national lists
compare as in the Italian study's chart.

schema/queries/policy_adoption.sql and mx_dane_status.sql answer the tables; a run
without a policy crawl has none of them, and the report shows no such section.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from sqlalchemy import Engine

from reports.table import Column, Report, Table, share, table
from schema.examples import run_query

# (column, title) of what is adopted, in the chart's order.
MEASURES = (
    ("dnssec", "DNSSEC"),
    ("dane_all", "DANE (every MX)"),
    ("mta_sts_enforce", "MTA-STS enforce"),
    ("tls_rpt_valid", "TLS-RPT"),
    ("protected", "protected against downgrade"),
)
COUNTS = (
    "dnssec",
    "dane_all",
    "dane_partial",
    "mta_sts_enforce",
    "mta_sts_testing",
    "mta_sts_none",
    "mta_sts_invalid",
    "tls_rpt_valid",
    "tls_rpt_invalid",
    "protected",
    "dnssec_unknown",
)
ANCHOR = "policy"
TITLE = "Protection against downgrade: DNSSEC, DANE, MTA-STS, TLS-RPT"
TABLES = ("policy_adoption", "policy_totals", "mx_dane_status")
INTRO = (
    "STARTTLS alone can be stripped by anyone on the path; a domain is <b>protected against "
    "downgrade</b> when it tells senders to insist: DANE on every MX host (TLSA records under "
    "DNSSEC, RFC 7672, each probed target matching them), or an MTA-STS policy in enforce mode "
    "(RFC 8461) naming every MX host, whose targets are all strict. DNSSEC is the AD bit of "
    "the crawl's validating resolver; without one the DNSSEC and DANE counts are unknown."
)


def tables(engine: Engine, run_id: int) -> list[Table]:
    """The section's tables; none when the run has no policy crawl."""
    rows = run_query(engine, "policy_adoption", run_id)
    if not rows:
        return []
    total: dict[str, Any] = {"label": "(all labels)"}
    for key in ("domains", *COUNTS, "weight", "protected_weight"):
        values = [r[key] for r in rows if r[key] is not None]
        total[key] = sum(values) if values else None
    return [
        adoption_table("policy_adoption", "Downgrade protection by label", rows),
        adoption_table("policy_totals", "Downgrade protection (all domains)", [total]),
        table(
            "mx_dane_status",
            "MX hosts by TLSA status, and the DANE verdicts of their targets",
            [
                Column("tlsa_status", "TLSA status"),
                Column("mx_hosts", "MX hosts", "count"),
                Column("targets_valid", "targets DANE-valid", "count"),
                Column("targets_mismatch", "targets DANE mismatch", "count"),
            ],
            run_query(engine, "mx_dane_status", run_id),
            "An empty status: the crawl's resolver did not validate (DNS_NAMESERVERS).",
        ),
    ]


def adoption_table(name: str, title: str, rows: list[dict[str, Any]]) -> Table:
    shaped = []
    for row in rows:
        shaped.append(
            {
                **row,
                **{f"{key}_share": share(row[key], row["domains"]) for key, _ in MEASURES},
                "protected_weight_share": share(row["protected_weight"], row["weight"]),
            }
        )
    columns = [Column("label", "label"), Column("domains", "domains", "count")]
    for key, label in MEASURES:
        columns += [Column(key, label, "count"), Column(f"{key}_share", "%", "share")]
    columns += [
        Column("dane_partial", "DANE (some MX)", "count"),
        Column("mta_sts_testing", "MTA-STS testing", "count"),
        Column("mta_sts_none", "MTA-STS none", "count"),
        Column("mta_sts_invalid", "MTA-STS invalid", "count"),
        Column("tls_rpt_invalid", "TLS-RPT invalid", "count"),
        Column("dnssec_unknown", "DNSSEC unknown", "count"),
        Column("protected_weight_share", "protected, weighted %", "share"),
    ]
    return table(
        name,
        title,
        columns,
        shaped,
        "Shares of the label's domains; weighted: of the weight of its weighted domains.",
    )


def chart(report: Report) -> Figure | None:
    """Adoption per label: grouped bars of each measure's share of the domains (and the
    weighted share protected, when the list has weights)."""
    from reports.charts import _grid, figure  # the report's chart style

    if "policy_adoption" not in report:
        return None
    rows = report["policy_adoption"].rows[:25]
    series = [(f"{key}_share", title) for key, title in MEASURES]
    if any(r["protected_weight_share"] is not None for r in rows):
        series.append(("protected_weight_share", "protected, weighted by mail"))
    fig = figure(3.4)
    ax = fig.axes[0]
    width = 0.8 / len(series)
    colours = ("#2f855a", "#2b6cb0", "#805ad5", "#b7791f", "#c53030", "#feb2b2")
    xs = list(range(len(rows)))
    for k, (key, title) in enumerate(series):
        shares = [r[key] or 0.0 for r in rows]
        offset = (k - (len(series) - 1) / 2) * width
        bars = ax.bar([x + offset for x in xs], shares, width, color=colours[k], label=title)
        ax.bar_label(bars, labels=[f"{100 * s:.0f}%" for s in shares], padding=2, fontsize=7)
    ax.set_xticks(xs, ["(no label)" if r["label"] is None else r["label"] for r in rows])
    ax.yaxis.set_major_formatter(lambda y, _: f"{100 * y:.0f}%")
    ax.set_ylim(0, 1.2)
    _grid(ax, "y", counts=False)
    ax.legend(loc="upper left", ncols=3, frameon=False, fontsize=8)
    ax.set_title("Downgrade protection by label (share of domains)")
    return fig


CHARTS = {"policy": chart}  # reports/html.py draws it beside the report's own
