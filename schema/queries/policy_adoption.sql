-- Protection against STARTTLS downgrade, by label (`-a depth=policy`, issue 12): DNSSEC,
-- DANE (every MX host / some), MTA-STS by mode, TLS-RPT, and the domains (and, with
-- weights, the mail) protected against downgrade (domain_policy.downgrade_protected).
-- dnssec_unknown: domains whose crawl had no validating resolver (DNSSEC columns NULL).
SELECT label,
       COUNT(*) AS domains,
       SUM(CASE WHEN dnssec THEN 1 ELSE 0 END) AS dnssec,
       SUM(CASE WHEN dane = 'all' THEN 1 ELSE 0 END) AS dane_all,
       SUM(CASE WHEN dane = 'partial' THEN 1 ELSE 0 END) AS dane_partial,
       SUM(CASE WHEN mta_sts = 'enforce' THEN 1 ELSE 0 END) AS mta_sts_enforce,
       SUM(CASE WHEN mta_sts = 'testing' THEN 1 ELSE 0 END) AS mta_sts_testing,
       SUM(CASE WHEN mta_sts = 'none' THEN 1 ELSE 0 END) AS mta_sts_none,
       SUM(CASE WHEN mta_sts = 'invalid' THEN 1 ELSE 0 END) AS mta_sts_invalid,
       SUM(CASE WHEN tls_rpt = 'valid' THEN 1 ELSE 0 END) AS tls_rpt_valid,
       SUM(CASE WHEN tls_rpt = 'invalid' THEN 1 ELSE 0 END) AS tls_rpt_invalid,
       SUM(CASE WHEN downgrade_protected THEN 1 ELSE 0 END) AS protected,
       SUM(CASE WHEN dnssec IS NULL THEN 1 ELSE 0 END) AS dnssec_unknown,
       SUM(weight) AS weight,
       SUM(CASE WHEN downgrade_protected THEN weight END) AS protected_weight
FROM domain_policy
WHERE run_id = :run
GROUP BY label
ORDER BY COUNT(*) DESC, COALESCE(label, '');
