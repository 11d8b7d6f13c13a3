"""The report's own SQL, where schema/queries/ has no query. Read the public views only
(and `domains`/`crawls` for what no view holds); `:run`, or `:a`/`:b` for two runs.
Every aggregate is computed here, never by looping over domains in Python.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from schema.vocab import TlsVersion

FOUR = "('strict', 'opportunistic', 'failure', 'none')"

RUN = """
SELECT r.id AS run_id, r.name,
       (SELECT COUNT(*) FROM crawls c WHERE c.run_id = r.id) AS crawls,
       (SELECT COUNT(*) FROM domains d WHERE d.run_id = r.id) AS domains,
       (SELECT COUNT(DISTINCT d.label) FROM domains d WHERE d.run_id = r.id) AS labels,
       (SELECT COUNT(d.weight) FROM domains d WHERE d.run_id = r.id) AS weighted_domains
FROM runs r
WHERE r.id = :run
"""

DOMAIN_STATUS = """
SELECT status, COUNT(*) AS domains
FROM domain_results
WHERE run_id = :run
GROUP BY status
ORDER BY COUNT(*) DESC, status
"""


def _apart(weight: str) -> str:
    return (
        f"SUM(CASE WHEN primary_category = 'error' THEN {weight} ELSE 0 END) AS error, "
        f"SUM(CASE WHEN status = 'ok' AND primary_category IS NULL THEN {weight} ELSE 0 END)"
        f" AS not_probed, SUM(CASE WHEN status <> 'ok' THEN {weight} ELSE 0 END) AS not_ok"
    )


# The units Figure 1 leaves out of its shares (docs/design.md): `error`, no category (not
# probed) and, for domains, a status other than ok (no MX host to count).
FIGURE1_APART = f"""
SELECT 'all_email' AS unit, {_apart("weight")}
FROM domain_results WHERE run_id = :run AND weight IS NOT NULL
UNION ALL
SELECT 'domain', {_apart("1")}
FROM domain_results WHERE run_id = :run
UNION ALL
SELECT 'mx_host', SUM(CASE WHEN category = 'error' THEN 1 ELSE 0 END),
       SUM(CASE WHEN category IS NULL THEN 1 ELSE 0 END), NULL
FROM mx_results WHERE run_id = :run
UNION ALL
SELECT 'ip', SUM(CASE WHEN category = 'error' THEN 1 ELSE 0 END),
       SUM(CASE WHEN category IS NULL THEN 1 ELSE 0 END), NULL
FROM ip_results WHERE run_id = :run
"""

# Per label, the Italian table's domain columns and the domains' Figure-1 categories.
LABEL_DOMAINS = f"""
SELECT label, COUNT(*) AS domains,
       SUM(CASE WHEN primary_category = 'strict' THEN 1 ELSE 0 END) AS strict,
       SUM(CASE WHEN primary_category = 'opportunistic' THEN 1 ELSE 0 END) AS opportunistic,
       SUM(CASE WHEN primary_category = 'failure' THEN 1 ELSE 0 END) AS failure,
       SUM(CASE WHEN primary_category = 'none' THEN 1 ELSE 0 END) AS "none",
       SUM(CASE WHEN primary_category IN {FOUR} THEN 1 ELSE 0 END) AS counted,
       SUM(CASE WHEN primary_category = 'error' THEN 1 ELSE 0 END) AS error
FROM domain_results
WHERE run_id = :run
GROUP BY label
"""

# As italian_table.sql's domains_covered, per label.
LABEL_COVERED = """
SELECT d.label, COUNT(DISTINCT d.domain) AS domains_covered
FROM domains d
JOIN domain_mx dm ON dm.run_id = d.run_id AND dm.domain = d.domain
JOIN mx_results m ON m.run_id = dm.run_id AND m.mx_host = dm.mx_host
WHERE d.run_id = :run AND m.starttls_any
GROUP BY d.label
"""


def _distinct(condition: str) -> str:
    return f"COUNT(DISTINCT CASE WHEN {condition} THEN m.mx_host END)"


# As italian_table.sql's MX columns (probed hosts only), and the hosts' Figure-1
# categories, over the MX hosts a label's domains name: a host shared by two labels
# counts in both.
LABEL_MX = f"""
SELECT d.label, COUNT(DISTINCT m.mx_host) AS unique_mx,
       {_distinct("m.starttls_any")} AS mx_with_starttls,
       {_distinct("NOT m.answered")} AS connection_errors,
       {_distinct("m.answered AND NOT m.starttls_any")} AS no_starttls,
       {_distinct("m.category = 'strict'")} AS strict,
       {_distinct("m.category = 'opportunistic'")} AS opportunistic,
       {_distinct("m.category = 'failure'")} AS failure,
       {_distinct("m.category = 'none'")} AS "none",
       {_distinct(f"m.category IN {FOUR}")} AS counted,
       {_distinct("m.category = 'error'")} AS error
FROM domains d
JOIN domain_mx dm ON dm.run_id = d.run_id AND dm.domain = d.domain
JOIN mx_results m ON m.run_id = dm.run_id AND m.mx_host = dm.mx_host
WHERE d.run_id = :run AND m.answered IS NOT NULL
GROUP BY d.label
"""

# -- protocol support (`-a depth=protocols`; the per-version counts: protocol_support.sql) --

# Whether the run has protocol data: a crawl that ran with the depth, or rows of it.
PROTOCOL_DEPTH = """
SELECT (SELECT COUNT(*) FROM crawls WHERE run_id = :run AND depth LIKE '%protocols%')
       + (SELECT COUNT(*) FROM ip_protocols WHERE run_id = :run) AS n
"""

# Oldest first, as OpenSSL names them: the rank orders versions on every collation.
VERSION_RANK = (
    "CASE version " + " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(TlsVersion)) + " END"
)
# Each MX host with the IP:ports probed for it (whatever their probes' category).
_MX_IPS = (
    "(SELECT DISTINCT mx_host, ip, port FROM target_results"
    " WHERE run_id = :run AND skip_reason IS NULL)"
)

# Per unit: how many advertise STARTTLS, how many were tried, and of those how many
# accept some version, refuse every one tried, or never reached a handshake.
PROTOCOL_UNITS = f"""
SELECT 'mx_host' AS unit,
       (SELECT COUNT(*) FROM mx_results WHERE run_id = :run AND starttls_any) AS starttls,
       COUNT(*) AS tried,
       COALESCE(SUM(accepts), 0) AS accept_any,
       COALESCE(SUM(CASE WHEN accepts = 0 AND refuses = 1 THEN 1 ELSE 0 END), 0) AS refuse_all,
       COALESCE(SUM(CASE WHEN accepts = 0 AND refuses = 0 THEN 1 ELSE 0 END), 0) AS no_answer
FROM (SELECT t.mx_host,
             MAX(CASE WHEN p.status = 'supported' THEN 1 ELSE 0 END) AS accepts,
             MAX(CASE WHEN p.status = 'not_supported' THEN 1 ELSE 0 END) AS refuses
      FROM {_MX_IPS} t
      JOIN ip_protocols p ON p.run_id = :run AND p.ip = t.ip AND p.port = t.port
      GROUP BY t.mx_host) hosts
UNION ALL
SELECT 'ip',
       (SELECT COUNT(*) FROM (SELECT DISTINCT ip, port FROM target_results
                              WHERE run_id = :run AND starttls_advertised) s),
       COUNT(*),
       COALESCE(SUM(accepts), 0),
       COALESCE(SUM(CASE WHEN accepts = 0 AND refuses = 1 THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN accepts = 0 AND refuses = 0 THEN 1 ELSE 0 END), 0)
FROM (SELECT ip, port,
             MAX(CASE WHEN status = 'supported' THEN 1 ELSE 0 END) AS accepts,
             MAX(CASE WHEN status = 'not_supported' THEN 1 ELSE 0 END) AS refuses
      FROM ip_protocols
      WHERE run_id = :run
      GROUP BY ip, port) ips
"""

# The highest and the lowest version each unit accepts (an MX host: over all its IPs),
# counted per rank of TlsVersion: `bound` is 'highest' or 'lowest'.
PROTOCOL_RANGE = f"""
WITH ip_range AS (
    SELECT ip, port, MAX({VERSION_RANK}) AS highest, MIN({VERSION_RANK}) AS lowest
    FROM ip_protocols
    WHERE run_id = :run AND status = 'supported'
    GROUP BY ip, port
), mx_range AS (
    SELECT t.mx_host, MAX(r.highest) AS highest, MIN(r.lowest) AS lowest
    FROM {_MX_IPS} t
    JOIN ip_range r ON r.ip = t.ip AND r.port = t.port
    GROUP BY t.mx_host
)
SELECT 'mx_host' AS unit, 'highest' AS bound, highest AS version_rank, COUNT(*) AS n
FROM mx_range GROUP BY highest
UNION ALL
SELECT 'mx_host', 'lowest', lowest, COUNT(*) FROM mx_range GROUP BY lowest
UNION ALL
SELECT 'ip', 'highest', highest, COUNT(*) FROM ip_range GROUP BY highest
UNION ALL
SELECT 'ip', 'lowest', lowest, COUNT(*) FROM ip_range GROUP BY lowest
"""

# The cipher suite each IP picked at each version it accepts; an MX host counts once
# per (version, cipher) its addresses picked.
PROTOCOL_CIPHERS = f"""
SELECT p.version, p.cipher, p.forward_secrecy, COUNT(*) AS ips,
       (SELECT COUNT(DISTINCT t.mx_host)
        FROM {_MX_IPS} t
        JOIN ip_protocols q ON q.run_id = :run AND q.ip = t.ip AND q.port = t.port
        WHERE q.status = 'supported' AND q.version = p.version AND q.cipher = p.cipher)
           AS mx_hosts
FROM ip_protocols p
WHERE p.run_id = :run AND p.status = 'supported'
GROUP BY p.version, p.cipher, p.forward_secrecy
"""

# Forward secrecy per version, over the units that accept it: an IP when the suite it
# picked has it; an MX host when every one of its IPs that accepts the version does.
PROTOCOL_FORWARD_SECRECY = f"""
SELECT 'ip' AS unit, version, COUNT(*) AS n,
       SUM(CASE WHEN forward_secrecy THEN 1 ELSE 0 END) AS with_fs
FROM ip_protocols
WHERE run_id = :run AND status = 'supported'
GROUP BY version
UNION ALL
SELECT 'mx_host', version, COUNT(*), SUM(all_fs)
FROM (SELECT t.mx_host, p.version,
             MIN(CASE WHEN p.forward_secrecy THEN 1 ELSE 0 END) AS all_fs
      FROM {_MX_IPS} t
      JOIN ip_protocols p ON p.run_id = :run AND p.ip = t.ip AND p.port = t.port
      WHERE p.status = 'supported'
      GROUP BY t.mx_host, p.version) hosts
GROUP BY version
"""

# -- two runs -------------------------------------------------------------------------------

_UNITS = (  # (unit, view, key, category column)
    ("domain", "domain_results", "domain", "primary_category"),
    ("mx_host", "mx_results", "mx_host", "category"),
    ("ip", "ip_results", "ip", "category"),
)
_ORDER = "CASE unit WHEN 'domain' THEN 1 WHEN 'mx_host' THEN 2 ELSE 3 END"


def _changes() -> str:
    return "\nUNION ALL\n".join(
        f"SELECT '{unit}' AS unit, a.{key} AS name, a.{column} AS old, b.{column} AS new"
        f" FROM {view} a JOIN {view} b ON b.run_id = :b AND b.{key} = a.{key}"
        f" WHERE a.run_id = :a AND COALESCE(a.{column}, '') <> COALESCE(b.{column}, '')"
        for unit, view, key, column in _UNITS
    )


# Units in both runs whose category changed, old → new (NULL: not probed).
TRANSITIONS = f"""
SELECT unit, old, new, COUNT(*) AS n FROM ({_changes()}) c
GROUP BY unit, old, new
ORDER BY {_ORDER}, COUNT(*) DESC, old, new
"""

CHANGED = f"""
SELECT unit, name, old, new FROM (
    SELECT c.*, ROW_NUMBER() OVER (PARTITION BY unit ORDER BY name) AS k
    FROM ({_changes()}) c
) ranked
WHERE :limit < 0 OR k <= :limit
ORDER BY {_ORDER}, name
"""

COVERAGE = "\nUNION ALL\n".join(
    f"""SELECT '{unit}' AS unit,
       SUM(CASE WHEN na > 0 AND nb > 0 THEN 1 ELSE 0 END) AS both_runs,
       SUM(CASE WHEN nb = 0 THEN 1 ELSE 0 END) AS only_a,
       SUM(CASE WHEN na = 0 THEN 1 ELSE 0 END) AS only_b
FROM (SELECT {key}, SUM(CASE WHEN run_id = :a THEN 1 ELSE 0 END) AS na,
             SUM(CASE WHEN run_id = :b THEN 1 ELSE 0 END) AS nb
      FROM {view} WHERE run_id IN (:a, :b) GROUP BY {key}) k"""
    for unit, view, key, _ in _UNITS
)

# MX hosts named in run :present and not in run :absent (new, or vanished when swapped).
MX_ONLY_IN = """
SELECT mx_host, category, ip_count, domains FROM (
    SELECT m.mx_host, m.category, m.ip_count, COUNT(dm.domain) AS domains,
           ROW_NUMBER() OVER (ORDER BY COUNT(dm.domain) DESC, m.mx_host) AS k
    FROM mx_results m
    LEFT JOIN domain_mx dm ON dm.run_id = m.run_id AND dm.mx_host = m.mx_host
    WHERE m.run_id = :present
      AND NOT EXISTS (SELECT 1 FROM mx_results o
                      WHERE o.run_id = :absent AND o.mx_host = m.mx_host)
    GROUP BY m.mx_host, m.category, m.ip_count
) ranked
WHERE :limit < 0 OR k <= :limit
ORDER BY k
"""

MX_ONLY_IN_COUNT = """
SELECT COUNT(*) FROM mx_results m
WHERE m.run_id = :present
  AND NOT EXISTS (SELECT 1 FROM mx_results o WHERE o.run_id = :absent AND o.mx_host = m.mx_host)
"""


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]
