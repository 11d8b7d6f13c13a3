-- Strict / Opportunistic / Failure / None by unit (Facebook's Figure 1).
-- Domains count their primary MX hosts' category; "all_email" weighs each
-- domain by its weight (lists with a weight column). error and NULL are
-- counted apart (see connection_errors.sql), not in the shares.
SELECT unit, category, n, 1.0 * n / SUM(n) OVER (PARTITION BY unit) AS share
FROM (
    SELECT 'all_email' AS unit, primary_category AS category, SUM(weight) AS n
    FROM domain_results
    WHERE run_id = :run AND weight IS NOT NULL
      AND primary_category IN ('strict', 'opportunistic', 'failure', 'none')
    GROUP BY primary_category
    UNION ALL
    SELECT 'domain', primary_category, COUNT(*)
    FROM domain_results
    WHERE run_id = :run AND primary_category IN ('strict', 'opportunistic', 'failure', 'none')
    GROUP BY primary_category
    UNION ALL
    SELECT 'mx_host', category, COUNT(*)
    FROM mx_results
    WHERE run_id = :run AND category IN ('strict', 'opportunistic', 'failure', 'none')
    GROUP BY category
    UNION ALL
    SELECT 'ip', category, COUNT(*)
    FROM ip_results
    WHERE run_id = :run AND category IN ('strict', 'opportunistic', 'failure', 'none')
    GROUP BY category
) counts
ORDER BY unit, category;
