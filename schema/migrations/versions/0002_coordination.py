"""Coordination of the crawls of one run: claims; crawls record heartbeat, scrapyd job and node.

Why: several crawls (shards, scrapyd jobs on several nodes) share one run; before probing an
IP:port a crawl claims it, and a claim lives while its crawl's heartbeat is fresh.

A database that a development build between c8aa822 and this revision touched may already
hold the claims table or the columns (`create_all` made them): those are left as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from schema.migrations.ops import has_column, has_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_table("claims"):
        op.create_table(
            "claims",
            sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
            sa.Column("ip", sa.String(45), primary_key=True),
            sa.Column("port", sa.Integer, primary_key=True),
            sa.Column("crawl_id", sa.Integer, sa.ForeignKey("crawls.id"), nullable=False),
            sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_claims_crawl_id", "claims", ["crawl_id"])
    for name, type_ in [
        ("heartbeat_at", sa.DateTime(timezone=True)),
        ("job", sa.Text()),
        ("node", sa.Text()),
    ]:
        if not has_column("crawls", name):
            op.add_column("crawls", sa.Column(name, type_, nullable=True))
