-- Protocol support among STARTTLS hosts (the Italian study's "Protocols support"
-- chart), from a crawl with `-a depth=protocols`: per TLS version, how many IPs and
-- MX hosts were tried, and how many accept it. An MX host's status at a version is
-- the best of its IPs' (supported > not_supported > error > untestable): a host
-- accepts a version when any of its IPs does. `untestable` (the scanner's OpenSSL
-- cannot offer the version) is never counted as not supported; shares of `tried`
-- leave it out.
SELECT unit, version,
       SUM(CASE WHEN status_rank < 4 THEN 1 ELSE 0 END) AS tried,
       SUM(CASE WHEN status_rank = 1 THEN 1 ELSE 0 END) AS supported,
       SUM(CASE WHEN status_rank = 2 THEN 1 ELSE 0 END) AS not_supported,
       SUM(CASE WHEN status_rank = 3 THEN 1 ELSE 0 END) AS error,
       SUM(CASE WHEN status_rank = 4 THEN 1 ELSE 0 END) AS untestable,
       1.0 * SUM(CASE WHEN status_rank = 1 THEN 1 ELSE 0 END)
           / NULLIF(SUM(CASE WHEN status_rank < 4 THEN 1 ELSE 0 END), 0) AS share
FROM (
    SELECT 'ip' AS unit, version,
           CASE status WHEN 'supported' THEN 1 WHEN 'not_supported' THEN 2
                       WHEN 'error' THEN 3 ELSE 4 END AS status_rank
    FROM ip_protocols
    WHERE run_id = :run
    UNION ALL
    SELECT 'mx_host', p.version,
           MIN(CASE p.status WHEN 'supported' THEN 1 WHEN 'not_supported' THEN 2
                             WHEN 'error' THEN 3 ELSE 4 END)
    FROM (SELECT DISTINCT mx_host, ip, port FROM target_results
          WHERE run_id = :run AND skip_reason IS NULL) t
    JOIN ip_protocols p ON p.run_id = :run AND p.ip = t.ip AND p.port = t.port
    GROUP BY t.mx_host, p.version
) statuses
GROUP BY unit, version
ORDER BY unit, version;
