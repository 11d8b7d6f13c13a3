"""MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) records and policies: pure parsing and matching.

The `dns` handler fetches the TXT records, the `mta-sts` handler the policy; this module
says what they mean, so every rule is testable without a network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schema.vocab import MtaSts, TlsRpt

STS_PREFIX = "_mta-sts."  # RFC 8461 §3.1
TLSRPT_PREFIX = "_smtp._tls."  # RFC 8460 §3
POLICY_HOST_PREFIX = "mta-sts."  # RFC 8461 §3.3
POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: senders may refuse larger policies
MAX_AGE_LIMIT = 31_557_600  # seconds (about a year), RFC 8461 §3.2
_STS_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_FIELD = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class PolicyTxt:
    """The TXT strings at `_mta-sts.DOMAIN` and `_smtp._tls.DOMAIN` (each record's strings
    joined); () when there are none, None when the lookup failed (`error` says how)."""

    mta_sts: tuple[str, ...] | None
    tls_rpt: tuple[str, ...] | None
    error: str | None = None


@dataclass(frozen=True)
class StsRecord:
    """What `_mta-sts.DOMAIN` TXT says: none (no STSv1 record), invalid, or an id."""

    present: bool  # at least one record starts with v=STSv1
    id: str | None = None  # the policy id, when the record is valid
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.id is not None


def parse_sts_txt(strings: Sequence[str]) -> StsRecord:
    """RFC 8461 §3.1: records not beginning `v=STSv1` are discarded; exactly one must
    remain, with an `id` of 1-32 letters and digits."""
    records = [s for s in strings if s.startswith("v=STSv1")]
    if not records:
        return StsRecord(False)
    if len(records) > 1:
        return StsRecord(True, error=f"{len(records)} v=STSv1 records")
    fields = _fields(records[0])
    if fields is None or fields.get("v") != "STSv1":
        return StsRecord(True, error="malformed v=STSv1 record")
    sts_id = fields.get("id")
    if sts_id is None or not _STS_ID.match(sts_id):
        return StsRecord(True, error="no valid id")
    return StsRecord(True, sts_id)


def _fields(record: str) -> dict[str, str] | None:
    """`key=value` fields separated by `;` (a trailing `;` allowed); None if malformed."""
    fields: dict[str, str] = {}
    for part in record.split(";"):
        if not part.strip():
            continue
        match = _FIELD.match(part)
        if match is None:
            return None
        fields.setdefault(match.group(1), match.group(2))
    return fields


@dataclass(frozen=True)
class Policy:
    """A policy as fetched and parsed (RFC 8461 §3.2); `error` says why it is invalid."""

    mode: str | None = None
    max_age: int | None = None
    mx: tuple[str, ...] = ()
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def parse_policy(text: str) -> Policy:
    """`key: value` lines (CRLF or LF): version STSv1, mode enforce|testing|none, max_age
    0-31557600, and `mx` patterns unless the mode is none; unknown keys are ignored."""
    values: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            return Policy(error=f"not a key: value line: {line[:80]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        return Policy(error="version is not STSv1")
    mode = values.get("mode")
    if mode not in ("enforce", "testing", "none"):
        return Policy(error=f"mode {mode!r} is not enforce, testing or none")
    max_age_text = values.get("max_age", "")
    if not max_age_text.isdigit() or int(max_age_text) > MAX_AGE_LIMIT:
        return Policy(mode, error=f"max_age {max_age_text!r} is not 0..{MAX_AGE_LIMIT}")
    if mode != "none" and not mx:
        return Policy(mode, int(max_age_text), error="no mx lines")
    return Policy(mode, int(max_age_text), tuple(mx))


def mx_matches(host: str, patterns: Sequence[str]) -> bool:
    """RFC 8461 §4.1: an exact (case-insensitive) match, or `*.` matching exactly one
    left-most label."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            label, dot, rest = host.partition(".")
            if dot and label and rest == pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def mta_sts_status(record: StsRecord, policy: Policy | None) -> MtaSts:
    """The domain's mta_sts: none without a record, invalid for a bad record or a policy
    that could not be fetched or parsed, else the policy's mode."""
    if not record.present:
        return MtaSts.NONE
    if not record.valid or policy is None or not policy.valid:
        return MtaSts.INVALID
    return MtaSts(policy.mode)


def parse_tls_rpt(strings: Sequence[str]) -> TlsRpt:
    """RFC 8460 §3: exactly one record beginning `v=TLSRPTv1`, whose `rua` is one or more
    comma-separated `mailto:` or `https:` URIs."""
    records = [s for s in strings if s.startswith("v=TLSRPTv1")]
    if not records:
        return TlsRpt.NONE
    if len(records) > 1:
        return TlsRpt.INVALID
    fields = _fields(records[0])
    if fields is None or fields.get("v") != "TLSRPTv1" or not fields.get("rua"):
        return TlsRpt.INVALID
    uris = [uri.strip() for uri in fields["rua"].split(",")]
    if not all(re.match(r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$", uri) for uri in uris):
        return TlsRpt.INVALID
    return TlsRpt.VALID
