-- Negotiated cipher suites by unit (Facebook's Figure 3): per IP (its first
-- probe's session) and per MX host (each host once per cipher it negotiated).
SELECT 'ip' AS unit, cipher, COUNT(*) AS n
FROM ip_results
WHERE run_id = :run AND cipher IS NOT NULL
GROUP BY cipher
UNION ALL
SELECT 'mx_host', cipher, COUNT(DISTINCT mx_host)
FROM target_results
WHERE run_id = :run AND cipher IS NOT NULL
GROUP BY cipher
ORDER BY unit, n DESC, cipher;
