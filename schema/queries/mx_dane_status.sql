-- MX hosts by TLSA status (`-a depth=policy`, RFC 7672), and the DANE verdicts of their
-- targets: valid, mismatch (DANE applies: secure TLSA, validated addresses, TLS).
-- A NULL status: the crawl's resolver did not validate.
SELECT m.tlsa_status,
       COUNT(DISTINCT m.mx_host) AS mx_hosts,
       SUM(CASE WHEN tr.dane = 'valid' THEN 1 ELSE 0 END) AS targets_valid,
       SUM(CASE WHEN tr.dane = 'mismatch' THEN 1 ELSE 0 END) AS targets_mismatch
FROM mx_dane m
LEFT JOIN target_results tr ON tr.run_id = m.run_id AND tr.mx_host = m.mx_host
WHERE m.run_id = :run
GROUP BY m.tlsa_status
ORDER BY COALESCE(m.tlsa_status, '~');
