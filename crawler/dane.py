"""DANE for SMTP (RFC 7672): does a server's chain, as sent, match its MX host's TLSA RRset?

Pure: records and DER in, a verdict out. Only DANE-TA(2) and DANE-EE(3) are usable for SMTP
(RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) records are treated as unusable), so a secure
RRset of only those is a `mismatch`: the sender that insists on DANE cannot deliver.

- DANE-EE(3) (§3.1.1): the leaf matches, with no name or date checks.
- DANE-TA(2) (§3.1.2): a certificate of the chain as sent (not the leaf) matches; the leaf
  chains to it (OpenSSL, the matched certificate as the only trust anchor, a partial chain
  allowed, dates checked at the probe's time as OpenSSL's own DANE-TA verification does:
  only DANE-EE waives them); and the leaf names the MX host or the TLSA base name
  (RFC 7672 §3.2.2, RFC 6125 rules as for PKIX, crawler/certnames.py).
Selectors: 0 the whole certificate, 1 its SubjectPublicKeyInfo; matching types: 0 exact,
1 SHA-256, 2 SHA-512 (RFC 6698 §2.1).
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto

from crawler.certnames import certificate_names, name_matches
from schema.vocab import Dane

DANE_TA, DANE_EE = 2, 3
USABLE = (DANE_TA, DANE_EE)


@dataclass(frozen=True)
class TlsaRecord:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @classmethod
    def parse(cls, text: str) -> TlsaRecord:
        """`usage selector mtype hex`, as mx_hosts.tlsa stores each record."""
        usage, selector, mtype, data = text.split()
        return cls(int(usage), int(selector), int(mtype), bytes.fromhex(data))

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    def matches(self, der: bytes) -> bool:
        """Does this record's association data match the certificate (RFC 6698 §2.1)?"""
        if self.selector == 0:
            selected = der
        elif self.selector == 1:
            try:
                key = x509.load_der_x509_certificate(der).public_key()
            except (ValueError, TypeError):
                return False
            selected = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            return False
        if self.mtype == 0:
            return selected == self.data
        if self.mtype == 1:
            return hashlib.sha256(selected).digest() == self.data
        if self.mtype == 2:
            return hashlib.sha512(selected).digest() == self.data
        return False


@dataclass(frozen=True)
class DaneVerdict:
    dane: Dane
    matched: str | None = None  # the record that matched, as text
    detail: str | None = None  # why nothing matched


def judge(
    records: Sequence[TlsaRecord],
    chain_der: Sequence[bytes],
    names: Sequence[str],
    when: datetime.datetime | None = None,
) -> DaneVerdict:
    """The target's DANE verdict: `names` are the MX host and the TLSA base name; `when`
    the time DANE-TA chains are verified at (the probe's; default now)."""
    usable = [r for r in records if r.usage in USABLE]
    if not usable:
        return DaneVerdict(Dane.MISMATCH, detail="only unusable records (usage 0/1)")
    if not chain_der:
        return DaneVerdict(Dane.MISMATCH, detail="no certificate")
    leaf = chain_der[0]
    for record in usable:
        if record.usage == DANE_EE and record.matches(leaf):
            return DaneVerdict(Dane.VALID, str(record))
    for record in usable:
        if record.usage != DANE_TA:
            continue
        for anchor in chain_der[1:]:
            if record.matches(anchor) and _chains_to(leaf, chain_der[1:], anchor, when):
                if _names_match(leaf, names):
                    return DaneVerdict(Dane.VALID, str(record))
                return DaneVerdict(Dane.MISMATCH, detail="DANE-TA: the leaf names no MX name")
    return DaneVerdict(Dane.MISMATCH, detail="no usable record matches the chain")


def _names_match(leaf: bytes, names: Sequence[str]) -> bool:
    try:
        presented = certificate_names(leaf)
    except ValueError:
        return False
    return any(name_matches(name, presented) for name in names)


def _chains_to(
    leaf: bytes, sent: Sequence[bytes], anchor: bytes, when: datetime.datetime | None
) -> bool:
    """Does the leaf verify up to `anchor`, through the intermediates the server sent?"""
    try:
        store = crypto.X509Store()
        store.add_cert(crypto.load_certificate(crypto.FILETYPE_ASN1, anchor))
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        if when is not None:
            store.set_time(when)
        untrusted = [crypto.load_certificate(crypto.FILETYPE_ASN1, der) for der in sent]
        leaf_cert = crypto.load_certificate(crypto.FILETYPE_ASN1, leaf)
        crypto.X509StoreContext(store, leaf_cert, untrusted).verify_certificate()
    except (crypto.Error, crypto.X509StoreContextError, ValueError):
        return False
    return True
