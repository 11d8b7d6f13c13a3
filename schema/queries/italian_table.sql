-- STARTTLS support on MX hosts (the Italian government study's table).
-- Counts the MX hosts that were probed; "unique_mx" = mx_with_starttls
-- + connection_errors + no_starttls. Hosts with no address or with every
-- target skipped are counted apart in not_probed.
SELECT
    (SELECT COUNT(*) FROM domains WHERE run_id = :run) AS domains,
    COUNT(*) AS unique_mx,
    COALESCE(SUM(CASE WHEN m.starttls_any THEN 1 ELSE 0 END), 0) AS mx_with_starttls,
    (SELECT COUNT(DISTINCT dm.domain)
     FROM domain_mx dm
     JOIN mx_results s ON s.run_id = dm.run_id AND s.mx_host = dm.mx_host
     WHERE dm.run_id = :run AND s.starttls_any) AS domains_covered,
    COALESCE(SUM(CASE WHEN NOT m.answered THEN 1 ELSE 0 END), 0) AS connection_errors,
    COALESCE(SUM(CASE WHEN m.answered AND NOT m.starttls_any THEN 1 ELSE 0 END), 0)
        AS no_starttls,
    (SELECT COUNT(*) FROM mx_results
     WHERE run_id = :run AND answered IS NULL) AS not_probed
FROM mx_results m
WHERE m.run_id = :run AND m.answered IS NOT NULL;
