"""How a crawl behaves as a whole: bad input, lists by URL, long lists,
interruption, and the settings a user is warned about."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import text

from demo.scan import ROOT, crawl, crawl_command, environment, scanner_settings
from schema.db import engine_for
from schema.examples import run_query
from tests.conftest import latest_run
from tests.expected import ANSWERED, Expected


def count(url: str, sql: str) -> int:
    with engine_for(url).connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.fixture
def settings(net, tmp_path) -> dict[str, str]:
    return {**scanner_settings(net), "DATABASE_URL": f"sqlite:///{tmp_path / 'scan.sqlite'}"}


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "cannot open the list"),
        (
            "Name,Other\nfoo.test,bar\n",
            (),
            "no domain column in the header (seen: 'Name', 'Other')",
        ),
        ("domain\nstrict.test\n", ("column=mail",), "mail"),
        ("strict.test\n", ("shard=3/2",), "shard must be K/N"),
        ("strict.test\n", ("label=x", "label_column=country"), "not both"),
        ("strict.test\n", ("lable=x",), "unknown spider argument lable; tld_mx takes: domains"),
    ],
)
def test_bad_arguments_fail_at_start_with_a_clear_message(
    settings, tmp_path, content, args, message
):
    path = tmp_path / "list.csv"
    if content is not None:
        path.write_text(content)
    result = crawl(path, settings, *args, timeout=60)
    assert result.returncode == 2  # a usage error, as Scrapy's own
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert (
        not (tmp_path / "scan.sqlite").exists()
        or count(settings["DATABASE_URL"], "SELECT COUNT(*) FROM domains") == 0
    )


class _ListServer(BaseHTTPRequestHandler):
    """Serves a CSV list at /list.csv, and /list redirecting to it."""

    body = b"Domain name,country\nstrict.test,IT\nplain.test,DE\nnot a domain,FR\n"

    def do_GET(self) -> None:
        if self.path == "/list":
            self.send_response(302)
            self.send_header("Location", "/list.csv")
            self.end_headers()
            return
        if self.path != "/list.csv":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def list_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ListServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/list"
    server.shutdown()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("SMTP_PORT=abc", "bad setting: SMTP_PORT='abc': a whole number is needed"),
        ("DNS_TIMEOUT=x", "bad setting: DNS_TIMEOUT='x': a number is needed"),
        ("DNS_NAMESERVERS=not-an-ip", "'not-an-ip' is not an IP address"),
    ],
)
def test_a_bad_setting_is_one_line_and_a_usage_error(settings, tmp_path, setting, message):
    path = tmp_path / "list.txt"
    path.write_text("strict.test\n")
    name, value = setting.split("=", 1)
    result = crawl(path, {**settings, name: value}, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_crawl_help_lists_the_spider_arguments():
    command = [sys.executable, "-m", "scrapy", "crawl", "tld_mx", "-h"]
    result = subprocess.run(
        command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for name in ("domains", "label", "label_column", "column", "weight_column", "run", "shard"):
        assert f"\n  {name} " in result.stdout


def test_a_list_given_by_url_is_fetched_through_scrapy(settings, list_url, spec):
    result = crawl(list_url, settings, "label_column=country", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    url = settings["DATABASE_URL"]
    with engine_for(url).connect() as conn:
        rows = conn.execute(text("SELECT domain, label, status FROM domains ORDER BY domain")).all()
        crawl_row = conn.execute(text("SELECT source, counts FROM crawls")).one()
    expected = spec.expected_domains()
    assert [tuple(r) for r in rows] == [
        ("plain.test", "DE", str(expected["plain.test"])),
        ("strict.test", "IT", str(expected["strict.test"])),
    ]
    assert crawl_row.source == list_url
    assert '"invalid": 1' in crawl_row.counts


def test_a_long_list_is_fed_as_the_scheduler_drains(settings, tmp_path):
    """5,000 domains are read lazily: the requests in flight stay near the
    downloader's concurrency instead of the list's length, and none is lost."""
    path = tmp_path / "long.txt"
    path.write_text("".join(f"d{i}.nx.test\n" for i in range(5000)))
    watched = {**settings, "CONCURRENT_REQUESTS": "32", "PROGRESS_INTERVAL": "0.5"}
    result = crawl(path, {**watched, "LOG_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr[-3000:]
    # Progress every PROGRESS_INTERVAL, the total estimated while the list streams.
    progress = [line for line in result.stderr.splitlines() if "] INFO: progress: " in line]
    assert any(re.search(r"progress: [\d,]+ of ~[\d,]+ domains", line) for line in progress)
    assert any("SMTP 0 probes" in line and "domains/s" in line for line in progress)
    assert "Crawled 0 pages" not in result.stderr  # Scrapy's LogStats gave way
    stats = dict(
        line.strip().strip(",").split(": ", 1)
        for line in result.stderr.splitlines()
        if line.strip().startswith("'mxcensus/")
    )
    assert int(stats["'mxcensus/domains/max_pending'"]) <= 2 * 32
    url = settings["DATABASE_URL"]
    assert count(url, "SELECT COUNT(*) FROM domains WHERE status = 'nxdomain'") == 5000


def test_an_interrupted_crawl_keeps_its_facts(net, spec, settings, tmp_path):
    """Ctrl-C: Scrapy stops gracefully, the pipeline flushes what it has, and the
    crawl's record says it was interrupted."""
    path = tmp_path / "domains.txt"
    path.write_text("\n".join(spec.domain_lines) + "\n")
    slow = {**settings, "SMTP_RETRY_DELAY": "20", "DATABASE_FLUSH_INTERVAL": "0.5"}
    process = subprocess.Popen(
        crawl_command(path, slow), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    url = settings["DATABASE_URL"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            if count(url, "SELECT COUNT(*) FROM probes") >= 30:
                break
        except Exception:  # the tables are not there yet
            continue
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr[-3000:]  # interrupted
    engine = engine_for(url)
    with engine.connect() as conn:
        status, reason = conn.execute(text("SELECT status, finish_reason FROM crawls")).one()
        domains = conn.execute(text("SELECT COUNT(*) FROM domains")).scalar_one()
        probes = conn.execute(text("SELECT COUNT(*) FROM probes")).scalar_one()
    assert (status, reason) == ("interrupted", "shutdown")
    assert domains == len(spec.expected_domains())
    assert probes >= 30
    assert latest_run(engine) == 1


def test_a_greeting_slower_than_the_command_timeout_is_awaited(net, spec, settings, tmp_path):
    """Default SMTP_BANNER_TIMEOUT (30 s) with a command timeout shorter than the
    greeting's delay: the banner has its own deadline, so the server is reached."""
    delayed = [s for s in spec.servers.values() if s.esmtp and s.esmtp.banner_delay >= 1]
    assert delayed, "the spec declares a delayed greeting"
    server = delayed[0]
    domain = next(
        d
        for d, ds in spec.domains.items()
        if any(server.ip in spec.addresses(host) for host, _ in spec.mx_hosts(d))
    )
    path = tmp_path / "one.txt"
    path.write_text(domain + "\n")
    defaults = {k: v for k, v in settings.items() if k != "SMTP_BANNER_TIMEOUT"}
    fast_commands = {**defaults, "SMTP_COMMAND_TIMEOUT": str(server.esmtp.banner_delay / 2)}
    result = crawl(path, fast_commands, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        probe = conn.execute(
            text("SELECT banner_code, error, timings FROM probes WHERE ip = :ip"), {"ip": server.ip}
        ).one()
    assert probe.banner_code == 220 and probe.error is None


def test_a_bare_ehlo_name_is_warned_about(settings, tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("plain.test\n")
    result = crawl(path, {**settings, "SMTP_EHLO_NAME": "scanner"}, timeout=120)
    assert result.returncode == 0
    assert "SMTP_EHLO_NAME 'scanner' is not fully qualified" in result.stderr


def test_weights_give_the_all_email_bar(net, spec, settings, tmp_path):
    """A weight column (mail volume) sums under each domain's primary category;
    an empty or unreadable weight is counted and left out of the weighted sums."""
    domains = list(spec.expected_domains())
    weights = {d: float(i % 7 + 1) for i, d in enumerate(domains)}
    unweighted = domains[0]
    lines = ["domain,volume"] + [f"{d},{'' if d == unweighted else weights[d]}" for d in domains]
    path = tmp_path / "weighted.csv"
    path.write_text("\n".join(lines) + "\n")
    result = crawl(path, settings, "weight_column=volume", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    primary = {d: r["primary_category"] for d, r in Expected(spec).domain_results().items()}
    want: dict[str, float] = {}
    for d, category in primary.items():
        if category in ANSWERED and d != unweighted:
            want[category] = want.get(category, 0) + weights[d]
    engine = engine_for(settings["DATABASE_URL"])
    rows = run_query(engine, "figure1_categories", latest_run(engine))
    assert {r["category"]: r["n"] for r in rows if r["unit"] == "all_email"} == want
    url = settings["DATABASE_URL"]
    assert count(url, "SELECT COUNT(*) FROM domains WHERE weight IS NULL") == 1


def test_a_run_joined_by_a_second_crawl_stays_consistent(net, spec, settings, tmp_path):
    """`-a run=NAME` twice: one run with two crawls, no duplicate rows, and the
    second crawl takes the run's answers instead of probing any server again."""
    path = tmp_path / "some.txt"
    path.write_text("\n".join(list(spec.expected_domains())[:12]) + "\n")
    first = crawl(path, settings, "run=twice", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    time.sleep(0.5)
    before = len(net.connections())
    second = crawl(path, settings, "run=twice", timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    time.sleep(0.5)
    assert net.connections()[before:] == []
    url = settings["DATABASE_URL"]
    assert count(url, "SELECT COUNT(*) FROM runs") == 1
    assert count(url, "SELECT COUNT(*) FROM crawls WHERE status = 'finished'") == 2
    assert count(url, "SELECT COUNT(*) FROM domains") == 12
    with engine_for(url).connect() as conn:
        rows = conn.execute(text("SELECT category, tls_version FROM target_results")).all()
        probes = conn.execute(text("SELECT COUNT(*), COUNT(DISTINCT crawl_id) FROM probes")).one()
    assert rows and all(
        (category in ("strict", "opportunistic")) == (tls is not None)
        for category, tls in rows
        if category is not None
    )
    assert probes[0] > 0 and probes[1] == 1, "every probe is the first crawl's"


def test_targets_that_must_not_be_probed_are_never_connected_to(net, settings, tmp_path):
    """EXCLUDE_FILE (a domain: never resolved; a range: never connected to),
    SMTP_IPV6=off, and loopback without ALLOW_NONPUBLIC_TARGETS: each target gets
    its skip reason, and the servers' own log shows no connection to it."""
    path = tmp_path / "some.txt"
    path.write_text("strict.test\nv6.test\nplain.test\ncnamed.test\n")
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("cnamed.test\n127.4.0.0/16  # the owner of plain.test's MX asked\n")
    before = len(net.connections())
    result = crawl(path, {**settings, "EXCLUDE_FILE": str(exclude), "SMTP_IPV6": "off"})
    assert result.returncode == 0, result.stderr[-3000:]
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        rows = conn.execute(text("SELECT mx_host, ip, category, skip_reason FROM target_results"))
        targets = {(r.mx_host, r.ip): (r.category, r.skip_reason) for r in rows}
        domains = conn.execute(text("SELECT domain FROM domains ORDER BY domain")).scalars().all()
    assert domains == ["plain.test", "strict.test", "v6.test"]  # cnamed.test: not resolved
    assert targets == {
        ("mx.strict.test", "127.1.0.1"): ("strict", None),
        ("mx.v6.test", "::1"): (None, "ipv6_disabled"),
        ("mx.plain.test", "127.4.0.1"): (None, "excluded"),
    }
    time.sleep(0.5)
    reached = {c["ip"] for c in net.connections()[before:]}
    assert reached == {"127.1.0.1"}

    strict_policy = {k: v for k, v in settings.items() if k != "ALLOW_NONPUBLIC_TARGETS"}
    result = crawl(path, strict_policy, "run=public-only")
    assert result.returncode == 0, result.stderr[-3000:]
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        skips = (
            conn.execute(
                text(
                    "SELECT DISTINCT t.skip_reason FROM target_results t"
                    " JOIN runs r ON r.id = t.run_id WHERE r.name = 'public-only'"
                )
            )
            .scalars()
            .all()
        )
    assert skips == ["non_public_address"]
    time.sleep(0.5)
    assert {c["ip"] for c in net.connections()[before:]} == {"127.1.0.1"}


def test_past_the_sni_probe_cap_the_first_certificate_judges_flagged(settings, tmp_path):
    """SMTP_SNI_PROBES=1: one IP choosing its certificate by SNI, two MX names.
    The name probed first is strict; the other is judged by the certificate sent
    for the first, so hostname_mismatch, flagged sni_probes_exhausted."""
    path = tmp_path / "sni.txt"
    path.write_text("alpha-sni.test\nbeta-sni.test\n")
    result = crawl(path, {**settings, "SMTP_SNI_PROBES": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    with engine_for(settings["DATABASE_URL"]).connect() as conn:
        rows = conn.execute(
            text("SELECT mx_host, sni, category, reasons, flags FROM target_results")
        ).all()
    assert len(rows) == 2 and len({r.sni for r in rows}) == 1
    first, other = sorted(rows, key=lambda r: r.mx_host != r.sni)
    assert (first.category, first.reasons, first.flags) == ("strict", None, None)
    assert (other.category, other.reasons, other.flags) == (
        "opportunistic",
        "hostname_mismatch",
        "sni_probes_exhausted",
    )


def test_a_list_url_that_cannot_be_fetched_fails_the_crawl(settings, list_url):
    result = crawl(list_url.replace("/list", "/missing"), settings, timeout=60)
    assert result.returncode == 1
    assert "could not fetch" in result.stderr
    url = settings["DATABASE_URL"]
    assert count(url, "SELECT COUNT(*) FROM crawls WHERE status = 'failed'") == 1


def test_a_retry_waits_in_the_scheduler_not_in_a_download_slot(net, spec, settings, tmp_path):
    """Two download slots, two servers answering 421 (retried after 20 s), and 100
    names to look up: every lookup is stored before any retry is made, because a
    waiting retry holds no slot (it used to sleep in one and starve DNS)."""
    transient = {"greeting-421", "ehlo-421"}
    ips = {spec.servers[name].ip for name in transient}
    domains = [
        d
        for d in spec.domains
        if any(ip in ips for host, _ in spec.mx_hosts(d) for ip in spec.addresses(host))
    ]
    assert len(domains) >= 2
    path = tmp_path / "slow.txt"
    path.write_text("".join(f"{d}\n" for d in domains + [f"n{i}.nx.test" for i in range(100)]))
    slow = {
        **settings,
        "CONCURRENT_REQUESTS": "2",
        "SMTP_RETRY_DELAY": "20",
        "DATABASE_FLUSH_INTERVAL": "0.2",
    }
    process = subprocess.Popen(
        crawl_command(path, slow), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    url = slow["DATABASE_URL"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if count(url, "SELECT COUNT(*) FROM domains WHERE status = 'nxdomain'") == 100:
                break
        except Exception:  # the tables are not there yet
            pass
        time.sleep(0.1)
    retried_yet = count(url, "SELECT COUNT(*) FROM probes WHERE attempt_count > 1")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert retried_yet == 0, "the lookups waited for the retries"
    assert count(url, "SELECT COUNT(*) FROM probes WHERE attempt_count = 2") == len(ips)
