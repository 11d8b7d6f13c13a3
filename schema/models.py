"""SQLAlchemy models: the raw facts of each run, normalised.

Natural keys (run, domain / MX host / IP) link the units, so crawls and shards
of one run can write independently and a second domain naming a known MX host
or IP links to it. Verdicts are derived from these facts (see views.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # none_as_null: a missing fact is SQL NULL, not the JSON text 'null'.
    type_annotation_map = {
        dict[str, Any]: JSON(none_as_null=True),
        list[Any]: JSON(none_as_null=True),
        datetime: DateTime(timezone=True),
    }


class Run(Base):
    """One logical measurement; several crawls (shards, resumptions) may feed it."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[datetime]


class Crawl(Base):
    """One process's part of a run: what makes it reproducible, and its counts."""

    __tablename__ = "crawls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    label: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str | None] = mapped_column(String(64))
    shard: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))  # running | finished | interrupted | failed
    finish_reason: Mapped[str | None] = mapped_column(Text)
    versions: Mapped[dict[str, Any]]
    settings: Mapped[dict[str, Any]]
    counts: Mapped[dict[str, Any] | None]
    # Coordination: a crawl's claims live while its heartbeat is fresh (RUN_LEASE).
    heartbeat_at: Mapped[datetime | None]
    job: Mapped[str | None] = mapped_column(Text)  # scrapyd's job id (`_job`)
    node: Mapped[str | None] = mapped_column(Text)  # the machine it ran on
    depth: Mapped[str | None] = mapped_column(Text)  # `-a depth=`, sorted, comma-separated
    # -a depth=policy: did the resolver validate (DNSSEC_CHECK), and what it answered.
    dnssec_validating: Mapped[bool | None] = mapped_column(Boolean)
    dnssec_check: Mapped[str | None] = mapped_column(Text)


class Claim(Base):
    """An IP:port one crawl of the run is probing now: at most one crawl at a time.

    Inserted if absent before connecting, deleted once the crawl's probes of it
    are committed; a claim whose crawl stopped heartbeating may be taken over.
    Committed probes, not claims, say what is done.
    """

    __tablename__ = "claims"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"), index=True)
    claimed_at: Mapped[datetime]


class Domain(Base):
    __tablename__ = "domains"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    label: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[float | None] = mapped_column(Float)
    line: Mapped[int] = mapped_column(Integer)  # line of the input list
    status: Mapped[str] = mapped_column(String(30))
    null_mx: Mapped[bool] = mapped_column(Boolean)
    implicit_mx: Mapped[bool] = mapped_column(Boolean)
    mx_count: Mapped[int] = mapped_column(Integer)
    mx_rrset: Mapped[list[Any]]  # the MX answer as text
    dns_detail: Mapped[str | None] = mapped_column(Text)
    dnssec: Mapped[bool | None] = mapped_column(Boolean)  # MX RRset (implicit: address) AD


class MxRecord(Base):
    """Which MX hosts a domain names (or its implicit MX), with preference."""

    __tablename__ = "mx_records"
    # Keyed MX host first: the views join targets to domains through it; the
    # index serves the other direction (a domain's MX hosts).
    __table_args__ = (Index("ix_mx_records_domain", "run_id", "domain"),)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    mx_host: Mapped[str] = mapped_column(Text, primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    preference: Mapped[int] = mapped_column(Integer)
    implicit: Mapped[bool] = mapped_column(Boolean)


class MxHost(Base):
    """An MX host's own DNS outcome, resolved once per run."""

    __tablename__ = "mx_hosts"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    canonical_name: Mapped[str | None] = mapped_column(Text)  # CNAME target
    dns_outcome: Mapped[str] = mapped_column(String(20))
    dns_detail: Mapped[str | None] = mapped_column(Text)
    ip_literal: Mapped[bool] = mapped_column(Boolean)
    # -a depth=policy: the address answers validated, and the TLSA RRset (RFC 7672).
    dnssec: Mapped[bool | None] = mapped_column(Boolean)
    tlsa_name: Mapped[str | None] = mapped_column(Text)  # the owner asked last
    tlsa_status: Mapped[str | None] = mapped_column(String(20))
    tlsa: Mapped[str | None] = mapped_column(
        Text
    )  # "usage selector mtype hex", sorted, comma-joined
    tlsa_detail: Mapped[str | None] = mapped_column(Text)


class MxAddress(Base):
    """An address of an MX host: a target (MX host, IP); skipped ones say why."""

    __tablename__ = "mx_addresses"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    mx_host: Mapped[str] = mapped_column(Text, primary_key=True)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True, index=True)
    family: Mapped[int] = mapped_column(Integer)  # 4 or 6
    skip_reason: Mapped[str | None] = mapped_column(String(30))


class Probe(Base):
    """One probe of one IP:port with one SNI; columns hold the judging (last) attempt."""

    __tablename__ = "probes"
    __table_args__ = (UniqueConstraint("run_id", "ip", "port", "sni"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    ip: Mapped[str] = mapped_column(String(45))
    port: Mapped[int] = mapped_column(Integer)
    sni: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    attempt_count: Mapped[int] = mapped_column(Integer)
    # How far the conversation got: error | none | failure | tls (TLS negotiated;
    # strict or opportunistic is the certificate's verdict, judged apart).
    wire_outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(String(30))
    error_stage: Mapped[str | None] = mapped_column(String(20))
    error_detail: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[str | None] = mapped_column(Text)  # sorted, comma-separated
    banner_code: Mapped[int | None] = mapped_column(Integer)
    banner_text: Mapped[str | None] = mapped_column(Text)
    ehlo_code: Mapped[int | None] = mapped_column(Integer)
    ehlo_text: Mapped[str | None] = mapped_column(Text)
    helo_code: Mapped[int | None] = mapped_column(Integer)
    helo_text: Mapped[str | None] = mapped_column(Text)
    extensions: Mapped[str | None] = mapped_column(Text)  # EHLO keywords, space-separated
    starttls_advertised: Mapped[bool | None] = mapped_column(Boolean)
    starttls_code: Mapped[int | None] = mapped_column(Integer)
    starttls_text: Mapped[str | None] = mapped_column(Text)
    plaintext_after_starttls: Mapped[bytes | None] = mapped_column(LargeBinary)
    tls_version: Mapped[str | None] = mapped_column(String(10))
    cipher: Mapped[str | None] = mapped_column(Text)
    forward_secrecy: Mapped[bool | None] = mapped_column(Boolean)
    kx_group: Mapped[str | None] = mapped_column(Text)
    cert_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # the leaf
    chain: Mapped[list[Any] | None]  # SHA-256 of each certificate as sent, leaf first
    # The chain's own verdict (whatever name reached it): trust, dates, key.
    chain_reasons: Mapped[str | None] = mapped_column(Text)  # sorted, comma-separated
    verify_error: Mapped[str | None] = mapped_column(Text)  # OpenSSL's "N: text"
    cert_parse_error: Mapped[str | None] = mapped_column(Text)
    leaf_names: Mapped[list[Any] | None]  # names matched against MX hosts
    post_tls_ehlo_code: Mapped[int | None] = mapped_column(Integer)
    post_tls_ehlo_text: Mapped[str | None] = mapped_column(Text)
    post_tls_extensions: Mapped[str | None] = mapped_column(Text)
    quit_sent: Mapped[bool] = mapped_column(Boolean)
    timings: Mapped[dict[str, Any]]  # stage -> seconds
    transcript: Mapped[list[Any]]  # [direction, line] pairs, bounded
    attempts: Mapped[list[Any]]  # every attempt: started_at, outcome, error, stage, detail, timings


class ProtocolProbe(Base):
    """One conversation with one IP:port pinned to one TLS version (`-a depth=protocols`):
    EHLO, STARTTLS, a handshake offering exactly `version`, QUIT. An `untestable`
    version (this scanner's OpenSSL cannot offer it) had no conversation."""

    __tablename__ = "protocol_probes"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(10), primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    sni: Mapped[str] = mapped_column(Text)  # the IP's first MX name
    started_at: Mapped[datetime | None]  # None: untestable, no conversation
    status: Mapped[str] = mapped_column(String(20))  # supported | not_supported | …
    error: Mapped[str | None] = mapped_column(String(30))
    error_stage: Mapped[str | None] = mapped_column(String(20))
    error_detail: Mapped[str | None] = mapped_column(Text)  # OpenSSL's alert, the reply
    starttls_code: Mapped[int | None] = mapped_column(Integer)
    tls_version: Mapped[str | None] = mapped_column(String(10))  # as negotiated
    cipher: Mapped[str | None] = mapped_column(Text)
    forward_secrecy: Mapped[bool | None] = mapped_column(Boolean)
    kx_group: Mapped[str | None] = mapped_column(Text)
    quit_sent: Mapped[bool | None] = mapped_column(Boolean)
    timings: Mapped[dict[str, Any] | None]  # stage -> seconds
    transcript: Mapped[list[Any] | None]  # [direction, line] pairs, bounded


class Target(Base):
    """The verdict of one target (MX host, IP); `sni` names the probe that judged it."""

    __tablename__ = "targets"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    mx_host: Mapped[str] = mapped_column(Text, primary_key=True)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    port: Mapped[int] = mapped_column(Integer)
    sni: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[str | None] = mapped_column(Text)  # sorted, comma-separated
    error: Mapped[str | None] = mapped_column(String(30))
    error_stage: Mapped[str | None] = mapped_column(String(20))
    flags: Mapped[str | None] = mapped_column(Text)  # the target's own: sni_probes_exhausted


class TargetDane(Base):
    """A target's DANE verdict (RFC 7672), judged when its MX host's TLSA RRset and
    addresses validated and TLS was negotiated; no row: DANE does not apply."""

    __tablename__ = "target_dane"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    mx_host: Mapped[str] = mapped_column(Text, primary_key=True)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    dane: Mapped[str] = mapped_column(String(20))  # valid | mismatch
    matched: Mapped[str | None] = mapped_column(Text)  # the record that matched
    detail: Mapped[str | None] = mapped_column(Text)  # why none did


class DomainPolicy(Base):
    """A domain's MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) facts (-a depth=policy)."""

    __tablename__ = "domain_policies"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    crawl_id: Mapped[int] = mapped_column(ForeignKey("crawls.id"))
    mta_sts_txt: Mapped[list[Any] | None]  # the TXT strings at _mta-sts.DOMAIN
    mta_sts_id: Mapped[str | None] = mapped_column(Text)
    mta_sts: Mapped[str | None] = mapped_column(String(20))  # enforce | testing | none | invalid
    policy_url: Mapped[str | None] = mapped_column(Text)
    policy_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status
    policy_mode: Mapped[str | None] = mapped_column(String(20))
    policy_max_age: Mapped[int | None] = mapped_column(Integer)
    policy_mx: Mapped[list[Any] | None]  # the mx: patterns
    mta_sts_mx_match: Mapped[bool | None] = mapped_column(Boolean)  # every MX host matches
    policy_text: Mapped[str | None] = mapped_column(Text)  # the policy as fetched (<= 64 KiB)
    policy_error: Mapped[str | None] = mapped_column(Text)  # why it is invalid
    tls_rpt_txt: Mapped[list[Any] | None]  # the TXT strings at _smtp._tls.DOMAIN
    tls_rpt: Mapped[str | None] = mapped_column(String(20))  # valid | invalid | none


class Certificate(Base):
    """A certificate as sent, stored once by SHA-256 of its DER."""

    __tablename__ = "certificates"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str | None] = mapped_column(Text)
    issuer: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None]
    key_type: Mapped[str | None] = mapped_column(Text)
    key_bits: Mapped[int | None] = mapped_column(Integer)
    san_dns: Mapped[list[Any] | None]
    parse_error: Mapped[str | None] = mapped_column(Text)
