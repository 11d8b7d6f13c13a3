"""The spec's DNSSEC-signed zone, signed at start with dnspython, and its answers.

The test network's DNS server (testnet/dns.py) hands every question under the signed
zone (`[dnssec] zone`), and the TLSA names the policy data declares elsewhere, to this
module. The zone is built from the spec's own records under it plus the TLSA RRsets of
`[policy.hosts]`, then signed (ECDSA P-256, RFC 6605) with NSEC (RFC 4034 §4) so that
denials are provable too; the names `[dnssec] bogus` declares (and the TLSA RRsets
declared `tlsa_bogus`) get a flipped byte in every signature. Answers are what an
authoritative server of a signed zone sends (RFC 4035 §3.1): the RRset and its RRSIG;
CNAMEs chased inside the zone; NODATA with the SOA and the name's NSEC; NXDOMAIN with
the NSEC covering the name and the one covering the wildcard of its closest encloser.

Validation is not done here: a real validating resolver (unbound, testnet/resolver.py)
in front of this server checks the signatures against the trust anchor written at start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testnet.pki import Issued
from testnet.policy import TLSA_PREFIX, NetworkPolicy, Tlsa, policy_of
from testnet.spec import DnsName, Spec

TTL = 60
STS_PREFIX, TLSRPT_PREFIX = "_mta-sts.", "_smtp._tls."  # RFC 8461 §3.1, RFC 8460 §3
MAX_CNAME_CHAIN = 8
SIGNATURE_LIFETIME = 30 * 86400  # seconds
ANCHOR_FILE = "trust-anchor.txt"


def tlsa_data(record: Tlsa, issued: dict[str, Issued]) -> bytes:
    """The certificate association data of one declared record (RFC 6698 §2.1)."""
    if record.data is not None:
        return bytes.fromhex(record.data)
    assert record.cert is not None
    cert = x509.load_der_x509_certificate(issued[record.cert].der)
    selected = (
        issued[record.cert].der
        if record.selector == 0
        else cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    if record.mtype == 0:
        return selected
    digest = hashes.Hash(hashes.SHA256() if record.mtype == 1 else hashes.SHA512())
    digest.update(selected)
    return digest.finalize()


def tlsa_text(record: Tlsa, issued: dict[str, Issued]) -> str:
    """`usage selector mtype hex`, as the mx_dane view writes each record."""
    return f"{record.usage} {record.selector} {record.mtype} {tlsa_data(record, issued).hex()}"


@dataclass
class Response:
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]


class SignedZone:
    """The signed zone, and the unsigned TLSA RRsets declared outside it."""

    def __init__(self, spec: Spec, issued: dict[str, Issued], now: float | None = None):
        self.policy: NetworkPolicy = policy_of(spec)
        assert self.policy.zone is not None
        self.origin = dns.name.from_text(self.policy.zone)
        self.zone = dns.zone.Zone(self.origin, relativize=False)
        self.unsigned: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
        now = time.time() if now is None else now
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.dnskey = dns.dnssec.make_dnskey(
            self.key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257
        )
        with self.zone.writer() as txn:
            txn.add(
                self.origin,
                TTL,
                _rdata("SOA", f"ns.{spec.zone}. hostmaster.{spec.zone}. 1 3600 600 86400 {TTL}"),
            )
            txn.add(self.origin, TTL, _rdata("NS", f"ns.{spec.zone}."))
            for entry in spec.names():
                if self.policy.signed(entry.name) and entry.dns is None:
                    owner = dns.name.from_text(entry.name)
                    for rdata in _records(entry):
                        txn.add(owner, TTL, rdata)
            records = [
                (TLSA_PREFIX + host.name, [_rdata("TLSA", tlsa_text(r, issued)) for r in host.tlsa])
                for host in self.policy.hosts.values()
            ]
            for domain in self.policy.domains.values():
                for prefix, texts in (
                    (STS_PREFIX, domain.mta_sts_txt),
                    (TLSRPT_PREFIX, domain.tls_rpt_txt),
                ):
                    rdatas = [dns.rdata.from_text("IN", "TXT", _quoted(t)) for t in texts]
                    records.append((prefix + domain.name, rdatas))
            for name, rdatas in records:
                if not rdatas:
                    continue
                owner = dns.name.from_text(name)
                if owner.is_subdomain(self.origin):
                    for rdata in rdatas:
                        txn.add(owner, TTL, rdata)
                else:
                    rrset = dns.rrset.from_rdata_list(owner, TTL, rdatas)
                    self.unsigned.setdefault(owner, []).append(rrset)
        dns.dnssec.sign_zone(
            self.zone,
            keys=[(self.key, self.dnskey)],
            inception=int(now) - 3600,
            lifetime=SIGNATURE_LIFETIME,
        )
        bogus = {dns.name.from_text(n) for n in self.policy.bogus}
        bogus |= {
            dns.name.from_text(TLSA_PREFIX + h.name)
            for h in self.policy.hosts.values()
            if h.tlsa_bogus
        }
        with self.zone.writer() as txn:
            for owner in bogus:
                for rdataset in list(txn.get_node(owner) or ()):
                    if rdataset.rdtype == dns.rdatatype.RRSIG:
                        txn.replace(owner, _corrupted(rdataset))
        self._names = sorted(self.zone.nodes)

    def serves(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.origin) or name in self.unsigned

    def write_anchor(self, directory: Path) -> Path:
        """The zone's DS record, as unbound's `trust-anchor-file` reads it."""
        ds = dns.dnssec.make_ds(self.origin, self.dnskey, "SHA256")
        path = directory / ANCHOR_FILE
        path.write_text(f"{self.origin.to_text()} IN DS {ds.to_text()}\n", encoding="ascii")
        return path

    def reply(self, query: dns.message.Message) -> dns.message.Message:
        """The whole authoritative response to one query."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        found = self.answer(question.name, question.rdtype)
        response.set_rcode(found.rcode)
        response.answer = found.answer
        response.authority = found.authority
        return response

    def answer(self, qname: dns.name.Name, qtype: int) -> Response:
        if qname in self.unsigned and not qname.is_subdomain(self.origin):
            found = [rrset for rrset in self.unsigned[qname] if rrset.rdtype == qtype]
            return Response(dns.rcode.NOERROR, found, [])  # an unsigned zone: no proofs
        answer: list[dns.rrset.RRset] = []
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            node = self.zone.get_node(name)
            if node is None:
                if answer:  # a CNAME whose target does not exist: RFC 6604, NXDOMAIN
                    return Response(dns.rcode.NXDOMAIN, answer, self._nxdomain(name))
                if self._empty_non_terminal(name):
                    return Response(dns.rcode.NOERROR, [], self._nodata(name))
                return Response(dns.rcode.NXDOMAIN, [], self._nxdomain(name))
            found = node.get_rdataset(dns.rdataclass.IN, qtype)
            if found is not None:
                answer += self._signed(name, found)
                return Response(dns.rcode.NOERROR, answer, [])
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                return Response(dns.rcode.NOERROR, answer, self._nodata(name))
            answer += self._signed(name, cname)
            name = cname[0].target
            if not name.is_subdomain(self.origin):
                break
        return Response(dns.rcode.NOERROR, answer, [])

    # --- the pieces of an answer -------------------------------------------------------

    def _signed(
        self, owner: dns.name.Name, rdataset: dns.rdataset.Rdataset
    ) -> list[dns.rrset.RRset]:
        rrsets = [_rrset(owner, rdataset)]
        node = self.zone.get_node(owner)
        sigs = (
            node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            if node
            else None
        )
        if sigs is not None:
            rrsets.append(_rrset(owner, sigs))
        return rrsets

    def _at(self, owner: dns.name.Name, rdtype: int) -> list[dns.rrset.RRset]:
        node = self.zone.get_node(owner)
        found = node.get_rdataset(dns.rdataclass.IN, rdtype) if node else None
        return self._signed(owner, found) if found is not None else []

    def _soa(self) -> list[dns.rrset.RRset]:
        return self._at(self.origin, dns.rdatatype.SOA)

    def _nodata(self, name: dns.name.Name) -> list[dns.rrset.RRset]:
        if self.zone.get_node(name) is not None:
            return self._soa() + self._at(name, dns.rdatatype.NSEC)
        return self._soa() + self._covering(name)  # an empty non-terminal (RFC 4035 §3.1.3.2)

    def _nxdomain(self, name: dns.name.Name) -> list[dns.rrset.RRset]:
        encloser = name.parent()
        while encloser != self.origin and not self._exists(encloser):
            encloser = encloser.parent()
        wildcard = dns.name.Name((b"*", *encloser.labels))
        nsecs = self._covering(name)
        for rrset in self._covering(wildcard):
            if rrset not in nsecs:
                nsecs.append(rrset)
        return self._soa() + nsecs

    def _covering(self, name: dns.name.Name) -> list[dns.rrset.RRset]:
        """The NSEC of the last name before `name` in canonical order (RFC 4034 §6.1)."""
        before = [n for n in self._names if n < name]
        owner = before[-1] if before else self._names[-1]
        return self._at(owner, dns.rdatatype.NSEC)

    def _exists(self, name: dns.name.Name) -> bool:
        return self.zone.get_node(name) is not None or self._empty_non_terminal(name)

    def _empty_non_terminal(self, name: dns.name.Name) -> bool:
        return any(n != name and n.is_subdomain(name) for n in self._names)


def _rdata(rdtype: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)


def _records(entry: DnsName) -> list[dns.rdata.Rdata]:
    rdatas = [_rdata("MX", f"{mx.preference} {mx.exchange or ''}.") for mx in entry.mx]
    rdatas += [_rdata("A", a) for a in entry.a]
    rdatas += [_rdata("AAAA", a) for a in entry.aaaa]
    if entry.cname:
        rdatas.append(_rdata("CNAME", entry.cname + "."))
    rdatas += [dns.rdata.from_text("IN", "TXT", _quoted(t)) for t in entry.txt]
    return rdatas


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rrset(owner: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(owner, rdataset.rdclass, rdataset.rdtype, rdataset.covers)
    rrset.update(rdataset)
    return rrset


def _corrupted(rdataset: dns.rdataset.Rdataset) -> dns.rdataset.Rdataset:
    """The same signatures with one byte flipped: they no longer verify."""
    rdatas = []
    for rrsig in rdataset:
        signature = bytearray(rrsig.signature)
        signature[len(signature) // 2] ^= 0xFF
        rdatas.append(rrsig.replace(signature=bytes(signature)))
    return dns.rdataset.from_rdata_list(rdataset.ttl, rdatas)
