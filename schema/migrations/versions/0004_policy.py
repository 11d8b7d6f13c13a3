"""DNSSEC, DANE, MTA-STS and TLS-RPT per domain (`-a depth=policy`): the DNSSEC and TLSA
facts of domains and MX hosts, target_dane, domain_policies, whether the crawl's resolver
validates; the views mx_dane and domain_policy, and target_results.dane.

Why: STARTTLS alone can be stripped on the path; what protects mail is a domain telling
senders to insist (DANE, RFC 7672; MTA-STS, RFC 8461), and these facts say who does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from schema.migrations.ops import create_views, replace_views

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True)

# target_results gains `dane` (appended: CREATE OR REPLACE keeps the views reading it).
REPLACED = {
    "target_results": """
SELECT a.run_id, a.mx_host, a.ip, t.port, t.sni, t.category, t.reasons, t.error,
       t.error_stage, a.skip_reason,
       -- the probe's flags, then the target's (sni_probes_exhausted sorts after them all)
       CASE WHEN t.flags IS NULL THEN p.flags WHEN p.flags IS NULL THEN t.flags
            ELSE p.flags || ',' || t.flags END AS flags,
       p.starttls_advertised, p.tls_version, p.cipher, p.forward_secrecy, p.kx_group,
       p.cert_sha256, c.key_type, c.key_bits,
       td.dane  -- RFC 7672, -a depth=policy: NULL unless DANE applies
FROM mx_addresses a
LEFT JOIN targets t ON t.run_id = a.run_id AND t.mx_host = a.mx_host AND t.ip = a.ip
LEFT JOIN probes p
       ON p.run_id = t.run_id AND p.ip = t.ip AND p.port = t.port AND p.sni = t.sni
LEFT JOIN certificates c ON c.sha256 = p.cert_sha256
LEFT JOIN target_dane td ON td.run_id = a.run_id AND td.mx_host = a.mx_host AND td.ip = a.ip
UNION ALL
SELECT h.run_id, h.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'ip_literal_mx', NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM mx_hosts h
WHERE h.ip_literal
""",
}
VIEWS = {
    "mx_dane": """
SELECT run_id, name AS mx_host, tlsa_status, tlsa, tlsa_name, tlsa_detail
FROM mx_hosts
WHERE tlsa_name IS NOT NULL
""",
    "domain_policy": """
SELECT d.run_id, d.domain,
       CASE WHEN c.dnssec_validating THEN d.dnssec END AS dnssec,
       CASE WHEN c.dnssec_validating THEN
            CASE WHEN d.dnssec AND s.hosts > 0 AND s.dane_hosts = s.hosts THEN 'all'
                 WHEN s.dane_hosts > 0 THEN 'partial'
                 ELSE 'none' END
       END AS dane,
       p.mta_sts, p.mta_sts_id, p.mta_sts_mx_match, p.tls_rpt,
       CASE WHEN c.dnssec_validating AND d.dnssec AND s.hosts > 0 AND s.dane_hosts = s.hosts
            THEN 1 = 1
            WHEN p.mta_sts = 'enforce' AND p.mta_sts_mx_match
                 AND s.probed > 0 AND s.strict = s.probed THEN 1 = 1
            WHEN c.dnssec_validating THEN 1 = 0
       END AS downgrade_protected,
       d.label, d.weight
FROM domains d
JOIN crawls c ON c.id = d.crawl_id
LEFT JOIN (
    SELECT run_id, domain, COUNT(*) AS hosts, SUM(dane_protected) AS dane_hosts,
           SUM(probed) AS probed, SUM(strict) AS strict
    FROM (
SELECT r.run_id, r.domain, r.mx_host,
       CASE WHEN MAX(h.tlsa_status) = 'secure' AND COUNT(tr.category) > 0
                 AND SUM(CASE WHEN tr.category IS NOT NULL AND tr.dane = 'valid'
                              THEN 1 ELSE 0 END) = COUNT(tr.category)
            THEN 1 ELSE 0 END AS dane_protected,
       COUNT(tr.category) AS probed,
       SUM(CASE WHEN tr.category = 'strict' THEN 1 ELSE 0 END) AS strict
FROM mx_records r
JOIN mx_hosts h ON h.run_id = r.run_id AND h.name = r.mx_host
LEFT JOIN target_results tr ON tr.run_id = r.run_id AND tr.mx_host = r.mx_host
GROUP BY r.run_id, r.domain, r.mx_host
) ph
    GROUP BY run_id, domain
) s ON s.run_id = d.run_id AND s.domain = d.domain
LEFT JOIN domain_policies p ON p.run_id = d.run_id AND p.domain = d.domain
WHERE c.depth LIKE '%policy%'
""",
}


def upgrade() -> None:
    op.add_column("crawls", sa.Column("dnssec_validating", sa.Boolean(), nullable=True))
    op.add_column("crawls", sa.Column("dnssec_check", sa.Text(), nullable=True))
    op.add_column("domains", sa.Column("dnssec", sa.Boolean(), nullable=True))
    op.add_column("mx_hosts", sa.Column("dnssec", sa.Boolean(), nullable=True))
    op.add_column("mx_hosts", sa.Column("tlsa_name", sa.Text(), nullable=True))
    op.add_column("mx_hosts", sa.Column("tlsa_status", sa.String(20), nullable=True))
    op.add_column("mx_hosts", sa.Column("tlsa", sa.Text(), nullable=True))
    op.add_column("mx_hosts", sa.Column("tlsa_detail", sa.Text(), nullable=True))
    op.create_table(
        "target_dane",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("mx_host", sa.Text, primary_key=True),
        sa.Column("ip", sa.String(45), primary_key=True),
        sa.Column("dane", sa.String(20), nullable=False),
        sa.Column("matched", sa.Text),
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "domain_policies",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("domain", sa.Text, primary_key=True),
        sa.Column("crawl_id", sa.Integer, sa.ForeignKey("crawls.id"), nullable=False),
        sa.Column("mta_sts_txt", JSON),
        sa.Column("mta_sts_id", sa.Text),
        sa.Column("mta_sts", sa.String(20)),
        sa.Column("policy_url", sa.Text),
        sa.Column("policy_status", sa.Integer),
        sa.Column("policy_mode", sa.String(20)),
        sa.Column("policy_max_age", sa.Integer),
        sa.Column("policy_mx", JSON),
        sa.Column("mta_sts_mx_match", sa.Boolean),
        sa.Column("policy_text", sa.Text),
        sa.Column("policy_error", sa.Text),
        sa.Column("tls_rpt_txt", JSON),
        sa.Column("tls_rpt", sa.String(20)),
    )
    replace_views(REPLACED)
    create_views(VIEWS)
