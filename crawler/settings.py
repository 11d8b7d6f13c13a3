"""Settings of the mxcensus crawler (see README, "Settings").

Grouped by part, enabling flags first, units in comments. Every value can be
overridden with ``scrapy crawl tld_mx -s NAME=value``.
"""

BOT_NAME = "mxcensus"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
COMMANDS_MODULE = "crawler.commands"

# --- Storage -------------------------------------------------------------
DATABASE_URL = "sqlite:///mxcensus.sqlite"
DATABASE_BATCH_SIZE = 2000  # rows per write (all tables together)
DATABASE_FLUSH_INTERVAL = 2.0  # seconds between writes of a partial batch
DATABASE_RETRY_FOR = 300.0  # seconds a batch is retried (dropped connection, failover)
DATABASE_SPOOL_DIR = "."  # where rows go when the database is lost (replayed by the next crawl)
DATABASE_DEDUP_CACHE = 20_000  # shared rows per table remembered as written (2x at most)

# --- The run: several crawls (shards, resumes) as one measurement ----------
RUN_LEASE = 300.0  # seconds without heartbeat before a crawl's claims lapse
RUN_HEARTBEAT = 30.0  # seconds between a crawl's heartbeats
RUN_CLAIM_WAIT = 5.0  # seconds before asking again for an IP another crawl is probing

ITEM_PIPELINES = {
    "pipelines.classify.ClassifyPipeline": 300,
    "pipelines.store.StorePipeline": 800,
}

# `-o items.jsonl` / `.json` / `.csv`: the items as plain JSON values (crawler/exporters.py)
FEED_EXPORTERS = {
    "json": "crawler.exporters.JsonExporter",
    "jsonlines": "crawler.exporters.JsonLinesExporter",
    "jsonl": "crawler.exporters.JsonLinesExporter",
    "jl": "crawler.exporters.JsonLinesExporter",
    "csv": "crawler.exporters.CsvExporter",
}

# --- DNS (dnspython through the `dns` download handler) -------------------
DNS_NAMESERVERS = ""  # "ip", "ip:port" or "[ipv6]:port", comma-separated; "" = system resolver
DNS_TIMEOUT = 5.0  # seconds per try (Scrapy's own resolver reads the same name)
DNS_TRIES = 3  # tries per query before a timeout is final
DNS_CACHE_SIZE = 20_000  # MX hosts' answers kept while they recur (2x this at most)
# -a depth=policy: "NAME TYPE" a validating resolver must answer SERVFAIL (and answer with
# CD); checked at crawl start. Without a validating resolver DNSSEC facts are NULL.
DNSSEC_CHECK = "dnssec-failed.org A"

# --- SMTP / STARTTLS probe (the `smtp` download handler) -----------------
SMTP_PORT = 25
SMTP_EHLO_NAME = ""  # "" = the machine's FQDN; must be fully qualified
SMTP_CONNECT_TIMEOUT = 10.0  # seconds
SMTP_BANNER_TIMEOUT = 30.0  # seconds: tarpits and postscreen delay greetings
SMTP_COMMAND_TIMEOUT = 30.0  # seconds per command reply
SMTP_TLS_TIMEOUT = 30.0  # seconds for the TLS handshake
SMTP_PROBE_TIMEOUT = 120.0  # seconds: total deadline per attempt
SMTP_RETRIES = 1  # further attempts after a transient outcome
SMTP_RETRY_DELAY = 30.0  # seconds before a retry (rescheduled: it holds no download slot)
SMTP_MAX_PER_IP = 1  # concurrent connections to one IP
SMTP_SNI_PROBES = 4  # probes per IP per run with different SNI names
SMTP_IPV6 = "auto"  # auto | on | off

TLS_CA_BUNDLE = ""  # "" = certifi's bundle (SMTP verdicts and MTA-STS policy fetches)

# --- MTA-STS policy fetch (-a depth=policy; the `mta-sts` download handler) --
MTA_STS_PORT = 443  # the policy host's HTTPS port (RFC 8461 §3.3; tests serve elsewhere)
MTA_STS_TIMEOUT = 30.0  # seconds: total deadline per fetch (DNS, TLS, 64 KiB body)
MTA_STS_MAX_PER_IP = 1  # concurrent fetches to one address

# --- Targets --------------------------------------------------------------
ALLOW_NONPUBLIC_TARGETS = False  # loopback, private, reserved addresses are skipped
EXCLUDE_FILE = ""  # domains and CIDR ranges never to scan

# --- Scrapy ---------------------------------------------------------------
DOWNLOAD_HANDLERS = {
    "dns": "crawler.handlers.dns.DnsDownloadHandler",
    "smtp": "crawler.handlers.smtp.SmtpDownloadHandler",
    "mta-sts": "crawler.handlers.https_policy.PolicyDownloadHandler",
}
CONCURRENT_REQUESTS = 64  # the crawl's cap; the per-IP cap lives in the SMTP handler
# One download slot per handler (the spider names it), not Scrapy's one per host: that
# would be a slot per domain and per IP (about 2 KB each, kept for a minute), and its
# per-slot cap does not hold under asyncio anyway (docs/design.md, "Known pitfalls"). Uncapped and
# without delay: CONCURRENT_REQUESTS caps them, SMTP_MAX_PER_IP caps each server.
UNCAPPED = 2**31 - 1
DOWNLOAD_SLOTS = {
    "dns": {"concurrency": UNCAPPED, "delay": 0},
    "smtp": {"concurrency": UNCAPPED, "delay": 0},
    "mta-sts": {"concurrency": UNCAPPED, "delay": 0},  # MTA_STS_MAX_PER_IP caps each host
}
# Tasks per callback output; a callback yields a few (docs/design.md, "Known pitfalls").
CONCURRENT_ITEMS = 1
DOWNLOAD_DELAY = 0
DOWNLOAD_TIMEOUT = 600  # only a safety net: the handlers enforce their own deadlines
# Each domain and each IP is requested once by the spider itself; Scrapy's
# fingerprint set would grow with the list for nothing.
DUPEFILTER_CLASS = "scrapy.dupefilters.BaseDupeFilter"
SCHEDULER_PRIORITY_QUEUE = "scrapy.pqueues.ScrapyPriorityQueue"

# HTTP-only or harmful here (docs/design.md, "Known pitfalls").
ROBOTSTXT_OBEY = False
RETRY_ENABLED = False  # the SMTP handler retries transient outcomes itself
COOKIES_ENABLED = False
METAREFRESH_ENABLED = False
HTTPPROXY_ENABLED = False
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
REDIRECT_ENABLED = True  # for fetching a list by URL

# Every request pays each middleware's hooks; a crawl makes about three per probe. Off:
# what only HTTP pages need (the list fetch needs redirects alone) and what watches the
# spider's output (depth, URL length, referer, meta copies, start marks; this spider
# yields only its own requests, and the handlers answer every request with 200). The
# crawl's own stats count domains and probes.
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
    "scrapy.downloadermiddlewares.httpauth.HttpAuthMiddleware": None,
    "scrapy.downloadermiddlewares.defaultheaders.DefaultHeadersMiddleware": None,
    "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware": None,
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": None,
    "scrapy.downloadermiddlewares.stats.DownloaderStats": None,
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.ListRedirectMiddleware": 600,
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.start.StartSpiderMiddleware": None,  # probes outrank by priority
    "scrapy.spidermiddlewares.httperror.HttpErrorMiddleware": None,  # handlers answer 200
    "scrapy.spidermiddlewares.referer.RefererMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,
}

# Scrapy re-reads a callback's source on every response to warn about generators that
# return a value (its cache misses bound methods): ~9% of the crawl's CPU. Ours do not.
WARN_ON_GENERATOR_RETURN_VALUE = False

LOG_LEVEL = "INFO"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
STATS_CLASS = "crawler.stats.CrawlStats"  # Scrapy's, without a per-access shim (see there)
# Startup objects frozen, young collections every this many allocations (crawler/heap.py);
# 0 = Python's defaults (700).
GC_YOUNG_THRESHOLD = 10_000
# Scrapy's "Crawled N pages" line gives way to the crawl's own (crawler/progress.py).
PROGRESS_INTERVAL = 60.0  # seconds between progress lines in the log; 0 = none
EXTENSIONS = {
    "crawler.heap.GarbageCollector": 0,
    "scrapy.extensions.logstats.LogStats": None,
    "crawler.progress.Progress": 500,
}
