"""Describe a DER certificate tolerantly: a server may send what OpenSSL took but
`cryptography` refuses to parse; the DER is kept and the error recorded."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def key_facts(public_key: Any) -> tuple[str, int | None]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC", public_key.key_size
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(public_key).__name__, None


def describe(der: bytes) -> dict[str, Any]:
    """The certificate's row: fingerprint, DER and what could be parsed of it."""
    row: dict[str, Any] = {
        "sha256": sha256_hex(der),
        "der": der,
        "subject": None,
        "issuer": None,
        "not_before": None,
        "not_after": None,
        "key_type": None,
        "key_bits": None,
        "san_dns": None,
        "parse_error": None,
    }
    try:
        cert = x509.load_der_x509_certificate(der)
        row["subject"] = cert.subject.rfc4514_string()
        row["issuer"] = cert.issuer.rfc4514_string()
        row["not_before"] = cert.not_valid_before_utc
        row["not_after"] = cert.not_valid_after_utc
        try:
            row["key_type"], row["key_bits"] = key_facts(cert.public_key())
        except (ValueError, x509.UnsupportedGeneralNameType) as e:
            row["parse_error"] = f"public key: {e}"
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            row["san_dns"] = san.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            row["san_dns"] = []
    except Exception as e:  # any parse failure: keep the DER, say why
        row["parse_error"] = f"{type(e).__name__}: {e}"[:500]
    return row
