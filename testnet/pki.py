"""The test PKI: every certificate a spec declares, made fresh at start with `cryptography`.

Roots marked `trusted` are written to `ca.pem`, the scanner's whole trust store in tests.
CAs default to ten years either side of start, so a leaf outside its own validity window can
still be checked for trust at a time inside it (docs/design.md: each reason judged on its own).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testnet.spec import CertSpec

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate as made (DER, possibly deliberately corrupt) and its private key."""

    spec: CertSpec
    der: bytes
    key: PrivateKey

    @property
    def certificate(self) -> x509.Certificate:
        # Parsing does not check the signature, so a corrupted one still loads.
        return x509.load_der_x509_certificate(self.der)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def build(certs: Mapping[str, CertSpec], now: datetime.datetime | None = None) -> dict[str, Issued]:
    """Make every certificate, issuers first."""
    now = now or datetime.datetime.now(datetime.UTC)
    keys = _Keys()
    issued: dict[str, Issued] = {}

    def make(spec: CertSpec) -> Issued:
        if spec.name in issued:
            return issued[spec.name]
        parent = make(certs[spec.issuer]) if spec.issuer else None
        issued[spec.name] = _issue(spec, parent, keys, now)
        return issued[spec.name]

    for spec in certs.values():
        make(spec)
    return issued


def write(issued: Mapping[str, Issued], directory: Path) -> Path:
    """Write ca.pem (trusted roots only) and pki/NAME.pem + NAME.key; return ca.pem."""
    pki = directory / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    for name, item in issued.items():
        (pki / f"{name}.pem").write_bytes(item.pem)
        (pki / f"{name}.key").write_bytes(
            item.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    bundle = directory / "ca.pem"
    bundle.write_bytes(b"".join(i.pem for i in issued.values() if i.spec.trusted))
    return bundle


class _Keys:
    """Fresh keys for CAs; one shared key per type for leaves.

    Sharing keeps start fast (RSA generation dominates) and changes nothing a scan judges:
    fingerprints differ by serial and subject, and key size is per type.
    """

    def __init__(self) -> None:
        self._leaf: dict[str, PrivateKey] = {}

    def get(self, spec: CertSpec) -> PrivateKey:
        if spec.ca:
            return _generate(spec.key)
        if spec.key not in self._leaf:
            self._leaf[spec.key] = _generate(spec.key)
        return self._leaf[spec.key]


def _generate(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    curve = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1()}[kind]
    return ec.generate_private_key(curve)


def _issue(spec: CertSpec, parent: Issued | None, keys: _Keys, now: datetime.datetime) -> Issued:
    key = keys.get(spec)
    cn = spec.cn or (spec.names[0] if spec.names else spec.name)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mxcensus testnet"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    issuer_name = parent.certificate.subject if parent else subject
    signing_key = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=spec.valid_days[0]))
        .not_valid_after(now + datetime.timedelta(days=spec.valid_days[1]))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), False
        )
    if spec.ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(_key_usage(cert_sign=True, encipher=False), critical=True)
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                # RSA key exchange needs keyEncipherment; an EC leaf only signs.
                _key_usage(cert_sign=False, encipher=isinstance(key, rsa.RSAPrivateKey)),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        )
        if spec.san and spec.names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in spec.names]), False
            )
    der = builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    if spec.corrupt_signature:
        # The signature BIT STRING ends the DER: flipping its last byte keeps the encoding
        # valid but makes verification fail (OpenSSL error 7, certificate signature failure).
        der = der[:-1] + bytes([der[-1] ^ 0xFF])
    return Issued(spec, der, key)


def _key_usage(*, cert_sign: bool, encipher: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
