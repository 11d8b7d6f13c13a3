"""The SQL views: the public contract of results (docs/design.md, "The views are the contract").

One rollup rule for every unit (an MX host over its IPs, a domain over its MX
hosts, an IP over the names that reach it): worst / best = the worst / best
category among the members that answered (strict > opportunistic > failure >
none); `error` only when no member answered; NULL when no member was probed.
The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from schema.vocab import Category

ANSWERED = (Category.STRICT, Category.OPPORTUNISTIC, Category.FAILURE, Category.NONE)


def _rank(column: str, condition: str = "") -> str:
    """1 (strict) … 4 (none) for an answered member, else NULL."""
    when = " ".join(f"WHEN '{c}' THEN {i}" for i, c in enumerate(ANSWERED, 1))
    ranked = f"CASE {column} {when} END"
    return f"CASE WHEN {condition} THEN {ranked} END" if condition else ranked


def rollup(column: str, worst: bool, condition: str = "") -> str:
    """The rule as one SQL expression over a group of `column` values."""
    pick = "MAX" if worst else "MIN"
    back = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(ANSWERED, 1))
    error = f"{column} = '{Category.ERROR}'" + (f" AND {condition}" if condition else "")
    return (
        f"CASE {pick}({_rank(column, condition)}) {back} "
        f"ELSE CASE WHEN MAX(CASE WHEN {error} THEN 1 ELSE 0 END) = 1 "
        f"THEN '{Category.ERROR}' END END"
    )


TARGET_RESULTS = """
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

# A domain's primary MX hosts: its lowest preference (a correlated lookup, so a
# query for one run never aggregates the MX records of every run).
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

# One row per IP:port and version tried (`-a depth=protocols`); after the contract's
# columns, what explains a status.
IP_PROTOCOLS = """
SELECT run_id, ip, port, version, status, cipher, kx_group, forward_secrecy,
       sni, error, error_stage, error_detail
FROM protocol_probes
"""

# -a depth=policy: each MX host's TLSA RRset (RFC 7672); after the contract's columns, the
# owner name asked (the CNAME's target when the expansion was secure) and a failure's text.
MX_DANE = """
SELECT run_id, name AS mx_host, tlsa_status, tlsa, tlsa_name, tlsa_detail
FROM mx_hosts
WHERE tlsa_name IS NOT NULL
"""

# Per MX record of a policy crawl's domain: is that MX host protected by DANE (its TLSA
# RRset secure and every probed target `valid`), and how many of its targets were probed
# and strict (skipped targets have no category and do not count)?
_POLICY_HOSTS = """
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
"""

# One row per domain of a policy crawl (-a depth=policy). DNSSEC-derived columns (dnssec,
# dane) are NULL when the crawl's resolver did not validate (crawls.dnssec_validating);
# downgrade_protected is then true by MTA-STS alone, else NULL. After the contract's
# columns, the domain's label and weight (for rollups by label, weighted).
_DANE_ALL = "d.dnssec AND s.hosts > 0 AND s.dane_hosts = s.hosts"
DOMAIN_POLICY = f"""
SELECT d.run_id, d.domain,
       CASE WHEN c.dnssec_validating THEN d.dnssec END AS dnssec,
       CASE WHEN c.dnssec_validating THEN
            CASE WHEN {_DANE_ALL} THEN 'all'
                 WHEN s.dane_hosts > 0 THEN 'partial'
                 ELSE 'none' END
       END AS dane,
       p.mta_sts, p.mta_sts_id, p.mta_sts_mx_match, p.tls_rpt,
       CASE WHEN c.dnssec_validating AND {_DANE_ALL}
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
    FROM ({_POLICY_HOSTS}) ph
    GROUP BY run_id, domain
) s ON s.run_id = d.run_id AND s.domain = d.domain
LEFT JOIN domain_policies p ON p.run_id = d.run_id AND p.domain = d.domain
WHERE c.depth LIKE '%policy%'
"""

# In dependency order.
VIEWS = {
    "target_results": TARGET_RESULTS,
    "mx_results": MX_RESULTS,
    "ip_results": IP_RESULTS,
    "domain_mx": DOMAIN_MX,
    "domain_results": DOMAIN_RESULTS,
    "ip_protocols": IP_PROTOCOLS,
    "mx_dane": MX_DANE,
    "domain_policy": DOMAIN_POLICY,
}


def create_views(conn: Connection) -> None:
    """(Re)create every view; idempotent, so each crawl may call it."""
    for name in reversed(VIEWS):
        conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
    for name, sql in VIEWS.items():
        conn.execute(text(f"CREATE VIEW {name} AS {sql}"))
