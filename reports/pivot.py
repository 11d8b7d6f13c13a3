"""Figure 1's shape: (category, n) rows pivoted to one row of counts and shares."""

from __future__ import annotations

from typing import Any

from reports.palette import CATEGORIES
from reports.table import Column, Kind, share


def category_columns(kind: Kind = "count") -> list[Column]:
    """n and share of each of the four categories (`number`: weighted sums too)."""
    return [
        col for c in CATEGORIES for col in (Column(c, c, kind), Column(f"{c}_share", "%", "share"))
    ]


def pivot_categories(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """{category: n, category_share: share, counted: Σn} from (category, n) rows."""
    n = {r["category"]: r["n"] for r in counts}
    total = sum(n.values())
    row: dict[str, Any] = {"counted": total}
    for c in CATEGORIES:
        row[c] = n.get(c, 0)
        row[f"{c}_share"] = share(n.get(c, 0), total)
    return row
