"""The report's charts, drawn with matplotlib from the report's tables (so every number on
a chart is also in a table). One function per chart; each returns a Figure, or None when
its table is empty. No pyplot: figures are plain objects on the Agg canvas, never a display.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: never a display

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.palette import ACCENT, CATEGORIES, COLOURS, SECOND, TITLES, UNITS
from reports.table import Report, Table

matplotlib.rcParams.update(
    {
        "font.family": "DejaVu Sans",  # shipped with matplotlib: same look everywhere
        "font.size": 9.5,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.edgecolor": "#888888",
        "axes.axisbelow": True,
        "svg.hashsalt": "mxcensus",  # reproducible output
    }
)
WIDTH = 10.0  # inches; the page shows charts 1000 px wide at 100 dpi


def figure(height: float, columns: int = 1, ratios: Sequence[float] | None = None) -> Figure:
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(1, columns, width_ratios=ratios) if columns > 1 else fig.subplots()
    return fig


def pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}%"


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _grid(ax: Axes, axis: str, counts: bool = True) -> None:
    ax.grid(axis=axis, color="#e5e5e5", linewidth=0.8)
    if counts:  # whole units: no 0.2-host ticks
        (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def _barh_labels(ax: Axes, bars: Any, labels: Sequence[str]) -> None:
    ax.bar_label(bars, labels=labels, padding=3, fontsize=8.5)
    ax.margins(x=0.18)


# -- the charts -------------------------------------------------------------------------------


def starttls_mx(report: Report) -> Figure | None:
    """The Italian table as bars: MX hosts by STARTTLS support, and the domains they cover."""
    t = report["italian_table"]
    n = {r["measure"]: r for r in t.rows}
    if not n["unique_mx"]["n"] and not n["not_probed"]["n"]:
        return None
    fig = figure(3.2, 2, ratios=[2.2, 1])
    left, right = fig.axes
    hosts = [
        ("unique_mx", "unique MX hosts", ACCENT),
        ("mx_with_starttls", "with STARTTLS", COLOURS["strict"]),
        ("no_starttls", "no STARTTLS", COLOURS["none"]),
        ("connection_errors", "connection errors", COLOURS["error"]),
        ("not_probed", "not probed", COLOURS["not_probed"]),
    ]
    _bars(left, hosts, n)
    left.set_title("STARTTLS support on MX hosts")
    _bars(
        right,
        [("domains", "domains", ACCENT), ("domains_covered", "with STARTTLS", COLOURS["strict"])],
        n,
    )
    right.set_title("Domains they cover")
    return fig


def _bars(ax: Axes, items: list[tuple[str, str, str]], rows: dict[str, dict[str, Any]]) -> None:
    items = items[::-1]  # top to bottom
    values = [rows[m]["n"] for m, _, _ in items]
    bars = ax.barh([t for _, t, _ in items], values, color=[c for *_, c in items], height=0.6)
    labels = [
        number(v) + (f"  ({pct(rows[m]['share'])})" if rows[m]["share"] is not None else "")
        for v, (m, _, _) in zip(values, items, strict=True)
    ]
    _barh_labels(ax, bars, labels)
    _grid(ax, "x")


def figure1(report: Report) -> Figure | None:
    """Facebook's Figure 1: 100 % stacked bars of the four categories per unit."""
    rows = [r for r in report["figure1"].rows if r["counted"]]
    if not rows:
        return None
    fig = figure(4.2)
    ax = fig.axes[0]
    _stacked(ax, [UNITS[r["unit"]] for r in rows], rows)
    ax.set_title("STARTTLS results by unit (Figure 1)")
    for i, r in enumerate(rows):
        ax.annotate(
            f"n = {number(r['counted'])}",
            (i, 1.0),
            xytext=(0, 4),
            ha="center",
            textcoords="offset points",
            fontsize=8.5,
            color="#444444",
        )
    ax.set_ylim(0, 1.08)
    return fig


def _stacked(
    ax: Axes,
    names: list[str],
    rows: list[dict[str, Any]],
    width: float = 0.6,
    xs: list[float] | None = None,
) -> None:
    """Vertical 100 % stacked bars, strict at the bottom, the share printed inside."""
    bottom = [0.0] * len(rows)
    xs = xs if xs is not None else [float(i) for i in range(len(rows))]
    ax.set_xticks(xs, names)
    for category in CATEGORIES:
        shares = [r[f"{category}_share"] or 0.0 for r in rows]
        bars = ax.bar(
            xs,
            shares,
            width,
            bottom=bottom,
            color=COLOURS[category],
            label=TITLES[category],
            edgecolor="white",
            linewidth=0.6,
        )
        ax.bar_label(
            bars,
            labels=[pct(s) if s >= 0.04 else "" for s in shares],
            label_type="center",
            fontsize=8.5,
            color="white" if category == "strict" else "#222222",
        )
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.yaxis.set_major_formatter(lambda y, _: f"{100 * y:.0f}%")
    ax.set_ylim(0, 1)
    _grid(ax, "y", counts=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def figure2(report: Report) -> Figure | None:
    """Facebook's Figure 2: reasons strict validation failed, share of opportunistic units."""
    rows = report["figure2"].rows
    if not rows:
        return None
    fig = figure(0.9 + 0.42 * len(rows))
    ax = fig.axes[0]
    _paired(
        ax,
        [r["reasons"].replace(",", " + ") for r in rows],
        rows,
        [("mx_hosts", "MX hosts", ACCENT), ("ips", "IPs", SECOND)],
    )
    ax.xaxis.set_major_formatter(lambda x, _: f"{100 * x:.0f}%")
    ax.set_title("Why strict validation failed (Figure 2): share of opportunistic units")
    return fig


def _paired(
    ax: Axes,
    names: list[str],
    rows: Sequence[dict[str, Any]],
    series: list[tuple[str, str, str]],
    legend: str = "lower right",
) -> None:
    """Horizontal grouped bars of `{key}_share`, first row at the top, 'n (x%)' labels
    ('untestable' where a row's count is None: no bar, not 0 %)."""
    height = 0.8 / len(series)
    ys = list(range(len(rows)))[::-1]
    for k, (key, title, colour) in enumerate(series):
        offset = (len(series) - 1) / 2 * height - k * height
        shares = [r[f"{key}_share"] or 0.0 for r in rows]
        bars = ax.barh([y + offset for y in ys], shares, height, color=colour, label=title)
        labels = [
            "untestable" if r[key] is None else f"{r[key]} ({pct(r[f'{key}_share'])})" for r in rows
        ]
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
    ax.set_yticks(ys, names)
    ax.margins(x=0.2)
    _grid(ax, "x", counts=False)
    ax.legend(loc=legend, frameon=False)


def certificates(report: Report) -> Figure | None:
    """Key sizes (per MX host) and verification results (per target)."""
    keys, results = report["key_sizes"].rows, report["verification_results"].rows
    if not keys and not results:
        return None
    fig = figure(0.9 + 0.34 * max(len(keys), len(results), 3), 2, ratios=[1, 1.4])
    left, right = fig.axes
    names = [f"{r['key_type'] or '?'} {r['key_bits'] or ''}".strip() for r in keys][::-1]
    weak = [_weak(r) for r in keys][::-1]
    bars = left.barh(
        names,
        [r["mx_hosts"] for r in keys][::-1],
        height=0.6,
        color=[COLOURS["failure"] if w else ACCENT for w in weak],
    )
    _barh_labels(left, bars, [str(r["mx_hosts"]) for r in keys][::-1])
    left.set_title("Leaf key size (MX hosts)")
    _grid(left, "x")
    colours = [COLOURS["strict" if r["result"] == "ok" else "opportunistic"] for r in results]
    bars = right.barh(
        [r["result"].replace(",", " + ") for r in results][::-1],
        [r["targets"] for r in results][::-1],
        height=0.6,
        color=colours[::-1],
    )
    _barh_labels(right, bars, [str(r["targets"]) for r in results][::-1])
    right.set_title("Verification results (targets)")
    _grid(right, "x")
    return fig


def _weak(row: dict[str, Any]) -> bool:
    """docs/design.md's weak_key: RSA/DSA under 2048 bits, EC under 224."""
    bits = row["key_bits"] or 0
    return (row["key_type"] in ("RSA", "DSA") and bits < 2048) or (
        row["key_type"] == "EC" and bits < 224
    )


def protocols(report: Report) -> Figure | None:
    rows = report["protocol_versions"].rows
    if not rows:
        return None
    fig = figure(2.8)
    ax = fig.axes[0]
    modern = {"TLSv1.2": COLOURS["opportunistic"], "TLSv1.3": COLOURS["strict"]}
    bars = ax.bar(
        [r["tls_version"] for r in rows],
        [r["ips"] for r in rows],
        width=0.55,
        color=[modern.get(r["tls_version"], COLOURS["failure"]) for r in rows],
    )
    ax.bar_label(bars, labels=[f"{r['ips']} ({pct(r['share'])})" for r in rows], padding=3)
    ax.margins(y=0.2)
    _grid(ax, "y")
    ax.set_title("Negotiated protocol versions (IPs)")
    return fig


def protocol_support(report: Report) -> Figure | None:
    """The Italian study's "Protocols support" (`-a depth=protocols`): per version, the
    share of the STARTTLS MX hosts and IPs tried that accept it, and those accepting none
    (an untestable version is said, never drawn as 0 %). Beside it, each MX host's
    highest and lowest accepted version."""
    if "protocol_support" not in report:
        return None
    hosts = {r["measure"]: r for r in report["protocol_hosts"].rows}
    if not hosts["tried"]["ip"]:
        return None  # the depth ran, but no IP advertised STARTTLS
    support = report["protocol_support"].rows
    # One bar pair per version (hosts accepting it), then the hosts accepting none.
    rows = [
        {
            "mx_host": r["mx_host_supported"],
            "mx_host_share": r["mx_host_share"],
            "ip": r["ip_supported"],
            "ip_share": r["ip_share"],
        }
        for r in support
    ]
    none = hosts["accept_none"]
    rows.append({k: none[k] for k in ("mx_host", "mx_host_share", "ip", "ip_share")})
    names = [r["version"] for r in support] + ["accept none"]
    fig = figure(0.9 + 0.42 * len(rows), 2, ratios=[1.3, 1])
    left, right = fig.axes
    _paired(left, names, rows, [("mx_host", "MX hosts", ACCENT), ("ip", "IPs", SECOND)])
    left.xaxis.set_major_formatter(lambda x, _: f"{100 * x:.0f}%")
    left.set_title("Protocol support among STARTTLS hosts")
    ranges = [r for r in report["protocol_range"].rows if r["mx_host_highest"] is not None]
    _paired(
        right,
        [r["version"] for r in ranges],
        ranges,
        [("mx_host_highest", "highest", ACCENT), ("mx_host_lowest", "lowest", SECOND)],
        legend="center right",
    )
    right.xaxis.set_major_formatter(lambda x, _: f"{100 * x:.0f}%")
    right.set_title("Highest and lowest version (MX hosts)")
    return fig


def ciphers(report: Report) -> Figure | None:
    """Cipher suites per IP (Figure 3), and forward secrecy (Figure 4)."""
    rows = report["cipher_suites"].rows[:15]
    (fs,) = report["forward_secrecy"].rows
    if not rows:
        return None
    fig = figure(1.0 + 0.36 * max(len(rows), 3), 2, ratios=[2.2, 1])
    left, right = fig.axes
    bars = left.barh(
        [r["cipher"] for r in rows][::-1], [r["ips"] for r in rows][::-1], height=0.6, color=ACCENT
    )
    _barh_labels(left, bars, [f"{r['ips']} ({pct(r['ips_share'])})" for r in rows][::-1])
    left.set_title("Negotiated cipher suites (IPs)")
    _grid(left, "x")
    with_fs = fs["with_forward_secrecy"] or 0
    without = (fs["ips_with_tls"] or 0) - with_fs
    share = fs["share"]
    bars = right.bar(
        ["forward\nsecrecy", "none"],
        [with_fs, without],
        width=0.55,
        color=[COLOURS["strict"], COLOURS["failure"]],
    )
    right.bar_label(
        bars,
        labels=[
            f"{with_fs} ({pct(share)})",
            f"{without} ({pct(None if share is None else 1 - share)})",
        ],
        padding=3,
    )
    right.margins(y=0.2)
    _grid(right, "y")
    right.set_title("Forward secrecy (IPs)")
    return fig


def errors(report: Report) -> Figure | None:
    rows = report["connection_errors"].rows
    if not rows:
        return None
    fig = figure(0.9 + 0.32 * len(rows))
    ax = fig.axes[0]
    names = [f"{r['error']} ({r['error_stage']})" for r in rows][::-1]
    bars = ax.barh(names, [r["targets"] for r in rows][::-1], height=0.6, color=COLOURS["error"])
    _barh_labels(ax, bars, [str(r["targets"]) for r in rows][::-1])
    _grid(ax, "x")
    ax.set_title("Connection errors by code and stage (targets)")
    return fig


MAX_LABELS = 25


def labels(report: Report) -> Figure | None:
    """The Italian study's comparison with EU neighbours: one bar group per label."""
    rows = report["labels"].rows[:MAX_LABELS]
    cats = [r for r in report["label_categories"].rows if r["unit"] == "domain"][:MAX_LABELS]
    if not rows:
        return None
    names = [_label(r["label"]) for r in rows]
    fig = figure(3.6, 2, ratios=[1.25, 1])
    left, right = fig.axes
    width = 0.38
    xs = list(range(len(rows)))
    for k, (key, title, colour) in enumerate(
        [("mx_share", "MX hosts with STARTTLS", ACCENT), ("domains_share", "domains", SECOND)]
    ):
        shares = [r[key] or 0.0 for r in rows]
        bars = left.bar(
            [x + (k - 0.5) * width for x in xs], shares, width, color=colour, label=title
        )
        left.bar_label(  # upright when many labels: two decimals need the room
            bars,
            labels=[pct(s) for s in shares],
            padding=2,
            fontsize=7.5,
            rotation=90 if len(rows) > 6 else 0,
        )
    left.set_xticks(xs, names)
    left.yaxis.set_major_formatter(lambda y, _: f"{100 * y:.0f}%")
    left.set_ylim(0, 1.42 if len(rows) > 6 else 1.15)  # room for the legend
    _grid(left, "y", counts=False)
    left.legend(loc="upper left", ncols=2, frameon=False)
    left.set_title("STARTTLS by label")
    _stacked(right, [_label(r["label"]) for r in cats], cats, width=0.65)
    right.set_title("Domains by category (primary MX)")
    return fig


def _label(label: str | None) -> str:
    return "(no label)" if label is None else label


def compare_figure1(report: Report) -> Figure | None:
    """Figure 1 then and now: a pair of 100 % stacked bars per unit, pairs apart."""
    t: Table = report["figure1"]
    bars, names, xs = [], [], []
    for group, unit in enumerate(dict.fromkeys(r["unit"] for r in t.rows)):
        cells = {r["category"]: r for r in t.rows if r["unit"] == unit}
        for k, (side, title) in enumerate((("a", "then"), ("b", "now"))):
            if all(cells[c][f"{side}_share"] is None for c in CATEGORIES):
                continue  # a run without this unit (no weights: no "all email")
            bars.append({f"{c}_share": cells[c][f"{side}_share"] for c in CATEGORIES})
            names.append(f"{title}\n{UNITS[unit].split(' (')[0]}")
            xs.append(group * 2.6 + k)
    if not bars:
        return None
    fig = figure(4.2)
    _stacked(fig.axes[0], names, bars, width=0.8, xs=xs)
    fig.axes[0].set_title("Figure 1, then and now")
    return fig


# Chart file stem -> the function drawing it from the report's tables.
Chart = Callable[[Report], Figure | None]
REPORT_CHARTS: dict[str, Chart] = {
    "starttls_mx": starttls_mx,
    "figure1": figure1,
    "figure2": figure2,
    "certificates": certificates,
    "protocols": protocols,
    "protocol_support": protocol_support,
    "ciphers": ciphers,
    "errors": errors,
    "labels": labels,
}
COMPARE_CHARTS: dict[str, Chart] = {"compare_figure1": compare_figure1}
