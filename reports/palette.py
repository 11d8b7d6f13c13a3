"""Category names and colours shared by the charts and the HTML tables: strict green …
none grey, error dark red, the same on every chart."""

from __future__ import annotations

# Figure 1's four categories, best to worst (docs/design.md, "Vocabulary").
CATEGORIES = ("strict", "opportunistic", "failure", "none")
TITLES = {
    "strict": "Strict",
    "opportunistic": "Opportunistic",
    "failure": "Failure",
    "none": "None",
    "error": "Error",
    "not_probed": "Not probed",
}
COLOURS = {
    "strict": "#1a9641",
    "opportunistic": "#a6d96a",
    "failure": "#fdae61",
    "none": "#9e9e9e",
    "error": "#8b1a1a",
    "not_probed": "#d9d9d9",
}
# Other series: STARTTLS offered, domains, and the second series of a pair.
ACCENT = "#2b6cb0"
SECOND = "#90cdf4"

UNITS = {
    "all_email": "All email (weighted)",
    "domain": "Domain (primary MX)",
    "mx_host": "MX host",
    "ip": "IP address",
}
