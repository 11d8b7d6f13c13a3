-- Targets that never told whether they offer STARTTLS, by code and stage.
SELECT error, error_stage, COUNT(*) AS targets, COUNT(DISTINCT mx_host) AS mx_hosts,
       COUNT(DISTINCT ip) AS ips
FROM target_results
WHERE run_id = :run AND category = 'error'
GROUP BY error, error_stage
ORDER BY targets DESC, error, error_stage;
