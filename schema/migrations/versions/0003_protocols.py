"""Protocol support per STARTTLS host (`-a depth=protocols`): protocol_probes, the
ip_protocols view, and the depth a crawl ran with.

Why: one opportunistic handshake shows only the best version both sides share; which old
versions a server still accepts needs one conversation pinned to each version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from schema.migrations.ops import create_views

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True)
TIMESTAMP = sa.DateTime(timezone=True)

VIEWS = {
    "ip_protocols": """
SELECT run_id, ip, port, version, status, cipher, kx_group, forward_secrecy,
       sni, error, error_stage, error_detail
FROM protocol_probes
""",
}


def upgrade() -> None:
    op.add_column("crawls", sa.Column("depth", sa.Text(), nullable=True))
    op.create_table(
        "protocol_probes",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("ip", sa.String(45), primary_key=True),
        sa.Column("port", sa.Integer, primary_key=True),
        sa.Column("version", sa.String(10), primary_key=True),
        sa.Column("crawl_id", sa.Integer, sa.ForeignKey("crawls.id"), nullable=False),
        sa.Column("sni", sa.Text, nullable=False),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.String(30)),
        sa.Column("error_stage", sa.String(20)),
        sa.Column("error_detail", sa.Text),
        sa.Column("starttls_code", sa.Integer),
        sa.Column("tls_version", sa.String(10)),
        sa.Column("cipher", sa.Text),
        sa.Column("forward_secrecy", sa.Boolean),
        sa.Column("kx_group", sa.Text),
        sa.Column("quit_sent", sa.Boolean),
        sa.Column("timings", JSON),
        sa.Column("transcript", JSON),
    )
    create_views(VIEWS)
