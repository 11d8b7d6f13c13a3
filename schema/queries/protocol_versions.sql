-- Negotiated TLS versions, per IP (its first probe's session).
SELECT tls_version, COUNT(*) AS ips
FROM ip_results
WHERE run_id = :run AND tls_version IS NOT NULL
GROUP BY tls_version
ORDER BY tls_version;
