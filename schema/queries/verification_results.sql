-- Certificate verification results per target (MX host, IP) with TLS:
-- 'ok' for strict, else the combination of reasons.
SELECT COALESCE(reasons, 'ok') AS result, COUNT(*) AS targets,
       COUNT(DISTINCT mx_host) AS mx_hosts
FROM target_results
WHERE run_id = :run AND category IN ('strict', 'opportunistic')
GROUP BY COALESCE(reasons, 'ok')
ORDER BY targets DESC, result;
