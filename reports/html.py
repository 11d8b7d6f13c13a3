"""The HTML report: DIR/index.html with inline CSS and no script, its charts as PNG files
beside it, referenced relatively, so the page works opened from disk with no network.
Every chart sits above the tables that hold its numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from reports import charts, policy
from reports.palette import COLOURS, TITLES
from reports.table import Column, Report, Table
from reports.text import cell

DPI = 150  # charts are 10 in wide: 1500 px, shown at 1000 px (sharp on high-density screens)


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    intro: str
    charts: tuple[str, ...]
    tables: tuple[str, ...]


CATEGORY_DEFINITIONS = (
    "<b>Strict</b>: TLS negotiated and the certificate passed strict validation (trusted chain, "
    "name matches the MX host, within its dates, key not weak). <b>Opportunistic</b>: TLS "
    "negotiated, the certificate failed strict validation. <b>Failure</b>: STARTTLS advertised, "
    "no TLS session came of it. <b>None</b>: STARTTLS not advertised. An IP counts the worst "
    "category of the names that reach it, an MX host the worst of its IPs, a domain the worst "
    "of its primary (lowest-preference) MX hosts."
)

RUN_SECTIONS = (
    Section("run", "The run", "", (), ("run", "crawls", "domain_status")),
    Section(
        "starttls",
        "STARTTLS support on MX hosts",
        "As in the Italian government survey: every unique MX host of the list, probed on each "
        "of its addresses. An MX host supports STARTTLS when it advertises it on at least one "
        "address; it is a connection error when no address answered.",
        ("starttls_mx",),
        ("italian_table",),
    ),
    Section(
        "figure1",
        "Strict, opportunistic, failure, none",
        "As in Facebook's report on the state of STARTTLS (Figure 1). " + CATEGORY_DEFINITIONS,
        ("figure1",),
        ("figure1",),
    ),
    Section(
        "reasons",
        "Why strict validation failed",
        "Facebook's Figure 2: for the opportunistic MX hosts and IPs, the combination of reasons "
        "their certificate failed strict validation.",
        ("figure2",),
        ("figure2",),
    ),
    Section(
        "certificates",
        "Certificates: key sizes and verification results",
        "The leaf certificates seen on the MX hosts that negotiated TLS. Weak keys (RSA under "
        "2048 bits, EC under 224) are orange.",
        ("certificates",),
        ("key_sizes", "verification_results"),
    ),
    Section(
        "protocols",
        "Protocol versions",
        "The TLS version each IP negotiated with a client that offers TLS 1.0 to 1.3.",
        ("protocols",),
        ("protocol_versions",),
    ),
    Section(
        "protocol_support",
        "Protocol support among STARTTLS hosts",
        "As the Italian survey's protocols chart, from a crawl with <code>-a depth=protocols"
        "</code>: each IP that advertised STARTTLS was offered one TLS version at a time. An MX "
        "host accepts a version when any of its IPs does, and counts under every version it "
        "accepts; those that accept none are shown apart. A version this scanner's OpenSSL "
        "cannot offer is <i>untestable</i>, never counted as not supported.",
        ("protocol_support",),
        (
            "protocol_support",
            "protocol_hosts",
            "protocol_range",
            "protocol_ciphers",
            "protocol_forward_secrecy",
        ),
    ),
    Section(
        "ciphers",
        "Cipher suites and forward secrecy",
        "Facebook's Figures 3 and 4: the cipher suite each IP chose, and how many sessions have "
        "forward secrecy.",
        ("ciphers",),
        ("cipher_suites", "forward_secrecy"),
    ),
    Section(
        "errors",
        "Connection errors",
        "Targets (MX host, IP) that never said whether they offer STARTTLS, by code and the "
        "stage of the conversation it happened at.",
        ("errors",),
        ("connection_errors",),
    ),
    Section(
        "labels",
        "Comparison across labels",
        "As the Italian survey's comparison with EU neighbours: one bar group per label of the "
        "list (for example a country column).",
        ("labels",),
        ("labels", "label_categories"),
    ),
)

COMPARE_SECTIONS = (
    Section("runs", "The two runs", "", (), ("runs", "coverage")),
    Section(
        "totals",
        "Then and now",
        "The STARTTLS table and Figure 1 of both runs side by side. " + CATEGORY_DEFINITIONS,
        ("compare_figure1",),
        ("italian_table", "figure1"),
    ),
    Section(
        "changes",
        "What changed",
        "Domains, MX hosts and IPs in both runs whose category changed, and the MX hosts named "
        "in one run only.",
        (),
        ("transitions", "changed", "new_mx_hosts", "vanished_mx_hosts"),
    ),
)

CSS = """
:root { --ink: #1f2933; --muted: #5f6b7a; --rule: #d9dee4; --zebra: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 30px 60px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 18px 0 8px; padding: 10px 14px; background: var(--zebra); border-radius: 6px; }
nav a { margin-right: 16px; color: #2b6cb0; text-decoration: none; white-space: nowrap; }
section { margin-top: 34px; border-top: 1px solid var(--rule); padding-top: 10px; }
h2 { font-size: 20px; margin: 8px 0 6px; }
p.intro { margin: 0 0 12px; max-width: 80ch; }
figure { margin: 10px 0 16px; }
figure img { width: 100%; max-width: 1000px; height: auto; display: block; }
p.empty { color: var(--muted); font-style: italic; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0 14px; font-size: 13px; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
          margin-right: 5px; vertical-align: -1px; }
.scroll { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
h3 { font-size: 14px; margin: 18px 0 4px; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--rule); text-align: left;
         white-space: nowrap; }
th { background: var(--zebra); font-weight: 600; }
td.num, th.num { text-align: right; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
p.note { color: var(--muted); font-size: 12.5px; margin: 2px 0 14px; max-width: 95ch; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
"""

CATEGORY_VALUES = {"strict", "opportunistic", "failure", "none", "error"}


def write(report: Report, directory: Path) -> Path:
    """Write DIR/index.html and its charts; returns the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    compare = report.kind == "compare"
    drawers = charts.COMPARE_CHARTS if compare else {**charts.REPORT_CHARTS, **policy.CHARTS}
    drawn = set()
    for name, draw in drawers.items():
        path = directory / f"{name}.png"
        fig = draw(report)
        if fig is None:
            path.unlink(missing_ok=True)  # a chart of an earlier report: not this one's
            continue
        fig.savefig(path, dpi=DPI, facecolor="white")
        drawn.add(name)
    sections = COMPARE_SECTIONS if compare else RUN_SECTIONS
    if not compare and policy.TABLES[0] in report:  # a run with a policy crawl
        sections += (
            Section(policy.ANCHOR, policy.TITLE, policy.INTRO, ("policy",), policy.TABLES),
        )
    page = directory / "index.html"
    page.write_text(render(report, sections, drawn), encoding="utf-8")
    return page


def render(report: Report, sections: tuple[Section, ...], drawn: set[str]) -> str:
    # A section whose tables this report lacks (protocol support without
    # -a depth=protocols) is left out, not shown empty.
    sections = tuple(s for s in sections if not s.tables or any(t in report for t in s.tables))
    nav = " ".join(f'<a href="#{s.anchor}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(_section(report, s, drawn) for s in sections)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(report.title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>{escape(report.title)}</h1>
<p>{escape(report.subtitle)}</p>
</header>
<nav>{nav}</nav>
{body}
<footer>Generated by <code>scrapy report</code> (mxcensus) on {generated}. Every number on a
chart is in the table below it.</footer>
</main>
</body>
</html>
"""


def _section(report: Report, section: Section, drawn: set[str]) -> str:
    parts = [f'<section id="{section.anchor}">', f"<h2>{escape(section.title)}</h2>"]
    if section.intro:
        parts.append(f'<p class="intro">{section.intro}</p>')
    for name in section.charts:
        if name in drawn:
            alt = escape(f"Chart: {section.title}")
            parts.append(
                f'<figure><img src="{name}.png" alt="{alt}" width="1000" loading="eager"></figure>'
            )
        else:
            parts.append('<p class="empty">Nothing to chart in this run.</p>')
    if any(name in ("figure1", "compare_figure1", "labels") for name in section.charts):
        parts.append(_legend())
    parts += [_table(report[name]) for name in section.tables if name in report]
    parts.append("</section>")
    return "\n".join(parts)


def _legend() -> str:
    keys = ("strict", "opportunistic", "failure", "none", "error")
    items = "".join(f"<span>{_swatch(k)}{TITLES[k]}</span>" for k in keys)
    return f'<div class="legend">{items}</div>'


def _swatch(category: str) -> str:
    return f'<span class="swatch" style="background:{COLOURS[category]}"></span>'


def _table(t: Table) -> str:
    columns = [c for c in t.columns if c.shown]
    head = "".join(_th(c) for c in columns)
    rows = "".join(
        "<tr>" + "".join(_td(row[c.name], c) for c in columns) + "</tr>" for row in t.rows
    )
    if not t.rows:
        rows = f'<tr><td colspan="{len(columns)}" class="empty">none</td></tr>'
    note = f'<p class="note">{escape(t.note)}</p>' if t.note else ""
    return (
        f'<h3 id="table-{t.name}">{escape(t.title)}</h3><div class="scroll"><table>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>{note}"
    )


def _th(c: Column) -> str:
    # A category's count gets its colour; a text column named `error` holds codes.
    swatch = _swatch(c.name) if c.name in CATEGORY_VALUES and c.kind != "text" else ""
    kind = ' class="num"' if c.kind != "text" else ""
    return f"<th{kind}>{swatch}{escape(c.title)}</th>"


def _td(value: Any, c: Column) -> str:
    text = escape(cell(value, c))
    if c.kind != "text":
        return f'<td class="num">{text}</td>'
    if value in CATEGORY_VALUES and c.name in ("category", "old", "new"):
        text = _swatch(value) + text
    return f"<td>{text}</td>"
