"""pipelines.verify: each reason judged on its own, against a small PKI made here."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pipelines.verify import (
    ChainVerdict,
    TrustStore,
    judge_chain,
    judge_target,
    name_matches,
)

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
YEAR = 365 * DAY
ECDSA_SHA256 = bytes.fromhex("06082a8648ce3d040302")  # OID 1.2.840.10045.4.3.2, DER

# Key generation dominates the cost: one key per role, made once for the module.
ROOT_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
INTER_KEY = ec.generate_private_key(ec.SECP256R1())
UNKNOWN_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
RSA1024_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    cn: str,
    issuer: CA | None,
    key: Key = LEAF_KEY,
    *,
    san: Sequence[x509.GeneralName] | None = None,
    ca: bool = False,
    valid: tuple[datetime.timedelta, datetime.timedelta] = (-30 * DAY, 60 * DAY),
) -> x509.Certificate:
    """A certificate signed by `issuer`, or self-signed by `key` when issuer is None."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + valid[0])
        .not_valid_after(NOW + valid[1])
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    signer = issuer.key if issuer else key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def dns(*names: str) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in names]


ROOT = CA(make_cert("Test Root", None, ROOT_KEY, ca=True, valid=(-YEAR, 20 * YEAR)), ROOT_KEY)
INTER = CA(
    make_cert("Test Intermediate", ROOT, INTER_KEY, ca=True, valid=(-YEAR, 5 * YEAR)), INTER_KEY
)
UNKNOWN = CA(
    make_cert("Unknown Root", None, UNKNOWN_KEY, ca=True, valid=(-YEAR, 20 * YEAR)), UNKNOWN_KEY
)
OLD_INTER = CA(
    make_cert("Test Intermediate", ROOT, INTER_KEY, ca=True, valid=(-3 * YEAR, -YEAR)), INTER_KEY
)


def leaf(name: str = "mx.example.org", issuer: CA | None = INTER, **kwargs) -> bytes:
    kwargs.setdefault("san", dns(name))
    return der(make_cert(name, issuer, **kwargs))


# --- helpers: corrupt certificates deliberately --------------------------------------------


def _flip_signature(cert_der: bytes) -> bytes:
    """The signature BIT STRING ends the DER: flipping its last byte keeps it parseable."""
    return cert_der[:-1] + bytes([cert_der[-1] ^ 0x01])


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 0x80 else _long_length(n)
    return bytes([tag]) + length + body


def _long_length(n: int) -> bytes:
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _resign(cert_der: bytes, old: bytes, new: bytes, issuer: CA = INTER) -> bytes:
    """Replace `old` by `new` in the TBSCertificate and sign it again (ECDSA issuer)."""
    tbs = x509.load_der_x509_certificate(cert_der).tbs_certificate_bytes
    assert old in tbs
    tbs = tbs.replace(old, new, 1)
    signature = issuer.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + _tlv(0x30, ECDSA_SHA256) + _tlv(0x03, b"\x00" + signature))


def _as_version_4(cert_der: bytes) -> bytes:
    """Version field 3 (v4), correctly signed: OpenSSL reads it, cryptography will not."""
    return _resign(cert_der, bytes.fromhex("a003020102"), bytes.fromhex("a003020103"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    bundle = tmp_path_factory.mktemp("trust") / "ca.pem"
    bundle.write_bytes(ROOT.cert.public_bytes(serialization.Encoding.PEM))
    return TrustStore.from_file(str(bundle))


def judge(chain: Sequence[bytes], store: TrustStore, when: datetime.datetime = NOW) -> ChainVerdict:
    return judge_chain(chain, store, when)


# --- the trust store -----------------------------------------------------------------------


def test_store_records_bundle_hash_and_reuses_stores(store: TrustStore) -> None:
    assert store.sha256 == hashlib.sha256(Path(store.path).read_bytes()).hexdigest()
    assert len(store.roots) == 1
    assert store.at(NOW) is store.at(NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2))))
    assert store.at(NOW) is store.at(NOW + datetime.timedelta(microseconds=999_999))
    assert store.at(NOW) is not store.at(NOW + datetime.timedelta(seconds=1))


def test_empty_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no certificate"):
        TrustStore.from_file(str(tmp_path / "empty.pem"))


# --- chains: exact reasons -----------------------------------------------------------------


def _cases() -> dict[str, tuple[list[bytes], str, tuple[str, ...], tuple[str, ...]]]:
    """name: (chain as sent, MX host, chain reasons, target reasons)."""
    return {
        "valid": ([leaf(), INTER.der], "mx.example.org", (), ()),
        "wildcard": ([leaf("*.example.org"), INTER.der], "mx.example.org", (), ()),
        "wildcard_not_apex": (
            [leaf("*.example.org"), INTER.der],
            "example.org",
            (),
            ("hostname_mismatch",),
        ),
        "cn_only_no_san": ([leaf(san=None), INTER.der], "mx.example.org", (), ()),
        "san_differs_from_cn": (
            [leaf(san=dns("other.example.org")), INTER.der],
            "mx.example.org",
            (),
            ("hostname_mismatch",),
        ),
        "expired": (
            [leaf(valid=(-90 * DAY, -DAY)), INTER.der],
            "mx.example.org",
            ("expired",),
            ("expired",),
        ),
        "not_yet_valid": (
            [leaf(valid=(DAY, 90 * DAY)), INTER.der],
            "mx.example.org",
            ("not_yet_valid",),
            ("not_yet_valid",),
        ),
        "rsa_1024": (
            [leaf(key=RSA1024_KEY), INTER.der],
            "mx.example.org",
            ("weak_key",),
            ("weak_key",),
        ),
        "self_signed": (
            [leaf(issuer=None)],
            "mx.example.org",
            ("self_signed",),
            ("self_signed",),
        ),
        "unknown_root_sent": (
            [leaf(issuer=UNKNOWN), UNKNOWN.der],
            "mx.example.org",
            ("untrusted_ca",),
            ("untrusted_ca",),
        ),
        "missing_intermediate": (
            [leaf()],
            "mx.example.org",
            ("untrusted_ca",),
            ("untrusted_ca",),
        ),
        "expired_and_unknown_ca": (
            [leaf(issuer=UNKNOWN, valid=(-90 * DAY, -DAY)), UNKNOWN.der],
            "other.example",
            ("expired", "untrusted_ca"),
            ("expired", "hostname_mismatch", "untrusted_ca"),
        ),
        "bad_signature": (
            [_flip_signature(leaf()), INTER.der],
            "mx.example.org",
            ("invalid_chain",),
            ("invalid_chain",),
        ),
        # Each reason on its own: OpenSSL's first error does not hide the dates.
        "expired_self_signed": (
            [leaf(issuer=None, valid=(-90 * DAY, -DAY))],
            "mx.example.org",
            ("expired", "self_signed"),
            ("expired", "self_signed"),
        ),
        "not_yet_valid_missing_intermediate": (
            [leaf(valid=(DAY, 90 * DAY), key=RSA1024_KEY)],
            "mx.example.org",
            ("not_yet_valid", "untrusted_ca", "weak_key"),
            ("not_yet_valid", "untrusted_ca", "weak_key"),
        ),
        "expired_bad_signature": (
            [_flip_signature(leaf(valid=(-90 * DAY, -DAY))), INTER.der],
            "mx.example.org",
            ("expired", "invalid_chain"),
            ("expired", "invalid_chain"),
        ),
        "idn_a_label_san": (
            [leaf("xn--bcher-kva.example"), INTER.der],
            "bücher.example",
            (),
            (),
        ),
        "expired_intermediate": (
            [leaf(issuer=OLD_INTER, valid=(-2 * YEAR, 30 * DAY)), OLD_INTER.der],
            "mx.example.org",
            ("expired",),
            ("expired",),
        ),
    }


CASES = _cases()


@pytest.mark.parametrize("case", CASES)
def test_chain_reasons(store: TrustStore, case: str) -> None:
    chain, mx_host, chain_reasons, target_reasons = CASES[case]
    verdict = judge(chain, store)
    assert verdict.reasons == chain_reasons
    assert judge_target(verdict.reasons, verdict.leaf_names, mx_host) == target_reasons


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("valid", None),
        ("expired", "10: certificate has expired"),
        ("not_yet_valid", "9: certificate is not yet valid"),
        ("self_signed", "18: self-signed certificate"),
        ("unknown_root_sent", "19: self-signed certificate in certificate chain"),
        ("expired_and_unknown_ca", "19: self-signed certificate in certificate chain"),
        ("bad_signature", "7: certificate signature failure"),
    ],
)
def test_openssl_error_text_is_kept(store: TrustStore, case: str, error: str | None) -> None:
    # OpenSSL's wording grows between versions (4.0: "…not yet valid or the system clock is
    # incorrect"): the number and the start of the text are what is stable.
    text = judge(CASES[case][0], store).openssl_error
    if error is None:
        assert text is None
    else:
        assert text is not None and text.startswith(error)


def test_openssl_error_queue_is_left_empty(store: TrustStore) -> None:
    """A failed verification must not leave errors for the next OpenSSL call on the thread."""
    judge(CASES["bad_signature"][0], store)
    assert Binding().lib.ERR_peek_error() == 0
    garbage = judge([b"\x30\x03\x02\x01\x00"], store)
    assert garbage.parse_error is not None and "signature" not in garbage.parse_error


def test_missing_intermediate_is_20_or_21(store: TrustStore) -> None:
    error = judge(CASES["missing_intermediate"][0], store).openssl_error
    assert error in {
        "20: unable to get local issuer certificate",
        "21: unable to verify the first certificate",
    }


def test_leaf_facts(store: TrustStore) -> None:
    chain = [leaf(san=dns("MX.Example.ORG", "alt.example.org")), INTER.der]
    verdict = judge(chain, store)
    assert verdict == ChainVerdict(
        reasons=(),
        openssl_error=None,
        parse_error=None,
        leaf_names=("mx.example.org", "alt.example.org"),
        leaf_has_san=True,
        key_type="EC",
        key_bits=256,
        not_before=NOW - 30 * DAY,
        not_after=NOW + 60 * DAY,
    )
    rsa = judge(CASES["rsa_1024"][0], store)
    assert (rsa.key_type, rsa.key_bits) == ("RSA", 1024)


@pytest.mark.parametrize(
    ("curve", "bits", "reasons"),
    [(ec.SECP256R1, 256, ()), (ec.SECP224R1, 224, ()), (ec.SECP192R1, 192, ("weak_key",))],
)
def test_ec_key_size(store: TrustStore, curve: type, bits: int, reasons: tuple[str, ...]) -> None:
    """EC keys are weak below 224 bits (docs/design.md)."""
    try:
        key = ec.generate_private_key(curve())
    except UnsupportedAlgorithm:
        pytest.skip(f"this OpenSSL cannot make {curve.name} keys")
    verdict = judge([leaf(key=key), INTER.der], store)
    assert (verdict.key_type, verdict.key_bits, verdict.reasons) == ("EC", bits, reasons)


def test_cn_is_used_only_without_san_dns_name(store: TrustStore) -> None:
    cn_only = judge(CASES["cn_only_no_san"][0], store)
    assert (cn_only.leaf_names, cn_only.leaf_has_san) == (("mx.example.org",), False)
    differs = judge(CASES["san_differs_from_cn"][0], store)
    assert (differs.leaf_names, differs.leaf_has_san) == (("other.example.org",), True)
    # A SAN holding only an IP address has no DNS-ID: the CN counts (RFC 6125 §6.4.4),
    # and the IP address never matches a name.
    ip_only = judge(
        [leaf(san=[x509.IPAddress(ipaddress.ip_address("192.0.2.1"))]), INTER.der], store
    )
    assert (ip_only.leaf_names, ip_only.leaf_has_san) == (("mx.example.org",), False)
    assert judge_target(ip_only.reasons, ip_only.leaf_names, "mx.example.org") == ()
    assert judge_target(ip_only.reasons, ip_only.leaf_names, "192.0.2.1") == ("hostname_mismatch",)


def test_sent_certificates_off_the_path_are_not_judged(store: TrustStore) -> None:
    """An expired intermediate the server also sends (an old issue of the same CA, sent
    first) and an unrelated root change nothing: OpenSSL picks the issuer valid at scan
    time, and only the path it builds is judged."""
    chain = [leaf(), OLD_INTER.der, INTER.der, UNKNOWN.der]
    assert judge(chain, store).reasons == ()


# --- the scan time -------------------------------------------------------------------------


def test_when_is_honoured(store: TrustStore) -> None:
    chain = CASES["valid"][0]
    later = judge(chain, store, NOW + 10 * YEAR)
    assert later.reasons == ("expired",)  # the trust check still passes, at a time in range
    assert later.openssl_error == "10: certificate has expired"
    assert judge(chain, store, NOW - 10 * YEAR).reasons == ("not_yet_valid",)
    assert judge(chain, store, NOW + 30 * DAY).reasons == ()


def test_when_in_another_zone_or_naive_is_the_same_instant(store: TrustStore) -> None:
    chain = CASES["valid"][0]
    end = NOW + 60 * DAY
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    assert judge(chain, store, end.astimezone(tokyo)).reasons == ()  # inclusive end
    # Certificate dates and OpenSSL's verification time are whole seconds.
    assert judge(chain, store, end + datetime.timedelta(microseconds=500_000)).reasons == ()
    assert judge(chain, store, (end + DAY).astimezone(tokyo)).reasons == ("expired",)
    assert judge(chain, store, (end + DAY).replace(tzinfo=None)).reasons == ("expired",)


# --- what cannot be parsed -----------------------------------------------------------------


def test_empty_chain_is_invalid(store: TrustStore) -> None:
    verdict = judge([], store)
    assert verdict.reasons == ("invalid_chain",)
    assert verdict.parse_error
    assert judge_target(verdict.reasons, verdict.leaf_names, "mx.example.org") == (
        "hostname_mismatch",
        "invalid_chain",
    )


def test_garbage_leaf_is_invalid(store: TrustStore) -> None:
    verdict = judge([b"\x30\x03\x02\x01\x00", INTER.der], store)
    assert verdict.reasons == ("invalid_chain",)
    assert verdict.parse_error is not None and verdict.parse_error.startswith("leaf: ")


def test_garbage_intermediate_is_invalid_but_judged(store: TrustStore) -> None:
    verdict = judge([leaf(), b"not a certificate", INTER.der], store)
    assert verdict.reasons == ("invalid_chain",)
    assert verdict.openssl_error is None  # the path itself verified
    assert verdict.parse_error is not None and verdict.parse_error.startswith("certificate 1: ")


def test_leaf_openssl_reads_but_cryptography_refuses(store: TrustStore) -> None:
    """A v4 certificate: OpenSSL verifies it, cryptography will not parse it."""
    verdict = judge([_as_version_4(leaf()), INTER.der], store)
    assert verdict.reasons == ("invalid_chain",)
    assert verdict.openssl_error is None
    assert verdict.parse_error is not None and "InvalidVersion" in verdict.parse_error
    # Dates and key still come from OpenSSL's reading; names are unknown (fail closed).
    assert (verdict.not_after, verdict.key_type, verdict.key_bits) == (NOW + 60 * DAY, "EC", 256)
    assert verdict.leaf_names == ()
    assert judge_target(verdict.reasons, verdict.leaf_names, "mx.example.org") == (
        "hostname_mismatch",
        "invalid_chain",
    )


def test_expired_leaf_openssl_reads_but_cryptography_refuses(store: TrustStore) -> None:
    chain = [_as_version_4(leaf(valid=(-90 * DAY, -DAY))), INTER.der]
    assert judge(chain, store).reasons == ("expired", "invalid_chain")


# --- name matching (RFC 6125 §6.4) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "names", "expected"),
    [
        ("mx.example.org", ["mx.example.org"], True),
        ("MX.Example.ORG", ["mx.example.org"], True),
        ("mx.example.org", ["MX.EXAMPLE.ORG"], True),
        ("mx.example.org.", ["mx.example.org"], True),
        ("mx.example.org", ["mx.example.org."], True),
        ("mx.example.org", ["other.example.org", "mx.example.org"], True),
        ("mx.example.org", [], False),
        ("mx.example.org", ["example.org"], False),
        ("mx--1.example.org", ["mx--1.example.org"], True),  # ASCII is not IDNA-checked
        # wildcards: the whole left-most label, exactly one label
        ("mx.example.org", ["*.example.org"], True),
        ("MX.example.org.", ["*.EXAMPLE.org"], True),
        ("example.org", ["*.example.org"], False),
        ("a.b.example.org", ["*.example.org"], False),
        ("foo.example.org", ["f*.example.org"], False),
        ("foo.example.org", ["*oo.example.org"], False),
        ("a.b.example.org", ["*.*.example.org"], False),
        ("mx.example.org", ["mx.*.org"], False),
        ("example.org", ["*.org"], False),
        ("org", ["*"], False),
        ("mx.example.org", ["*"], False),
        (".example.org", ["*.example.org"], False),
        ("*.example.org", ["*.example.org"], False),
        ("xn--bcher-kva.example.org", ["*.example.org"], True),
        ("xn--bcher-kva.example", ["xn--*.example"], False),
        ("xn--bcher-kva.example", ["xn--bcher-*.example"], False),
        # IDNs compared as A-labels
        ("bücher.example", ["xn--bcher-kva.example"], True),
        ("BÜCHER.example.", ["xn--bcher-kva.example"], True),
        ("xn--bcher-kva.example", ["bücher.example"], True),
        ("XN--BCHER-KVA.EXAMPLE", ["xn--bcher-kva.example"], True),
        ("mx.bücher.example", ["*.xn--bcher-kva.example"], True),
        ("mx.xn--bcher-kva.example", ["*.bücher.example"], True),
        ("bucher.example", ["xn--bcher-kva.example"], False),
        ("☃.example", ["xn--n3h.example"], False),  # IDNA2008 refuses U+2603: no match
        # IP addresses are never DNS names
        ("192.0.2.1", ["192.0.2.1"], False),
        ("2001:db8::1", ["2001:db8::1"], False),
        ("", [""], False),
        ("mx..example.org", ["mx..example.org"], False),
    ],
)
def test_name_matches(host: str, names: list[str], expected: bool) -> None:
    assert name_matches(host, names) is expected


def test_unreadable_san_costs_only_the_names(store: TrustStore) -> None:
    """A dNSName that is not IA5 (a 0xFF byte): cryptography refuses the SAN only."""
    cert = _resign(leaf(san=dns("mx.example.orX")), b"mx.example.orX", b"mx.example.or\xff")
    verdict = judge([cert, INTER.der], store)
    assert verdict.reasons == ("invalid_chain",)
    assert verdict.parse_error is not None and verdict.parse_error.startswith("leaf: names: ")
    assert (verdict.leaf_names, verdict.key_type, verdict.key_bits) == ((), "EC", 256)
