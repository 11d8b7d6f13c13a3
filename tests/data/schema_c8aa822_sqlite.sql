-- A database as mxcensus made it at commit c8aa822 (the baseline migration 0001), with a
-- few rows: written by tests/data/make_schema_c8aa822.py from that commit's code
-- (sqlite3 iterdump() of the file it made).
-- Frozen: never regenerate it after a schema change; tests/test_migrations.py upgrades it.
BEGIN TRANSACTION;
CREATE TABLE certificates (
	sha256 VARCHAR(64) NOT NULL, 
	der BLOB NOT NULL, 
	subject TEXT, 
	issuer TEXT, 
	not_before DATETIME, 
	not_after DATETIME, 
	key_type TEXT, 
	key_bits INTEGER, 
	san_dns JSON, 
	parse_error TEXT, 
	PRIMARY KEY (sha256)
);
INSERT INTO "certificates" VALUES('abababababababababababababababababababababababababababababababab',X'3082010A0282010100000102FF','CN=mx1.example.test','CN=Test CA','2026-11-23 11:05:34.000000','2027-11-23 11:05:34.000000','RSA',2048,'["mx1.example.test"]',NULL);
CREATE TABLE crawls (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	label TEXT, 
	source TEXT NOT NULL, 
	source_sha256 VARCHAR(64), 
	shard VARCHAR(20), 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(20) NOT NULL, 
	finish_reason TEXT, 
	versions JSON NOT NULL, 
	settings JSON NOT NULL, 
	counts JSON, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "crawls" VALUES(1,1,'fixture','domains.txt','cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd',NULL,'2026-11-23 11:05:34.000000','2026-11-23 11:05:34.000000','finished','finished','{"mxcensus": "0.1.0", "openssl": "OpenSSL 3.5.0"}','{"SMTP_PORT": 25, "DNS_TIMEOUT": 5.0}','{"domains": 3, "invalid": 1, "invalid_examples": ["-bad-"]}');
CREATE TABLE domains (
	run_id INTEGER NOT NULL, 
	domain TEXT NOT NULL, 
	crawl_id INTEGER NOT NULL, 
	label TEXT, 
	weight FLOAT, 
	line INTEGER NOT NULL, 
	status VARCHAR(30) NOT NULL, 
	null_mx BOOLEAN NOT NULL, 
	implicit_mx BOOLEAN NOT NULL, 
	mx_count INTEGER NOT NULL, 
	mx_rrset JSON NOT NULL, 
	dns_detail TEXT, 
	PRIMARY KEY (run_id, domain), 
	FOREIGN KEY(run_id) REFERENCES runs (id), 
	FOREIGN KEY(crawl_id) REFERENCES crawls (id)
);
INSERT INTO "domains" VALUES(1,'example.test',1,'fixture',2.5,1,'ok',0,0,2,'["10 mx1.example.test.", "20 mx2.example.test."]',NULL);
INSERT INTO "domains" VALUES(1,'literal.test',1,'fixture',NULL,2,'ok',0,0,1,'["10 [192.0.2.99]."]',NULL);
INSERT INTO "domains" VALUES(1,'missing.test',1,'fixture',2.5,4,'nxdomain',0,0,0,'[]','NXDOMAIN');
CREATE TABLE mx_addresses (
	run_id INTEGER NOT NULL, 
	mx_host TEXT NOT NULL, 
	ip VARCHAR(45) NOT NULL, 
	family INTEGER NOT NULL, 
	skip_reason VARCHAR(30), 
	PRIMARY KEY (run_id, mx_host, ip), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "mx_addresses" VALUES(1,'mx1.example.test','192.0.2.1',4,NULL);
INSERT INTO "mx_addresses" VALUES(1,'mx2.example.test','192.0.2.2',4,NULL);
INSERT INTO "mx_addresses" VALUES(1,'mx2.example.test','10.0.0.2',4,'non_public_address');
CREATE TABLE mx_hosts (
	run_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	canonical_name TEXT, 
	dns_outcome VARCHAR(20) NOT NULL, 
	dns_detail TEXT, 
	ip_literal BOOLEAN NOT NULL, 
	PRIMARY KEY (run_id, name), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "mx_hosts" VALUES(1,'mx1.example.test','mx1.provider.test','ok',NULL,0);
INSERT INTO "mx_hosts" VALUES(1,'mx2.example.test',NULL,'ok',NULL,0);
INSERT INTO "mx_hosts" VALUES(1,'192.0.2.99',NULL,'ok',NULL,1);
CREATE TABLE mx_records (
	run_id INTEGER NOT NULL, 
	mx_host TEXT NOT NULL, 
	domain TEXT NOT NULL, 
	preference INTEGER NOT NULL, 
	implicit BOOLEAN NOT NULL, 
	PRIMARY KEY (run_id, mx_host, domain), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "mx_records" VALUES(1,'mx1.example.test','example.test',10,0);
INSERT INTO "mx_records" VALUES(1,'mx2.example.test','example.test',20,0);
INSERT INTO "mx_records" VALUES(1,'192.0.2.99','literal.test',10,0);
CREATE TABLE probes (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	crawl_id INTEGER NOT NULL, 
	ip VARCHAR(45) NOT NULL, 
	port INTEGER NOT NULL, 
	sni TEXT NOT NULL, 
	started_at DATETIME NOT NULL, 
	attempt_count INTEGER NOT NULL, 
	wire_outcome VARCHAR(20) NOT NULL, 
	error VARCHAR(30), 
	error_stage VARCHAR(20), 
	error_detail TEXT, 
	flags TEXT, 
	banner_code INTEGER, 
	banner_text TEXT, 
	ehlo_code INTEGER, 
	ehlo_text TEXT, 
	helo_code INTEGER, 
	helo_text TEXT, 
	extensions TEXT, 
	starttls_advertised BOOLEAN, 
	starttls_code INTEGER, 
	starttls_text TEXT, 
	plaintext_after_starttls BLOB, 
	tls_version VARCHAR(10), 
	cipher TEXT, 
	forward_secrecy BOOLEAN, 
	kx_group TEXT, 
	cert_sha256 VARCHAR(64), 
	chain JSON, 
	chain_reasons TEXT, 
	verify_error TEXT, 
	cert_parse_error TEXT, 
	leaf_names JSON, 
	post_tls_ehlo_code INTEGER, 
	post_tls_ehlo_text TEXT, 
	post_tls_extensions TEXT, 
	quit_sent BOOLEAN NOT NULL, 
	timings JSON NOT NULL, 
	transcript JSON NOT NULL, 
	attempts JSON NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (run_id, ip, port, sni), 
	FOREIGN KEY(run_id) REFERENCES runs (id), 
	FOREIGN KEY(crawl_id) REFERENCES crawls (id)
);
INSERT INTO "probes" VALUES(1,1,1,'192.0.2.1',25,'mx1.example.test','2026-11-23 11:05:34.000000',1,'tls',NULL,NULL,NULL,'plaintext_after_starttls',220,'mx ESMTP',250,NULL,NULL,NULL,'PIPELINING STARTTLS',1,220,NULL,X'3235302073747261790D0A','TLSv1.3','TLS_AES_256_GCM_SHA384',1,'X25519','abababababababababababababababababababababababababababababababab','["abababababababababababababababababababababababababababababababab"]',NULL,NULL,NULL,'["mx1.example.test"]',250,NULL,NULL,1,'{"connect": 0.01, "banner": 0.02}','[["<", "220 mx ESMTP"], [">", "EHLO scanner.test"]]','[{"started_at": "2026-11-23T11:05:34+00:00", "outcome": "ok"}]');
INSERT INTO "probes" VALUES(2,1,1,'192.0.2.2',25,'mx2.example.test','2026-11-23 11:05:34.000000',1,'none',NULL,NULL,NULL,NULL,220,'mx ESMTP',250,NULL,NULL,NULL,'PIPELINING',0,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,1,'{"connect": 0.01, "banner": 0.02}','[["<", "220 mx ESMTP"], [">", "EHLO scanner.test"]]','[{"started_at": "2026-11-23T11:05:34+00:00", "outcome": "ok"}]');
CREATE TABLE runs (
	id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO "runs" VALUES(1,'fixture-20261123T110534Z-0001','2026-11-23 11:05:34.000000');
CREATE TABLE targets (
	run_id INTEGER NOT NULL, 
	mx_host TEXT NOT NULL, 
	ip VARCHAR(45) NOT NULL, 
	port INTEGER NOT NULL, 
	sni TEXT NOT NULL, 
	category VARCHAR(20) NOT NULL, 
	reasons TEXT, 
	error VARCHAR(30), 
	error_stage VARCHAR(20), 
	flags TEXT, 
	PRIMARY KEY (run_id, mx_host, ip), 
	FOREIGN KEY(run_id) REFERENCES runs (id)
);
INSERT INTO "targets" VALUES(1,'mx1.example.test','192.0.2.1',25,'mx1.example.test','strict',NULL,NULL,NULL,NULL);
INSERT INTO "targets" VALUES(1,'mx2.example.test','192.0.2.2',25,'mx2.example.test','none',NULL,NULL,NULL,NULL);
CREATE INDEX ix_crawls_run_id ON crawls (run_id);
CREATE INDEX ix_mx_records_domain ON mx_records (run_id, domain);
CREATE INDEX ix_mx_addresses_ip ON mx_addresses (ip);
CREATE INDEX ix_probes_cert_sha256 ON probes (cert_sha256);
CREATE VIEW target_results AS 
SELECT a.run_id, a.mx_host, a.ip, t.port, t.sni, t.category, t.reasons, t.error,
       t.error_stage, a.skip_reason,
       -- the probe's flags, then the target's (sni_probes_exhausted sorts after them all)
       CASE WHEN t.flags IS NULL THEN p.flags WHEN p.flags IS NULL THEN t.flags
            ELSE p.flags || ',' || t.flags END AS flags,
       p.starttls_advertised, p.tls_version, p.cipher, p.forward_secrecy, p.kx_group,
       p.cert_sha256, c.key_type, c.key_bits
FROM mx_addresses a
LEFT JOIN targets t ON t.run_id = a.run_id AND t.mx_host = a.mx_host AND t.ip = a.ip
LEFT JOIN probes p
       ON p.run_id = t.run_id AND p.ip = t.ip AND p.port = t.port AND p.sni = t.sni
LEFT JOIN certificates c ON c.sha256 = p.cert_sha256
UNION ALL
SELECT h.run_id, h.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'ip_literal_mx', NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM mx_hosts h
WHERE h.ip_literal;
CREATE VIEW mx_results AS 
SELECT h.run_id, h.name AS mx_host,
       EXISTS (SELECT 1 FROM mx_records r
               WHERE r.run_id = h.run_id AND r.mx_host = h.name AND r.implicit) AS implicit,
       COUNT(tr.ip) AS ip_count,
       CASE MAX(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END AS category,
       CASE MIN(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END AS best_category,
       CASE WHEN COUNT(tr.category) > 0 THEN
            MAX(CASE WHEN tr.starttls_advertised THEN 1 ELSE 0 END) = 1 END AS starttls_any,
       CASE WHEN COUNT(tr.category) > 0 THEN
            MAX(CASE WHEN tr.category <> 'error' THEN 1 ELSE 0 END) = 1 END AS answered
FROM mx_hosts h
LEFT JOIN target_results tr ON tr.run_id = h.run_id AND tr.mx_host = h.name
GROUP BY h.run_id, h.name;
CREATE VIEW ip_results AS 
SELECT g.run_id, g.ip, g.port, g.mx_host_count, g.domain_count, g.category, g.best_category,
       fp.tls_version, fp.cipher, fp.forward_secrecy  -- its first TLS session, if any
FROM (
    SELECT tr.run_id, tr.ip, MAX(tr.port) AS port,
           COUNT(DISTINCT tr.mx_host) AS mx_host_count,
           COUNT(DISTINCT r.domain) AS domain_count,
           CASE MAX(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END AS category,
           CASE MIN(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END AS best_category
    FROM target_results tr
    LEFT JOIN mx_records r ON r.run_id = tr.run_id AND r.mx_host = tr.mx_host
    WHERE tr.ip IS NOT NULL
    GROUP BY tr.run_id, tr.ip
) g
LEFT JOIN probes fp ON fp.run_id = g.run_id AND fp.ip = g.ip
     AND fp.id = COALESCE(
         (SELECT MIN(p.id) FROM probes p
          WHERE p.run_id = g.run_id AND p.ip = g.ip AND p.tls_version IS NOT NULL),
         (SELECT MIN(p.id) FROM probes p WHERE p.run_id = g.run_id AND p.ip = g.ip));
CREATE VIEW domain_mx AS 
SELECT run_id, domain, mx_host, preference, implicit FROM mx_records;
CREATE VIEW domain_results AS 
SELECT d.run_id, d.label, d.domain, d.weight, d.status, d.mx_count, d.implicit_mx,
       CASE WHEN d.status = 'ok' THEN CASE MIN(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END END
            AS best_category,
       CASE WHEN d.status = 'ok' THEN CASE MAX(CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' THEN 1 ELSE 0 END) = 1 THEN 'error' END END END
            AS worst_category,
       CASE WHEN d.status = 'ok' THEN CASE MAX(CASE WHEN r.preference = (SELECT MIN(p.preference) FROM mx_records p WHERE p.run_id = r.run_id AND p.domain = r.domain) THEN CASE tr.category WHEN 'strict' THEN 1 WHEN 'opportunistic' THEN 2 WHEN 'failure' THEN 3 WHEN 'none' THEN 4 END END) WHEN 1 THEN 'strict' WHEN 2 THEN 'opportunistic' WHEN 3 THEN 'failure' WHEN 4 THEN 'none' ELSE CASE WHEN MAX(CASE WHEN tr.category = 'error' AND r.preference = (SELECT MIN(p.preference) FROM mx_records p WHERE p.run_id = r.run_id AND p.domain = r.domain) THEN 1 ELSE 0 END) = 1 THEN 'error' END END END
            AS primary_category,
       CASE WHEN d.status = 'ok' AND COUNT(tr.category) > 0 THEN
            SUM(CASE WHEN tr.category = 'strict' THEN 1 ELSE 0 END) = COUNT(tr.category) END
            AS all_strict
FROM domains d
LEFT JOIN mx_records r ON r.run_id = d.run_id AND r.domain = d.domain
LEFT JOIN target_results tr ON tr.run_id = r.run_id AND tr.mx_host = r.mx_host
GROUP BY d.run_id, d.label, d.domain, d.weight, d.status, d.mx_count, d.implicit_mx;
COMMIT;
