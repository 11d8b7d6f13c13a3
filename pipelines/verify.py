"""Judge a certificate chain as sent: trust, dates, key and names (docs/design.md, "Vocabulary").

Pure: no I/O beyond reading the trust bundle once. `judge_chain` is the name-independent
part, computed once per probe (one IP serves many MX names); `judge_target` adds the name.

Trust is checked by OpenSSL (pyOpenSSL `X509StoreContext` with the server's intermediates
as the untrusted chain), not by `cryptography.x509.verification`, because:
- docs/design.md asks for OpenSSL's error number and text, and `self_signed` (18) vs
  `untrusted_ca` (19/20/21) is exactly OpenSSL's distinction; cryptography's verifier
  raises one untyped message;
- cryptography refuses certificates OpenSSL accepted in the handshake (docs/design.md,
  "Known pitfalls"), and its verifier enforces a CA/Browser-Forum profile stricter than
  what mail servers meet, which would turn many merely old chains into false `invalid_chain`;
- OpenSSL builds paths as the sending MTAs we stand in for do (trusted-first,
  time-aware choice among candidate issuers).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from OpenSSL import crypto

from crawler.certnames import name_matches, presented_names
from pipelines.certinfo import key_facts
from pipelines.openssl_adapter import NO_CHECK_TIME, clear_error_queue
from schema.vocab import Reason

# OpenSSL verify errors that are dates: they stop verification before trust is known.
_DATE_ERRORS = {
    9: Reason.NOT_YET_VALID,  # X509_V_ERR_CERT_NOT_YET_VALID (any cert on the path)
    10: Reason.EXPIRED,  # X509_V_ERR_CERT_HAS_EXPIRED (any cert on the path)
}
# OpenSSL verify errors that mean "no path to the store"; any other one is invalid_chain.
_TRUST_ERRORS = {
    18: Reason.SELF_SIGNED,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: the leaf signs itself
    19: Reason.UNTRUSTED_CA,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: unknown root sent
    20: Reason.UNTRUSTED_CA,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: missing link
    21: Reason.UNTRUSTED_CA,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: leaf alone
    2: Reason.UNTRUSTED_CA,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: path ends nowhere
}
# docs/design.md: weak = leaf RSA/DSA < 2048 bits, EC < 224 bits.
_MIN_BITS = {"RSA": 2048, "DSA": 2048, "EC": 224}
_OPENSSL_KEY_TYPES = {crypto.TYPE_RSA: "RSA", crypto.TYPE_DSA: "DSA", crypto.TYPE_EC: "EC"}
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_STORES_KEPT = 8


@dataclass(frozen=True, eq=False)
class TrustStore:
    """A PEM trust bundle, read and parsed once; hands out immutable `X509Store`s.

    `X509Store.set_time` replaces the store's verification parameters, so changing the
    time of a store another verification is using would judge at the wrong time. Each
    store here is built complete for one purpose and never mutated: one that ignores
    dates, and one per scan second (OpenSSL's time resolution), a few kept. Building one
    from the parsed roots takes a fraction of a millisecond.
    """

    path: str
    sha256: str  # of the bundle's bytes: the crawl record's trust store identity
    roots: tuple[crypto.X509, ...] = field(repr=False)
    _timeless: crypto.X509Store = field(init=False, repr=False)
    _by_time: dict[datetime.datetime, crypto.X509Store] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_timeless", self._build(None))

    @classmethod
    def from_file(cls, path: str) -> TrustStore:
        data = Path(path).read_bytes()
        roots = tuple(
            crypto.load_certificate(crypto.FILETYPE_PEM, pem) for pem in _PEM_CERT.findall(data)
        )
        if not roots:
            raise ValueError(f"no certificate in trust bundle {path}")
        return cls(str(path), hashlib.sha256(data).hexdigest(), roots)

    def at(self, when: datetime.datetime) -> crypto.X509Store:
        """The store that verifies at `when` (to the second), as an MTA would then."""
        when = _scan_time(when)
        store = self._by_time.get(when)
        if store is None:
            if len(self._by_time) >= _STORES_KEPT:  # forget the oldest scan second
                del self._by_time[next(iter(self._by_time))]
            store = self._by_time[when] = self._build(when)
        return store

    def timeless(self) -> crypto.X509Store:
        """The store that checks paths and signatures only, never dates."""
        return self._timeless

    def _build(self, when: datetime.datetime | None) -> crypto.X509Store:
        store = crypto.X509Store()
        for root in self.roots:
            store.add_cert(root)
        if when is None:
            store.set_flags(NO_CHECK_TIME)
        else:
            store.set_time(when)
        return store


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """What a chain as sent says, whatever MX name reached it."""

    reasons: tuple[str, ...]  # sorted Reason values; hostname_mismatch is judge_target's
    openssl_error: str | None  # "N: text" of OpenSSL's verification, e.g. "20: unable to …"
    parse_error: str | None  # why a certificate could not be read (or none was sent)
    leaf_names: tuple[str, ...]  # SAN dNSNames, or the subject CNs when there is none
    leaf_has_san: bool  # True when leaf_names are SAN dNSNames, False for the CN fallback
    key_type: str | None  # "RSA", "EC", "DSA", "Ed25519"…
    key_bits: int | None
    not_before: datetime.datetime | None  # UTC
    not_after: datetime.datetime | None  # UTC


@dataclass(frozen=True)
class _Leaf:
    key_type: str | None
    key_bits: int | None
    not_before: datetime.datetime | None
    not_after: datetime.datetime | None
    names: tuple[str, ...] = ()
    has_san: bool = False


def judge_chain(
    chain_der: Sequence[bytes], store: TrustStore, when: datetime.datetime
) -> ChainVerdict:
    """Judge trust, dates and key of a chain (leaf first), at scan time `when`."""
    when = _scan_time(when)
    if not chain_der:
        return _unreadable("empty chain: no certificate sent")
    try:
        leaf = crypto.load_certificate(crypto.FILETYPE_ASN1, chain_der[0])
    except crypto.Error as e:
        return _unreadable(f"leaf: {_openssl_text(e)}")
    facts, leaf_errors = _leaf_facts(chain_der[0], leaf)
    untrusted, chain_errors = _load_untrusted(chain_der[1:])
    parse_errors = [f"leaf: {e}" for e in leaf_errors] + chain_errors

    reasons, openssl_error = _check_path(leaf, untrusted, store, when)
    reasons |= _date_reasons(facts, when)
    if _weak_key(facts):
        reasons.add(Reason.WEAK_KEY)
    if parse_errors:  # an unparseable certificate is invalid_chain, with the parser's text
        reasons.add(Reason.INVALID_CHAIN)
    return ChainVerdict(
        reasons=_sorted(reasons),
        openssl_error=openssl_error,
        parse_error="; ".join(parse_errors) or None,
        leaf_names=facts.names,
        leaf_has_san=facts.has_san,
        key_type=facts.key_type,
        key_bits=facts.key_bits,
        not_before=facts.not_before,
        not_after=facts.not_after,
    )


def judge_target(
    chain_reasons: tuple[str, ...], leaf_names: Sequence[str], mx_host: str
) -> tuple[str, ...]:
    """All reasons for one (MX host, IP) target, sorted; () means strict. The chain's
    own reasons and its leaf's names come from its `ChainVerdict`."""
    if name_matches(mx_host, leaf_names):
        return chain_reasons
    return _sorted({*chain_reasons, Reason.HOSTNAME_MISMATCH})


# --- trust and dates ---------------------------------------------------------------------


def _check_path(
    leaf: crypto.X509, untrusted: list[crypto.X509], store: TrustStore, when: datetime.datetime
) -> tuple[set[str], str | None]:
    """Reasons and OpenSSL's error text from verifying the path, each reason on its own.

    First at scan time, exactly as a sending MTA would. OpenSSL stops at its first error
    and checks dates last (after building the path), so a date error (9/10, at any depth:
    an expired intermediate or root on the path counts too) says nothing yet about trust:
    then the path is verified again with dates switched off. (Not at a time inside the
    leaf's window: an intermediate need not be valid at that time, and a store per leaf
    could not be shared.) Certificates the server sent that are not on the path (an old
    expired cross-sign) are never judged. When no path reaches the store, OpenSSL never
    looks at dates; the leaf's are judged by `_date_reasons`.
    """
    error = _verify(store.at(when), leaf, untrusted)
    if error is None:
        return set(), None
    reasons: set[str] = set()
    code = error.errors[0]
    if code in _DATE_ERRORS:
        reasons.add(_DATE_ERRORS[code])
        trust_error = _verify(store.timeless(), leaf, untrusted)
        if trust_error is None:
            return reasons, _error_text(error)  # trusted; keep the scan-time date error
        error, code = trust_error, trust_error.errors[0]
    # Any other error (7 bad signature, 24 invalid CA, 6 undecodable key…): invalid_chain.
    reasons.add(_TRUST_ERRORS.get(code, Reason.INVALID_CHAIN))
    return reasons, _error_text(error)


def _verify(
    x509_store: crypto.X509Store, leaf: crypto.X509, untrusted: list[crypto.X509]
) -> crypto.X509StoreContextError | None:
    try:
        crypto.X509StoreContext(x509_store, leaf, chain=untrusted).verify_certificate()
    except crypto.X509StoreContextError as e:
        return e
    finally:
        # X509_verify_cert leaves what failed (e.g. a bad signature) on this thread's
        # OpenSSL error queue and pyOpenSSL does not drain it. Left there, it would make
        # the next SSL_get_error() on this thread — the reactor's, TLS probes included —
        # report SSL_ERROR_SSL for a healthy connection (SSL_get_error(3): the queue must
        # be empty before a TLS I/O operation), and taint the next crypto.Error text.
        clear_error_queue()
    return None


def _date_reasons(facts: _Leaf, when: datetime.datetime) -> set[str]:
    """The leaf's own dates against scan time; RFC 5280 §4.1.2.5: both ends inclusive."""
    reasons: set[str] = set()
    if facts.not_after is not None and when > facts.not_after:
        reasons.add(Reason.EXPIRED)
    if facts.not_before is not None and when < facts.not_before:
        reasons.add(Reason.NOT_YET_VALID)
    return reasons


def _weak_key(facts: _Leaf) -> bool:
    minimum = _MIN_BITS.get(facts.key_type or "")
    return minimum is not None and facts.key_bits is not None and facts.key_bits < minimum


def _error_text(error: crypto.X509StoreContextError) -> str:
    code, _depth, message = error.errors
    return f"{code}: {message}"


# --- reading certificates tolerantly -----------------------------------------------------


def _load_untrusted(ders: Sequence[bytes]) -> tuple[list[crypto.X509], list[str]]:
    """The intermediates OpenSSL can read, for path building, and why the others failed."""
    certs: list[crypto.X509] = []
    errors: list[str] = []
    for depth, der in enumerate(ders, start=1):
        try:
            certs.append(crypto.load_certificate(crypto.FILETYPE_ASN1, der))
        except crypto.Error as e:
            errors.append(f"certificate {depth}: {_openssl_text(e)}")
    return certs, errors


def _leaf_facts(der: bytes, leaf: crypto.X509) -> tuple[_Leaf, list[str]]:
    """Names, key and dates, read with cryptography where it can; OpenSSL's reading else.

    cryptography is stricter than OpenSSL (docs/design.md, "Known pitfalls") and parses
    extensions and keys lazily, so each part is read on its own and a failure only costs that part.
    Without a readable SAN the names are unknown: none is presented (fail closed) rather
    than guessing from the CN.
    """
    openssl_dates = _asn1_time(leaf.get_notBefore()), _asn1_time(leaf.get_notAfter())
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as e:  # ValueError, InvalidVersion, …: OpenSSL took it, never crash
        return _Leaf(*_openssl_key(leaf), *openssl_dates), [_describe(e)]
    errors: list[str] = []
    try:
        names, has_san = presented_names(cert)
    except Exception as e:  # DuplicateExtension, malformed SAN entries, …
        names, has_san = (), False
        errors.append(f"names: {_describe(e)}")
    try:
        key_type, key_bits = key_facts(cert.public_key())
    except Exception as e:  # UnsupportedAlgorithm, explicit EC parameters, …
        key_type, key_bits = _openssl_key(leaf)
        errors.append(f"key: {_describe(e)}")
    dates = cert.not_valid_before_utc, cert.not_valid_after_utc
    return _Leaf(key_type, key_bits, *dates, names, has_san), errors


def _openssl_key(leaf: crypto.X509) -> tuple[str | None, int | None]:
    """Key type and size as OpenSSL reads them, so a weak key is still seen."""
    try:
        pkey = leaf.get_pubkey()
    except crypto.Error:  # an algorithm this OpenSSL cannot decode
        return None, None
    key_type = _OPENSSL_KEY_TYPES.get(pkey.type())
    return key_type, pkey.bits() if key_type else None


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _asn1_time(value: bytes | None) -> datetime.datetime | None:
    """OpenSSL's GeneralizedTime text (b"20250101000000Z") as an aware UTC datetime."""
    if value is None:
        return None
    try:
        parsed = datetime.datetime.strptime(value.decode("ascii"), "%Y%m%d%H%M%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=datetime.UTC)


def _openssl_text(error: crypto.Error) -> str:
    """crypto.Error carries [(library, function, reason), …]; keep the reasons."""
    parts = [str(item[-1]) for item in error.args[0]] if error.args and error.args[0] else []
    return "; ".join(parts) or str(error)


def _unreadable(why: str) -> ChainVerdict:
    return ChainVerdict(
        reasons=(Reason.INVALID_CHAIN.value,),
        openssl_error=None,
        parse_error=why,
        leaf_names=(),
        leaf_has_san=False,
        key_type=None,
        key_bits=None,
        not_before=None,
        not_after=None,
    )


def _scan_time(when: datetime.datetime) -> datetime.datetime:
    """Scan time as aware UTC to the whole second, the resolution of certificate dates
    and of OpenSSL's verification time; a naive datetime is taken to be UTC already."""
    when = when.replace(microsecond=0)
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.UTC)
    return when.astimezone(datetime.UTC)


def _sorted(reasons: set[str]) -> tuple[str, ...]:
    return tuple(sorted(str(reason) for reason in reasons))
