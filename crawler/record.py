"""A crawl's reproducibility record: versions, trust store, resolver, settings."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import certifi
from OpenSSL import SSL

RECORDED_SETTINGS = (
    "ALLOW_NONPUBLIC_TARGETS",
    "CONCURRENT_REQUESTS",
    "DATABASE_BATCH_SIZE",
    "DNSSEC_CHECK",
    "DNS_NAMESERVERS",
    "DNS_TIMEOUT",
    "DNS_TRIES",
    "EXCLUDE_FILE",
    "MTA_STS_PORT",
    "MTA_STS_TIMEOUT",
    "RUN_LEASE",
    "SMTP_BANNER_TIMEOUT",
    "SMTP_COMMAND_TIMEOUT",
    "SMTP_CONNECT_TIMEOUT",
    "SMTP_EHLO_NAME",
    "SMTP_IPV6",
    "SMTP_MAX_PER_IP",
    "SMTP_PORT",
    "SMTP_PROBE_TIMEOUT",
    "SMTP_RETRIES",
    "SMTP_RETRY_DELAY",
    "SMTP_SNI_PROBES",
    "SMTP_TLS_TIMEOUT",
    "TLS_CA_BUNDLE",
)
PACKAGES = (
    "mxcensus",
    "scrapy",
    "twisted",
    "pyopenssl",
    "cryptography",
    "dnspython",
    "sqlalchemy",
    "psycopg2-binary",
    "certifi",
)


def ca_bundle_path(settings: Any) -> str:
    return settings.get("TLS_CA_BUNDLE") or certifi.where()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def versions(settings: Any) -> dict[str, Any]:
    bundle = Path(ca_bundle_path(settings))
    record: dict[str, Any] = {name: _version(name) for name in PACKAGES}
    record["python"] = platform.python_version()
    record["openssl"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    record["trust_store"] = {
        "path": str(bundle),
        "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest() if bundle.exists() else None,
    }
    return record


def settings_record(settings: Any) -> dict[str, Any]:
    """The settings that shape results, and what their defaults resolved to here."""
    from crawler.handlers.dns import build_resolver
    from crawler.handlers.smtp import ehlo_name

    record = {name: settings.get(name) for name in RECORDED_SETTINGS}
    record["effective"] = {
        "ehlo_name": ehlo_name(settings),
        "nameservers": [str(ns) for ns in build_resolver(settings).nameservers],
        "ca_bundle": ca_bundle_path(settings),
    }
    return record
