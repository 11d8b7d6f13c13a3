"""DNSSEC and DANE (`-a depth=policy`, issue 12): real crawls of the test network's signed
zone through a real validating resolver (unbound), compared with the spec's hand-written
[policy] declarations on SQLite and PostgreSQL; the same crawl against a resolver that
does not validate (every DNSSEC-derived fact NULL); the DANE matching rules; and what a
crawl without the depth does not ask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler
from sqlalchemy import bindparam, text

from crawler.dane import TlsaRecord, judge
from crawler.dnssec import DnssecCheck, parse_check, tlsa_bases
from crawler.handlers.dns import DnsDownloadHandler
from crawler.handlers.https_policy import PolicyDownloadHandler
from crawler.mtasts import StsRecord, mx_matches, parse_policy, parse_sts_txt, parse_tls_rpt
from crawler.settings import __dict__ as project_settings
from demo.scan import ROOT, crawl, scanner_settings
from schema.db import engine_for
from schema.examples import run_query
from schema.vocab import Dane, TlsaStatus, TlsRpt
from testnet import pki
from testnet.policy import DOMAIN_EXPECT, TLSA_PREFIX, policy_of
from testnet.spec import CertSpec
from tests.conftest import Scan, database_url, latest_run
from tests.reactor import wait

PROJECT = {k: v for k, v in project_settings.items() if k.isupper()}
# The tests' DNSSEC_CHECK: a name of the test network signed wrongly on purpose. The
# default (dnssec-failed.org) is never asked: nothing here leaves loopback.
CHECK = "dnssec-failed.sec.test A"


def resolver_of(net) -> str:
    """The validating resolver's address; unbound missing: skipped, or failed in CI."""
    if not net.resolver:
        message = "the test network runs no validating resolver (apt-get install unbound)"
        if os.environ.get("MXCENSUS_REQUIRE_UNBOUND"):
            pytest.fail(message)
        pytest.skip(message)
    return net.resolver


def policy_crawl(net, spec, url: str, directory: Path, nameservers: str) -> Scan:
    domains = directory / "policy-domains.txt"
    domains.write_text("\n".join(policy_of(spec).domains) + "\n", encoding="utf-8")
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": url,
        "DNS_NAMESERVERS": nameservers,
        "DNSSEC_CHECK": CHECK,
    }
    before = len(policy_requests(net))
    result = crawl(domains, settings, "depth=policy", "label=policy")
    assert result.returncode == 0, result.stderr[-5000:]
    engine = engine_for(url)
    # Scan.connections: here the policy servers' requests during this crawl.
    requests = policy_requests(net)[before:]
    return Scan(url, engine, latest_run(engine), result.stdout, result.stderr, requests)


def policy_requests(net) -> list[dict]:
    """Every request the test network's policy servers answered (testnet/https.py)."""
    path = Path(net.log).parent / "policy-requests.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def policy_scan(request, net, spec, tmp_path_factory) -> Scan:
    """A policy crawl of the [policy.domains] through the validating resolver."""
    nameservers = resolver_of(net)
    directory = tmp_path_factory.mktemp(f"policy-{request.param}")
    return policy_crawl(
        net, spec, database_url(request.param, request, directory), directory, nameservers
    )


@pytest.fixture(scope="session")
def unvalidated_scan(net, spec, tmp_path_factory) -> Scan:
    """The same crawl asking the authoritative server itself: no validation, no AD."""
    directory = tmp_path_factory.mktemp("policy-unvalidated")
    return policy_crawl(net, spec, f"sqlite:///{directory / 'scan.sqlite'}", directory, net.dns)


def declared_hosts(spec) -> dict[str, tuple[str, bool]]:
    """MX host -> (domain naming it, implicit), for every [policy.domains] domain."""
    hosts = {}
    for domain in policy_of(spec).domains:
        for host, implicit in spec.mx_hosts(domain):
            hosts[host] = (domain, implicit)
    return hosts


# --- the test network's resolver, checked with dnspython ---------------------------------


def ask(server: str, name: str, rdtype: str, cd: bool = False) -> dns.message.Message:
    ip, port = server.rsplit(":", 1)
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    if cd:
        query.flags |= dns.flags.CD
    return dns.query.udp(query, ip, timeout=5, port=int(port))


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "ad", "rcode_with_cd"),
    [
        ("mx.dane-ee.sec.test", "A", "NOERROR", True, "NOERROR"),  # signed: validated
        (f"{TLSA_PREFIX}mx.dane-ee.sec.test", "TLSA", "NOERROR", True, "NOERROR"),
        (f"{TLSA_PREFIX}mx.dane-bogus.sec.test", "TLSA", "SERVFAIL", False, "NOERROR"),
        ("dnssec-failed.sec.test", "A", "SERVFAIL", False, "NOERROR"),  # the tests' check
        # Denials proven by NSEC: a missing name, and an empty non-terminal.
        (f"{TLSA_PREFIX}mx.dnssec-only.sec.test", "TLSA", "NXDOMAIN", True, "NXDOMAIN"),
        ("_tcp.mx.dane-ee.sec.test", "TXT", "NOERROR", True, "NOERROR"),
        # The unsigned zone: answered, never AD.
        ("mx.strict.test", "A", "NOERROR", False, "NOERROR"),
        (f"{TLSA_PREFIX}mx.dane-insecure.test", "TLSA", "NOERROR", False, "NOERROR"),
        # Not the test network's: refused upstream, so SERVFAIL, and nothing leaves loopback.
        ("dnssec-failed.org", "A", "SERVFAIL", False, "SERVFAIL"),
    ],
)
def test_the_resolver_validates_the_signed_zone(net, name, rdtype, rcode, ad, rcode_with_cd):
    """unbound in front of the test network's DNS validates sec.test against the trust
    anchor made at start: AD on validated answers and proven denials, SERVFAIL for bad
    signatures (answered when asked with CD), no AD in the unsigned zone."""
    resolver = resolver_of(net)
    reply = ask(resolver, name, rdtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert bool(reply.flags & dns.flags.AD) is ad
    assert dns.rcode.to_text(ask(resolver, name, rdtype, cd=True).rcode()) == rcode_with_cd


def test_the_authoritative_server_signs_what_it_serves(net):
    """RRSIGs come with the signed zone's answers (and NSEC with its denials), from the
    test network's own DNS server: unbound validates, it does not make them up."""
    reply = ask(net.dns, f"{TLSA_PREFIX}mx.dane-ee.sec.test", "TLSA")
    types = {rrset.rdtype for rrset in reply.answer}
    assert types == {dns.rdatatype.TLSA, dns.rdatatype.RRSIG}
    denial = ask(net.dns, f"{TLSA_PREFIX}mx.dnssec-only.sec.test", "TLSA")
    assert denial.rcode() == dns.rcode.NXDOMAIN
    assert dns.rdatatype.NSEC in {rrset.rdtype for rrset in denial.authority}
    assert not reply.flags & dns.flags.AD  # an authoritative server never vouches


# --- a policy crawl through the validating resolver --------------------------------------


def test_the_resolver_check_is_recorded_and_logged(policy_scan):
    record = policy_scan.crawl_record()
    assert record["depth"] == "policy"
    assert record["dnssec_validating"] is True
    assert CHECK in record["dnssec_check"] and "SERVFAIL" in record["dnssec_check"]
    assert record["settings"]["DNSSEC_CHECK"] == CHECK
    assert "DNSSEC: the resolver validates" in policy_scan.stderr


def test_mx_dane_has_each_mx_hosts_declared_status(policy_scan, spec, net):
    """tlsa_status as declared by hand for every MX host of the policy domains; tlsa the
    RRset as published (read from the authoritative server with dnspython)."""
    policy = policy_of(spec)
    rows = {r["mx_host"]: r for r in policy_scan.rows("SELECT * FROM mx_dane WHERE run_id = :run")}
    hosts = declared_hosts(spec)
    assert set(rows) == set(hosts)
    for host in hosts:
        declared = policy.hosts.get(host)
        assert declared is not None and declared.tlsa_status is not None, host
        assert rows[host]["tlsa_status"] == str(declared.tlsa_status), host
        canonical = spec.canonical(host)
        owner = TLSA_PREFIX + (canonical.name if canonical else host)
        published = ask(net.dns, owner, "TLSA", cd=True)
        texts = sorted(
            f"{r.usage} {r.selector} {r.mtype} {r.cert.hex()}"
            for rrset in published.answer
            if rrset.rdtype == dns.rdatatype.TLSA
            for r in rrset
        )
        assert rows[host]["tlsa"] == (",".join(texts) or None), host
        assert rows[host]["tlsa_name"] == owner, host


def test_target_dane_is_as_declared(policy_scan, spec):
    """dane per target by RFC 7672 (usages 3 and 2 valid; wrong and unusable-only records
    mismatch; insecure, bogus and absent RRsets NULL), independent of the category."""
    policy = policy_of(spec)
    rows = policy_scan.rows(
        "SELECT mx_host, ip, category, dane FROM target_results WHERE run_id = :run"
    )
    assert rows
    for row in rows:
        declared = policy.hosts[row["mx_host"]]
        assert row["dane"] == (declared.dane and str(declared.dane)), row
    # Two independent facts: PKIX-opportunistic, DANE-valid.
    assert any(r["category"] == "opportunistic" and r["dane"] == "valid" for r in rows)


def test_domain_policy_is_as_declared(policy_scan, spec):
    policy = policy_of(spec)
    rows = {
        r["domain"]: dict(r)
        for r in policy_scan.rows("SELECT * FROM domain_policy WHERE run_id = :run")
    }
    assert set(rows) == set(policy.domains)
    for name, declared in policy.domains.items():
        assert declared.expect, name
        for key in DOMAIN_EXPECT:  # a column not declared is expected NULL
            got, value = rows[name][key], declared.expect.get(key)
            got = bool(got) if isinstance(value, bool) and got is not None else got
            assert got == value, (name, key)
        assert rows[name]["label"] == "policy"


# --- the same crawl without a validating resolver ---------------------------------------


def test_without_a_validating_resolver_dnssec_facts_are_null(unvalidated_scan, spec):
    """Never false: the authoritative server sets no AD, so nothing can be known."""
    scan = unvalidated_scan
    record = scan.crawl_record()
    assert record["dnssec_validating"] is False
    assert "does NOT validate" in scan.stderr
    dane = scan.rows("SELECT tlsa_status, tlsa FROM mx_dane WHERE run_id = :run")
    assert dane and all(r["tlsa_status"] is None for r in dane)
    assert any(r["tlsa"] for r in dane)  # the records are still shown
    targets = scan.rows("SELECT dane FROM target_results WHERE run_id = :run")
    assert targets and all(r["dane"] is None for r in targets)
    domains = scan.rows("SELECT dnssec, dane FROM domain_policy WHERE run_id = :run")
    assert len(domains) == len(policy_of(spec).domains)
    assert all(r["dnssec"] is None and r["dane"] is None for r in domains)


# --- a crawl without -a depth=policy ------------------------------------------------------


def test_a_crawl_without_the_depth_has_no_policy_facts(scan):
    assert scan.rows("SELECT 1 FROM mx_hosts WHERE run_id = :run AND tlsa_name IS NOT NULL") == []
    assert scan.rows("SELECT 1 FROM domains WHERE run_id = :run AND dnssec IS NOT NULL") == []
    assert scan.rows("SELECT 1 FROM domain_policy WHERE run_id = :run") == []
    assert scan.rows("SELECT 1 FROM target_dane WHERE run_id = :run") == []
    assert scan.crawl_record()["dnssec_validating"] is None


class Recording:
    """The handler's DNS client, recording each question it is asked."""

    def __init__(self, client):
        self.client = client
        self.asked: list[tuple[str, str, bool]] = []

    async def query(self, name, rdtype, want_dnssec=False, checking_disabled=False):
        self.asked.append((name, dns.rdatatype.to_text(rdtype), want_dnssec))
        return await self.client.query(name, rdtype, want_dnssec, checking_disabled)

    def close(self):
        self.client.close()


def recorded(reactor, net, domains, policy: bool, nameservers: str | None = None):
    settings = {**PROJECT, **scanner_settings(net), "DNSSEC_CHECK": CHECK}
    if nameservers:
        settings["DNS_NAMESERVERS"] = nameservers
    handler = build_from_crawler(DnsDownloadHandler, get_crawler(settings_dict=settings))
    handler.client = Recording(handler.client)

    async def resolve():
        if policy:
            await handler.check_resolver()
        return [await handler.resolve_domain(d, policy=policy) for d in domains]

    facts = wait(reactor, deferred_from_coro(resolve()), timeout=30)
    handler.client.close()
    return facts, handler.client.asked


def test_each_mx_hosts_tlsa_is_asked_once(reactor, net):
    """mx.dane-ee.sec.test is named by two domains: its TLSA RRset is asked once, with
    its addresses, and both domains hold the same answer."""
    facts, asked = recorded(
        reactor,
        net,
        ["dane-ee.sec.test", "dane-partial.sec.test"],
        policy=True,
        nameservers=resolver_of(net),
    )
    tlsa = [name for name, rdtype, _ in asked if rdtype == "TLSA"]
    assert tlsa.count(f"{TLSA_PREFIX}mx.dane-ee.sec.test") == 1
    assert tlsa.count(f"{TLSA_PREFIX}mx.dane-wrong.sec.test") == 1
    first, second = facts
    assert first.hosts[0] is second.hosts[0]


def test_without_the_depth_the_dns_questions_are_unchanged(reactor, net):
    """No DO bit, no TLSA, no check: a crawl without -a depth=policy costs what it did."""
    facts, asked = recorded(reactor, net, ["dane-ee.sec.test", "strict.test"], policy=False)
    assert {(name, rdtype) for name, rdtype, _ in asked} == {
        ("dane-ee.sec.test", "MX"),
        ("strict.test", "MX"),
        ("mx.dane-ee.sec.test", "A"),
        ("mx.dane-ee.sec.test", "AAAA"),
        ("mx.strict.test", "A"),
        ("mx.strict.test", "AAAA"),
    }
    assert not any(dnssec for _, _, dnssec in asked)
    assert all(f.dnssec is None and not f.policy for f in facts)
    assert all(h.tlsa is None and h.dnssec is None for f in facts for h in f.hosts)


def test_with_the_depth_the_tlsa_follows_a_secure_cname(reactor, net):
    """RFC 7672 §2.2.2: a securely expanded CNAME's target is the TLSA base name."""
    facts, asked = recorded(
        reactor, net, ["dane-cname.sec.test"], policy=True, nameservers=resolver_of(net)
    )
    host = facts[0].hosts[0]
    assert host.canonical == "smtp.dane-hosting.sec.test" and host.dnssec is True
    assert host.tlsa.name == f"{TLSA_PREFIX}smtp.dane-hosting.sec.test"
    assert host.tlsa.status is TlsaStatus.SECURE
    tlsa_questions = [name for name, rdtype, _ in asked if rdtype == "TLSA"]
    assert tlsa_questions == [f"{TLSA_PREFIX}smtp.dane-hosting.sec.test"]
    # DNSSEC facts are asked with DO; the TXT records of MTA-STS and TLS-RPT need none.
    assert all(dnssec for _, rdtype, dnssec in asked if rdtype != "TXT")
    assert {name for name, rdtype, _ in asked if rdtype == "TXT"} == {
        "_mta-sts.dane-cname.sec.test",
        "_smtp._tls.dane-cname.sec.test",
    }


# --- pure rules -------------------------------------------------------------------------


def test_dnssec_check_needs_servfail_and_an_answer_with_cd():
    assert DnssecCheck("x A", "SERVFAIL", "NOERROR").validating
    assert DnssecCheck("x A", "SERVFAIL", "NXDOMAIN").validating
    assert not DnssecCheck("x A", "NOERROR", "NOERROR").validating  # does not validate
    assert not DnssecCheck("x A", "SERVFAIL", "SERVFAIL").validating  # broken, not bogus
    assert not DnssecCheck("x A", "timeout", "timeout").validating
    assert parse_check("dnssec-failed.org A") == ("dnssec-failed.org", dns.rdatatype.A)
    with pytest.raises(ValueError):
        parse_check("dnssec-failed.org")


def test_tlsa_base_names_follow_rfc_7672():
    assert tlsa_bases("mx.a.test", "mx.b.test", True) == ("mx.b.test", "mx.a.test")
    assert tlsa_bases("mx.a.test", "mx.b.test", False) == ("mx.a.test",)
    assert tlsa_bases("mx.a.test", None, True) == ("mx.a.test",)


@pytest.fixture(scope="module")
def certs():
    specs = {
        "ca": CertSpec("ca", ca=True, cn="private CA"),
        "other-ca": CertSpec("other-ca", ca=True, cn="another CA"),
        "leaf": CertSpec("leaf", issuer="ca", names=("mx.example.test",)),
        "expired": CertSpec(
            "expired", issuer="ca", names=("mx.example.test",), valid_days=(-30, -1)
        ),
        "ee": CertSpec("ee", names=("whatever.test",), key="ec256", valid_days=(-30, -1)),
    }
    return {name: issued.der for name, issued in pki.build(specs).items()}


def record(usage, selector, mtype, der) -> TlsaRecord:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    selected = (
        der
        if selector == 0
        else x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    data = {0: selected, 1: hashlib.sha256(selected).digest(), 2: hashlib.sha512(selected).digest()}
    return TlsaRecord(usage, selector, mtype, data[mtype])


NAMES = ("mx.example.test", "mx.example.test")


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf_without_name_or_date_checks(certs, selector, mtype):
    """DANE-EE(3): an expired self-signed certificate for another name is valid."""
    verdict = judge([record(3, selector, mtype, certs["ee"])], [certs["ee"]], NAMES)
    assert verdict.dane is Dane.VALID
    wrong = judge([record(3, selector, mtype, certs["leaf"])], [certs["ee"]], NAMES)
    assert wrong.dane is Dane.MISMATCH


def test_dane_ta_needs_the_chain_and_the_name(certs):
    ta = record(2, 0, 1, certs["ca"])
    chain = [certs["leaf"], certs["ca"]]
    assert judge([ta], chain, NAMES).dane is Dane.VALID
    assert judge([record(2, 1, 2, certs["ca"])], chain, NAMES).dane is Dane.VALID
    # Dates are checked for DANE-TA (only DANE-EE waives them), at the probe's time.
    expired = [certs["expired"], certs["ca"]]
    assert judge([ta], expired, NAMES).dane is Dane.MISMATCH
    then = datetime.now(UTC) - timedelta(days=10)
    assert judge([ta], expired, NAMES, then).dane is Dane.VALID
    # The TA must be in the chain as sent, and the leaf must chain to it.
    assert judge([ta], [certs["leaf"]], NAMES).dane is Dane.MISMATCH
    assert judge([record(2, 0, 1, certs["other-ca"])], chain, NAMES).dane is Dane.MISMATCH
    assert judge([ta], [certs["ee"], certs["ca"]], NAMES).dane is Dane.MISMATCH
    # The leaf must name the MX host or the TLSA base name.
    other = ("mx.other.test", "mx.other.test")
    assert judge([ta], chain, other).dane is Dane.MISMATCH
    assert judge([ta], chain, ("mx.other.test", "mx.example.test")).dane is Dane.VALID
    # DANE-TA does not match the leaf itself as its anchor.
    assert judge([record(2, 0, 1, certs["leaf"])], chain, NAMES).dane is Dane.MISMATCH


def test_pkix_usages_are_unusable_for_smtp(certs):
    """RFC 7672 §3.1.3: records of usage 0 and 1 only: mismatch, even when they match."""
    records = [record(1, 0, 1, certs["leaf"]), record(0, 0, 1, certs["ca"])]
    verdict = judge(records, [certs["leaf"], certs["ca"]], NAMES)
    assert verdict.dane is Dane.MISMATCH and "unusable" in verdict.detail
    # A usable record beside them decides.
    records.append(record(3, 1, 1, certs["leaf"]))
    assert judge(records, [certs["leaf"], certs["ca"]], NAMES).dane is Dane.VALID


def test_tlsa_text_round_trips():
    text = "3 1 1 " + "ab" * 32
    assert str(TlsaRecord.parse(text)) == text


# --- MTA-STS and TLS-RPT ------------------------------------------------------------------


def test_policy_fetches_say_why_a_policy_is_invalid(policy_scan):
    """The fetch's facts are kept: the HTTP status, and why a policy did not count."""
    rows = {
        r["domain"]: r
        for r in policy_scan.rows(
            "SELECT domain, policy_url, policy_status, policy_mode, policy_max_age, policy_mx,"
            " policy_error FROM domain_policies WHERE run_id = :run"
        )
    }
    enforce = rows["sts-enforce.test"]
    assert enforce["policy_status"] == 200 and enforce["policy_error"] is None
    assert (enforce["policy_mode"], enforce["policy_max_age"]) == ("enforce", 604800)
    assert enforce["policy_url"].startswith("https://mta-sts.sts-enforce.test:")
    assert enforce["policy_url"].endswith("/.well-known/mta-sts.txt")
    assert "certificate verify failed" in rows["sts-untrusted.test"]["policy_error"]
    assert rows["sts-untrusted.test"]["policy_status"] is None  # no HTTP after a bad TLS
    assert rows["sts-redirect.test"]["policy_status"] == 301
    assert "text/html" in rows["sts-html.test"]["policy_error"]
    assert "65536" in rows["sts-big.test"]["policy_error"]
    assert "max_age" in rows["sts-malformed.test"]["policy_error"]
    assert rows["sts-twotxt.test"]["policy_url"] is None  # no fetch for a bad record
    assert rows["dane-ee.sec.test"]["policy_url"] is None  # nor without one


def test_each_policy_is_fetched_once_at_its_path(policy_scan, spec):
    """One fetch per domain with a valid `_mta-sts` record (declared: an mta_sts_id),
    none for the others; the Host is the policy host; a redirect is not followed. The
    untrusted certificate's server sees no request: the handshake fails before it."""
    declared = policy_of(spec).domains
    want = {f"mta-sts.{d}" for d, p in declared.items() if p.expect.get("mta_sts_id")}
    want.remove("mta-sts.sts-untrusted.test")
    hosts = Counter(r["host"].rsplit(":", 1)[0] for r in policy_scan.connections)
    assert hosts == dict.fromkeys(want, 1)
    assert {r["path"] for r in policy_scan.connections} == {"/.well-known/mta-sts.txt"}


def policy_handler(net, **overrides):
    settings = {**PROJECT, **scanner_settings(net), **overrides}
    return build_from_crawler(PolicyDownloadHandler, get_crawler(settings_dict=settings))


def fetched(reactor, handler, domain):
    try:
        return wait(reactor, deferred_from_coro(handler.fetch(domain)), timeout=30)
    finally:
        handler.client.close()


def test_a_policy_is_fetched_and_verified_against_the_bundle(reactor, net):
    fetch = fetched(reactor, policy_handler(net), "sts-enforce.test")
    assert fetch.error is None and fetch.status == 200 and fetch.ip == "127.9.1.1"
    assert "mode: enforce" in fetch.text
    # The same server, trusted by another bundle only (certifi's): not verified.
    untrusted = fetched(reactor, policy_handler(net, TLS_CA_BUNDLE=""), "sts-enforce.test")
    assert untrusted.text is None and "certificate verify failed" in untrusted.error


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"ALLOW_NONPUBLIC_TARGETS": "False"}, "non_public_address"),
        ({"EXCLUDE_FILE": "mta-sts.sts-enforce.test"}, "EXCLUDE_FILE"),
        ({"EXCLUDE_FILE": "127.9.1.1/32"}, "excluded"),
    ],
)
def test_a_policy_host_is_a_target_like_any_other(reactor, net, tmp_path, overrides, why):
    """ALLOW_NONPUBLIC_TARGETS and EXCLUDE_FILE apply to the policy host and its address:
    not fetched, and marked skipped (mta_sts NULL, not invalid)."""
    if "EXCLUDE_FILE" in overrides:
        path = tmp_path / "exclude.txt"
        path.write_text(overrides["EXCLUDE_FILE"] + "\n", encoding="utf-8")
        overrides = {"EXCLUDE_FILE": str(path)}
    fetch = fetched(reactor, policy_handler(net, **overrides), "sts-enforce.test")
    assert fetch.skipped and fetch.text is None and why in fetch.error


def test_sts_records_follow_rfc_8461():
    assert parse_sts_txt([]) == StsRecord(False)
    assert parse_sts_txt(["google-site-verification=x"]) == StsRecord(False)
    assert parse_sts_txt(["v=STSv1; id=20190429T010101;"]).id == "20190429T010101"
    assert parse_sts_txt(["v=STSv1;id=abc", "other"]).id == "abc"
    assert not parse_sts_txt(["v=STSv1; id=a", "v=STSv1; id=b"]).valid
    assert not parse_sts_txt(["v=STSv1;"]).valid  # no id
    assert not parse_sts_txt(["v=STSv1; id=has-dash"]).valid  # id is alphanumeric
    assert not parse_sts_txt(["v=STSv1; id=" + "a" * 33]).valid


def test_policies_follow_rfc_8461():
    good = parse_policy(
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
        "mx: *.example.net\r\nmax_age: 86400\r\nextension: ignored\r\n"
    )
    assert good.valid and good.mode == "enforce" and good.max_age == 86400
    assert good.mx == ("mail.example.com", "*.example.net")
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").valid  # no mx needed
    for bad in (
        "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",  # unknown mode
        "version: STSv1\nmode: enforce\nmax_age: 1\n",  # no mx
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",  # too long
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        "<html>not a policy</html>",
    ):
        assert not parse_policy(bad).valid, bad


def test_mx_patterns_match_exactly_or_one_label():
    assert mx_matches("mail.example.com", ["mail.example.com"])
    assert mx_matches("MAIL.Example.com.", ["mail.example.com"])
    assert mx_matches("mx1.example.net", ["*.example.net"])
    assert not mx_matches("a.b.example.net", ["*.example.net"])  # one label only
    assert not mx_matches("example.net", ["*.example.net"])
    assert not mx_matches("mail.example.org", ["mail.example.com", "*.example.com"])


def test_tls_rpt_records_follow_rfc_8460():
    assert parse_tls_rpt([]) is TlsRpt.NONE
    assert parse_tls_rpt(["v=spf1 -all"]) is TlsRpt.NONE
    assert parse_tls_rpt(["v=TLSRPTv1; rua=mailto:tls@example.com"]) is TlsRpt.VALID
    assert parse_tls_rpt(["v=TLSRPTv1;rua=https://r.example.com/x"]) is TlsRpt.VALID
    both = "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/v1"
    assert parse_tls_rpt([both]) is TlsRpt.VALID
    assert parse_tls_rpt(["v=TLSRPTv1; rua=ftp://r.example.com"]) is TlsRpt.INVALID
    assert parse_tls_rpt(["v=TLSRPTv1;"]) is TlsRpt.INVALID  # no rua
    two = ["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"]
    assert parse_tls_rpt(two) is TlsRpt.INVALID


# --- the report's section -------------------------------------------------------------------


def scrapy_report(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "scrapy", "report", "-s", f"DATABASE_URL={url}", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_the_report_counts_adoption_as_declared(policy_scan, spec):
    """policy_adoption (by label) and mx_dane_status, from `scrapy report`, against the
    numbers the spec's declarations imply."""
    result = scrapy_report(policy_scan.url, "--run", str(policy_scan.run_id), "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    policy = policy_of(spec)
    declared = [d.expect for d in policy.domains.values()]

    def count(key, value):
        return sum(1 for e in declared if e.get(key) == value)

    (row,) = report["policy_adoption"]
    want = {
        "label": "policy",
        "domains": len(declared),
        "dnssec": count("dnssec", True),
        "dane_all": count("dane", "all"),
        "dane_partial": count("dane", "partial"),
        "mta_sts_enforce": count("mta_sts", "enforce"),
        "mta_sts_testing": count("mta_sts", "testing"),
        "mta_sts_none": count("mta_sts", "none"),
        "mta_sts_invalid": count("mta_sts", "invalid"),
        "tls_rpt_valid": count("tls_rpt", "valid"),
        "tls_rpt_invalid": count("tls_rpt", "invalid"),
        "protected": count("downgrade_protected", True),
        "dnssec_unknown": 0,
    }
    assert {k: row[k] for k in want} == want
    assert row["protected_share"] == pytest.approx(want["protected"] / len(declared), abs=1e-3)
    (total,) = report["policy_totals"]
    assert {k: total[k] for k in want if k != "label"} == {
        k: v for k, v in want.items() if k != "label"
    }
    hosts = {h: policy.hosts[h] for h in declared_hosts(spec)}
    statuses = {}
    for name, host in hosts.items():
        entry = statuses.setdefault(str(host.tlsa_status), {"mx_hosts": 0, "valid": 0, "bad": 0})
        entry["mx_hosts"] += 1
        targets = len(spec.addresses(name))
        entry["valid"] += targets if host.dane is Dane.VALID else 0
        entry["bad"] += targets if host.dane is Dane.MISMATCH else 0
    assert {
        r["tlsa_status"]: {
            "mx_hosts": r["mx_hosts"],
            "valid": r["targets_valid"],
            "bad": r["targets_mismatch"],
        }
        for r in report["mx_dane_status"]
    } == statuses


def test_the_html_report_has_the_section_and_its_chart(policy_scan, tmp_path):
    result = scrapy_report(
        policy_scan.url, "--run", str(policy_scan.run_id), "--html", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert '<section id="policy">' in page and 'src="policy.png"' in page
    assert (tmp_path / "policy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("policy_adoption", "policy_totals", "mx_dane_status"):
        assert f'id="table-{name}"' in page


# --- both depths, by label, weighted ----------------------------------------------------------


@pytest.fixture(scope="session")
def labelled_scan(net, spec, tmp_path_factory) -> tuple[Scan, dict[str, tuple[str, float]]]:
    """`-a depth=protocols,policy` over a CSV of the policy domains with a country column
    and a weight column: two labels, weighted."""
    nameservers = resolver_of(net)
    directory = tmp_path_factory.mktemp("policy-labelled")
    domains = sorted(policy_of(spec).domains)
    given = {d: ("aa" if i % 2 else "bb", float(i + 1)) for i, d in enumerate(domains)}
    path = directory / "list.csv"
    lines = ["domain,country,weight", *(f"{d},{c},{w:g}" for d, (c, w) in given.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    url = f"sqlite:///{directory / 'scan.sqlite'}"
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": url,
        "DNS_NAMESERVERS": nameservers,
        "DNSSEC_CHECK": CHECK,
    }
    result = crawl(
        path, settings, "depth=protocols,policy", "label_column=country", "weight_column=weight"
    )
    assert result.returncode == 0, result.stderr[-5000:]
    engine = engine_for(url)
    scan = Scan(url, engine, latest_run(engine), result.stdout, result.stderr, [])
    return scan, given


def test_both_depths_run_together(labelled_scan, spec):
    scan, _ = labelled_scan
    assert scan.crawl_record()["depth"] == "policy,protocols"
    assert scan.rows("SELECT 1 FROM ip_protocols WHERE run_id = :run")  # protocols measured
    rows = scan.rows("SELECT domain, dane FROM domain_policy WHERE run_id = :run")
    declared = policy_of(spec).domains
    assert {r["domain"]: r["dane"] for r in rows} == {
        name: d.expect.get("dane") for name, d in declared.items()
    }


def test_adoption_compares_labels_and_weighs_mail(labelled_scan, spec):
    """policy_adoption by label, with the weight of the domains protected."""
    scan, given = labelled_scan
    declared = policy_of(spec).domains
    want: dict[str, dict[str, float]] = {}
    for domain, (label, weight) in given.items():
        row = want.setdefault(
            label, {"domains": 0, "protected": 0, "weight": 0.0, "protected_weight": 0.0}
        )
        protected = declared[domain].expect.get("downgrade_protected") is True
        row["domains"] += 1
        row["protected"] += protected
        row["weight"] += weight
        row["protected_weight"] += weight if protected else 0.0
    got = {
        r["label"]: {k: r[k] for k in ("domains", "protected", "weight", "protected_weight")}
        for r in run_query(scan.engine, "policy_adoption", scan.run_id)
    }
    for row in got.values():
        row["protected_weight"] = row["protected_weight"] or 0.0
    assert got == want


def test_a_resumed_run_asks_again_for_policies_a_killed_crawl_left(net, spec, tmp_path):
    """A crawl killed between a domain's DNS row and its policy row (here: the rows
    removed) is resumed by the same command: those domains are asked again, their
    policies fetched again, their probes answered by the run without a connection."""
    resolver = resolver_of(net)
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    domains = tmp_path / "policy-domains.txt"
    domains.write_text("\n".join(policy_of(spec).domains) + "\n", encoding="utf-8")
    settings = {
        **scanner_settings(net),
        "DATABASE_URL": url,
        "DNS_NAMESERVERS": resolver,
        "DNSSEC_CHECK": CHECK,
    }
    first = crawl(domains, settings, "depth=policy", "run=p-resume")
    assert first.returncode == 0, first.stderr[-3000:]
    engine = engine_for(url)
    with engine.begin() as conn:
        fetched = conn.execute(
            text("SELECT domain FROM domain_policies WHERE policy_status IS NOT NULL")
        ).scalars()
        lost = sorted(fetched)[:3]
        conn.execute(
            text("DELETE FROM domain_policies WHERE domain IN :d").bindparams(
                bindparam("d", expanding=True)
            ),
            {"d": lost},
        )
    assert lost
    time.sleep(0.5)
    before_smtp, before_policy = len(net.connections()), len(policy_requests(net))
    resumed = crawl(domains, settings, "depth=policy", "run=p-resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    time.sleep(0.5)
    assert net.connections()[before_smtp:] == []
    hosts = [r["host"].split(":")[0] for r in policy_requests(net)[before_policy:]]
    again = {host.removeprefix("mta-sts.") for host in hosts}
    assert again == set(lost)
    rows = Scan(url, engine, latest_run(engine), "", "", []).rows(
        "SELECT domain FROM domain_policy WHERE run_id = :run"
    )
    assert {r["domain"] for r in rows} == set(policy_of(spec).domains)
