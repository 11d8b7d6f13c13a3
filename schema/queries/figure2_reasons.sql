-- Why strict validation failed (Facebook's Figure 2), as shares of the
-- opportunistic units. A unit's reasons are those of its opportunistic target
-- that sorts first (by reasons): one combination per MX host and per IP.
SELECT unit, reasons, n, 1.0 * n / SUM(n) OVER (PARTITION BY unit) AS share
FROM (
    SELECT 'mx_host' AS unit, reasons, COUNT(*) AS n
    FROM (SELECT t.mx_host, MIN(t.reasons) AS reasons
          FROM target_results t
          JOIN mx_results m ON m.run_id = t.run_id AND m.mx_host = t.mx_host
          WHERE t.run_id = :run AND m.category = 'opportunistic'
            AND t.category = 'opportunistic'
          GROUP BY t.mx_host) per_mx
    GROUP BY reasons
    UNION ALL
    SELECT 'ip', reasons, COUNT(*)
    FROM (SELECT t.ip, MIN(t.reasons) AS reasons
          FROM target_results t
          JOIN ip_results i ON i.run_id = t.run_id AND i.ip = t.ip
          WHERE t.run_id = :run AND i.category = 'opportunistic'
            AND t.category = 'opportunistic'
          GROUP BY t.ip) per_ip
    GROUP BY reasons
) counts
ORDER BY unit, n DESC, reasons;
