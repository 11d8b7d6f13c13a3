"""Baseline: the schema as mxcensus made it before migrations (commit c8aa822).

Why frozen here: a database that older mxcensus made is stamped 0001 (schema/migrate.py checks
it has every table and column of METADATA first), so 0001 must create exactly that schema,
forever, whatever schema/models.py and schema/views.py say later. The tables are the c8aa822
models written out as Core tables; the views are the c8aa822 SQL, made by a frozen copy of its
generator, so a fresh database gets byte for byte the views an old one has.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from schema.migrations.ops import create_views

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True)
TIMESTAMP = sa.DateTime(timezone=True)

METADATA = sa.MetaData()

sa.Table(
    "runs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)
sa.Table(
    "crawls",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("label", sa.Text),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_sha256", sa.String(64)),
    sa.Column("shard", sa.String(20)),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("finish_reason", sa.Text),
    sa.Column("versions", JSON, nullable=False),
    sa.Column("settings", JSON, nullable=False),
    sa.Column("counts", JSON),
)
sa.Table(
    "domains",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("domain", sa.Text, primary_key=True),
    sa.Column("crawl_id", sa.Integer, sa.ForeignKey("crawls.id"), nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("weight", sa.Float),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("status", sa.String(30), nullable=False),
    sa.Column("null_mx", sa.Boolean, nullable=False),
    sa.Column("implicit_mx", sa.Boolean, nullable=False),
    sa.Column("mx_count", sa.Integer, nullable=False),
    sa.Column("mx_rrset", JSON, nullable=False),
    sa.Column("dns_detail", sa.Text),
)
sa.Table(
    "mx_records",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("mx_host", sa.Text, primary_key=True),
    sa.Column("domain", sa.Text, primary_key=True),
    sa.Column("preference", sa.Integer, nullable=False),
    sa.Column("implicit", sa.Boolean, nullable=False),
    sa.Index("ix_mx_records_domain", "run_id", "domain"),
)
sa.Table(
    "mx_hosts",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("canonical_name", sa.Text),
    sa.Column("dns_outcome", sa.String(20), nullable=False),
    sa.Column("dns_detail", sa.Text),
    sa.Column("ip_literal", sa.Boolean, nullable=False),
)
sa.Table(
    "mx_addresses",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("mx_host", sa.Text, primary_key=True),
    sa.Column("ip", sa.String(45), primary_key=True, index=True),
    sa.Column("family", sa.Integer, nullable=False),
    sa.Column("skip_reason", sa.String(30)),
)
sa.Table(
    "probes",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("crawl_id", sa.Integer, sa.ForeignKey("crawls.id"), nullable=False),
    sa.Column("ip", sa.String(45), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("sni", sa.Text, nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False),
    sa.Column("wire_outcome", sa.String(20), nullable=False),
    sa.Column("error", sa.String(30)),
    sa.Column("error_stage", sa.String(20)),
    sa.Column("error_detail", sa.Text),
    sa.Column("flags", sa.Text),
    sa.Column("banner_code", sa.Integer),
    sa.Column("banner_text", sa.Text),
    sa.Column("ehlo_code", sa.Integer),
    sa.Column("ehlo_text", sa.Text),
    sa.Column("helo_code", sa.Integer),
    sa.Column("helo_text", sa.Text),
    sa.Column("extensions", sa.Text),
    sa.Column("starttls_advertised", sa.Boolean),
    sa.Column("starttls_code", sa.Integer),
    sa.Column("starttls_text", sa.Text),
    sa.Column("plaintext_after_starttls", sa.LargeBinary),
    sa.Column("tls_version", sa.String(10)),
    sa.Column("cipher", sa.Text),
    sa.Column("forward_secrecy", sa.Boolean),
    sa.Column("kx_group", sa.Text),
    sa.Column("cert_sha256", sa.String(64), index=True),
    sa.Column("chain", JSON),
    sa.Column("chain_reasons", sa.Text),
    sa.Column("verify_error", sa.Text),
    sa.Column("cert_parse_error", sa.Text),
    sa.Column("leaf_names", JSON),
    sa.Column("post_tls_ehlo_code", sa.Integer),
    sa.Column("post_tls_ehlo_text", sa.Text),
    sa.Column("post_tls_extensions", sa.Text),
    sa.Column("quit_sent", sa.Boolean, nullable=False),
    sa.Column("timings", JSON, nullable=False),
    sa.Column("transcript", JSON, nullable=False),
    sa.Column("attempts", JSON, nullable=False),
    sa.UniqueConstraint("run_id", "ip", "port", "sni"),
)
sa.Table(
    "targets",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("mx_host", sa.Text, primary_key=True),
    sa.Column("ip", sa.String(45), primary_key=True),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("sni", sa.Text, nullable=False),
    sa.Column("category", sa.String(20), nullable=False),
    sa.Column("reasons", sa.Text),
    sa.Column("error", sa.String(30)),
    sa.Column("error_stage", sa.String(20)),
    sa.Column("flags", sa.Text),
)
sa.Table(
    "certificates",
    METADATA,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("der", sa.LargeBinary, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("issuer", sa.Text),
    sa.Column("not_before", TIMESTAMP),
    sa.Column("not_after", TIMESTAMP),
    sa.Column("key_type", sa.Text),
    sa.Column("key_bits", sa.Integer),
    sa.Column("san_dns", JSON),
    sa.Column("parse_error", sa.Text),
)

# -- the views: c8aa822's schema/views.py, frozen ---------------------------------------------

ANSWERED = ("strict", "opportunistic", "failure", "none")  # best to worst


def _rank(column: str, condition: str = "") -> str:
    """1 (strict) … 4 (none) for an answered member, else NULL."""
    when = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(ANSWERED, 1))
    ranked = f"CASE {column} {when} END"
    return f"CASE WHEN {condition} THEN {ranked} END" if condition else ranked


def rollup(column: str, worst: bool, condition: str = "") -> str:
    """The rollup rule as one SQL expression over a group of `column` values."""
    pick = "MAX" if worst else "MIN"
    back = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(ANSWERED, 1))
    error = f"{column} = 'error'" + (f" AND {condition}" if condition else "")
    return (
        f"CASE {pick}({_rank(column, condition)}) {back} "
        f"ELSE CASE WHEN MAX(CASE WHEN {error} THEN 1 ELSE 0 END) = 1 "
        f"THEN 'error' END END"
    )


TARGET_RESULTS = """
SELECT a.run_id, a.mx_host, a.ip, t.port, t.sni, t.category, t.reasons, t.error,
       t.error_stage, a.skip_reason,
       -- the probe's flags, then the target's (sni_probes_exhausted sorts after them all)
       CASE WHEN t.flags IS NULL THEN p.flags WHEN p.flags IS NULL THEN t.flags
            ELSE p.flags || ',' || t.flags END AS flags,
       p.starttls_advertised, p.tls_version, p.cipher, p.forward_secrecy, p.kx_group,
       p.cert_sha256, c.key_type, c.key_bits
FROM mx_addresses a
LEFT JOIN targets t ON t.run_id = a.run_id AND t.mx_host = a.mx_host AND t.ip = a.ip
LEFT JOIN probes p
       ON p.run_id = t.run_id AND p.ip = t.ip AND p.port = t.port AND p.sni = t.sni
LEFT JOIN certificates c ON c.sha256 = p.cert_sha256
UNION ALL
SELECT h.run_id, h.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'ip_literal_mx', NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM mx_hosts h
WHERE h.ip_literal
"""

MX_RESULTS = f"""
SELECT h.run_id, h.name AS mx_host,
       EXISTS (SELECT 1 FROM mx_records r
               WHERE r.run_id = h.run_id AND r.mx_host = h.name AND r.implicit) AS implicit,
       COUNT(tr.ip) AS ip_count,
       {rollup("tr.category", worst=True)} AS category,
       {rollup("tr.category", worst=False)} AS best_category,
       CASE WHEN COUNT(tr.category) > 0 THEN
            MAX(CASE WHEN tr.starttls_advertised THEN 1 ELSE 0 END) = 1 END AS starttls_any,
       CASE WHEN COUNT(tr.category) > 0 THEN
            MAX(CASE WHEN tr.category <> 'error' THEN 1 ELSE 0 END) = 1 END AS answered
FROM mx_hosts h
LEFT JOIN target_results tr ON tr.run_id = h.run_id AND tr.mx_host = h.name
GROUP BY h.run_id, h.name
"""

IP_RESULTS = f"""
SELECT g.run_id, g.ip, g.port, g.mx_host_count, g.domain_count, g.category, g.best_category,
       fp.tls_version, fp.cipher, fp.forward_secrecy  -- its first TLS session, if any
FROM (
    SELECT tr.run_id, tr.ip, MAX(tr.port) AS port,
           COUNT(DISTINCT tr.mx_host) AS mx_host_count,
           COUNT(DISTINCT r.domain) AS domain_count,
           {rollup("tr.category", worst=True)} AS category,
           {rollup("tr.category", worst=False)} AS best_category
    FROM target_results tr
    LEFT JOIN mx_records r ON r.run_id = tr.run_id AND r.mx_host = tr.mx_host
    WHERE tr.ip IS NOT NULL
    GROUP BY tr.run_id, tr.ip
) g
LEFT JOIN probes fp ON fp.run_id = g.run_id AND fp.ip = g.ip
     AND fp.id = COALESCE(
         (SELECT MIN(p.id) FROM probes p
          WHERE p.run_id = g.run_id AND p.ip = g.ip AND p.tls_version IS NOT NULL),
         (SELECT MIN(p.id) FROM probes p WHERE p.run_id = g.run_id AND p.ip = g.ip))
"""

DOMAIN_MX = """
SELECT run_id, domain, mx_host, preference, implicit FROM mx_records
"""

_PRIMARY = (
    "r.preference = (SELECT MIN(p.preference) FROM mx_records p"
    " WHERE p.run_id = r.run_id AND p.domain = r.domain)"
)
DOMAIN_RESULTS = f"""
SELECT d.run_id, d.label, d.domain, d.weight, d.status, d.mx_count, d.implicit_mx,
       CASE WHEN d.status = 'ok' THEN {rollup("tr.category", worst=False)} END
            AS best_category,
       CASE WHEN d.status = 'ok' THEN {rollup("tr.category", worst=True)} END
            AS worst_category,
       CASE WHEN d.status = 'ok' THEN {rollup("tr.category", worst=True, condition=_PRIMARY)} END
            AS primary_category,
       CASE WHEN d.status = 'ok' AND COUNT(tr.category) > 0 THEN
            SUM(CASE WHEN tr.category = 'strict' THEN 1 ELSE 0 END) = COUNT(tr.category) END
            AS all_strict
FROM domains d
LEFT JOIN mx_records r ON r.run_id = d.run_id AND r.domain = d.domain
LEFT JOIN target_results tr ON tr.run_id = r.run_id AND tr.mx_host = r.mx_host
GROUP BY d.run_id, d.label, d.domain, d.weight, d.status, d.mx_count, d.implicit_mx
"""

VIEWS = {  # in dependency order
    "target_results": TARGET_RESULTS,
    "mx_results": MX_RESULTS,
    "ip_results": IP_RESULTS,
    "domain_mx": DOMAIN_MX,
    "domain_results": DOMAIN_RESULTS,
}


def upgrade() -> None:
    # create_all, as the old store did: the same DDL, in the same order.
    METADATA.create_all(op.get_bind(), checkfirst=False)
    create_views(VIEWS)
