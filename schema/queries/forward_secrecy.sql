-- Forward secrecy among IPs with a TLS session (Facebook's Figure 4).
SELECT COUNT(*) AS ips_with_tls,
       SUM(CASE WHEN forward_secrecy THEN 1 ELSE 0 END) AS with_forward_secrecy,
       1.0 * SUM(CASE WHEN forward_secrecy THEN 1 ELSE 0 END) / NULLIF(COUNT(*), 0) AS share
FROM ip_results
WHERE run_id = :run AND tls_version IS NOT NULL;
