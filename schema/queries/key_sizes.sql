-- Leaf key type and size of the certificates seen on STARTTLS MX hosts
-- (the Italian study's "certificates' key size"), one count per MX host
-- and key (a host whose IPs present different keys counts under each).
SELECT key_type, key_bits, COUNT(DISTINCT mx_host) AS mx_hosts, COUNT(DISTINCT ip) AS ips
FROM target_results
WHERE run_id = :run AND tls_version IS NOT NULL
GROUP BY key_type, key_bits
ORDER BY key_type, key_bits;
