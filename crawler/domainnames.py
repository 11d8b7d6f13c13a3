"""A domain name as DNS is asked for it, and the stable hash that decides its shard.

Pure: shared by the list reader (`crawler.domainlist`), the exclusions (`crawler.targets`)
and the run's resume (`crawler.coordination`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

import idna

_HOSTNAME = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?![0-9]+\Z)(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_BAD_CHAR = re.compile(r"[^a-z0-9.-]")
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*", re.ASCII)


class InvalidDomain(ValueError):
    """A value that is not a usable domain name; `reason` is short and stable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_domain(raw: str) -> str:
    """A domain as DNS is asked for it: lower-case A-labels, no trailing dot.

    A URL or `host:port` is reduced to its host. Raises `InvalidDomain`.
    """
    name = raw.strip()
    if name.isascii():  # fast path: most lines are already plain hostnames
        lowered = name if name.islower() else name.lower()
        if len(lowered) <= 253 and _HOSTNAME.match(lowered):
            return lowered
    name = _host_part(name)
    if not name:
        raise InvalidDomain("empty")
    if name.endswith("."):  # one trailing dot: the root, same domain
        name = name[:-1]
    if _is_ip(name):
        raise InvalidDomain("ip address")
    if not name:
        raise InvalidDomain("empty label")
    # Only ASCII is lower-cased here: UTS-46 maps the rest (str.lower() differs,
    # e.g. on a final sigma).
    name = name.lower() if name.isascii() else _to_alabel(name)
    if len(name) > 253:  # RFC 1035 §2.3.4, without the trailing dot
        raise InvalidDomain("too long")
    if not _HOSTNAME.match(name):
        raise InvalidDomain(_why_invalid(name))
    return name


def _host_part(text: str) -> str:
    """The host of a URL (`https://u@host:443/path`), `host/path` or `host:port`."""
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        text = text.rpartition("@")[2]
    else:
        text = text.split("/", 1)[0]
    if text.startswith("["):  # an IPv6 literal, possibly with a port
        return text
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host
    return text


def _is_ip(name: str) -> bool:
    if not (name[-1:].isdigit() or ":" in name or name.startswith("[")):
        return False  # fast path: an IP address ends in a digit or has a colon
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _to_alabel(name: str) -> str:
    # UTS-46 non-transitional (IDNA 2008 as browsers do it): "faß.de" keeps its ß.
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except UnicodeError as e:  # idna.IDNAError and its subclasses
        raise InvalidDomain(f"idna: {e}") from None


def _why_invalid(name: str) -> str:
    """The reason an ASCII name failed _HOSTNAME."""
    bad = _BAD_CHAR.search(name)
    if bad:
        return f"bad character {bad.group()!r}"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "empty label"
        if len(label) > 63:
            return "label too long"
        if label.startswith("-") or label.endswith("-"):
            return "hyphen at label start or end"
    if len(labels) < 2:
        return "single label"
    return "numeric tld"


def domain_hash(domain: str) -> int:
    """A stable 64-bit hash of a normalised domain: it decides the shard.

    Not Python's hash(): that is salted per process, and every crawl of a
    sharded run must agree on which shard owns a domain.
    """
    digest = hashlib.blake2b(domain.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` as given to `-a shard=`: this crawl takes the K-th (1-based) of N parts."""
    match = _SHARD.fullmatch(text)
    if not match:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, e.g. 2/8; got {text!r}")
    return check_shard((int(match[1]), int(match[2])))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    k, n = shard
    if not 1 <= k <= n:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, e.g. 2/8; got {k}/{n}")
    return k, n
