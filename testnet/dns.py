"""The authoritative DNS server for the spec's zone (twisted.names), over UDP and TCP.

Answers MX, A, AAAA, CNAME and TXT from the spec; NXDOMAIN (with the SOA, RFC 2308) for
unknown names in the zone; NODATA for names that exist without the asked type, empty
non-terminals included (RFC 8020); SERVFAIL or silence for the names the spec says;
REFUSED for names outside the zone, as an authoritative-only server does. With a reply
delay every answer is sent that much later from a reactor timer (a distant server).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message as dnsmessage
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.names import dns
from twisted.names.authority import FileAuthority
from twisted.names.dns import DNSDatagramProtocol
from twisted.names.server import DNSServerFactory
from twisted.python.failure import Failure

from testnet.dnssec import SignedZone
from testnet.spec import DnsName, Spec

TTL = 60
MAX_CNAME_CHAIN = 8


class SpecAuthority(FileAuthority):
    """A FileAuthority fed from the spec instead of a zone file."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)  # FileAuthority calls loadFile(spec)

    def loadFile(self, spec: Spec) -> None:  # Twisted's hook, fed a spec, not a file name
        zone = spec.zone.encode("ascii")
        ns = b"ns." + zone
        self.soa = (
            zone,
            dns.Record_SOA(
                mname=ns,
                rname=b"hostmaster." + zone,
                serial=1,
                refresh=3600,
                retry=600,
                expire=86400,
                minimum=TTL,
                ttl=TTL,
            ),
        )
        records: dict[bytes, list[dns.IEncodableRecord]] = {
            zone: [self.soa[1], dns.Record_NS(ns, ttl=TTL)],
            ns: [dns.Record_A(spec.dns_ip, ttl=TTL)]
            if ":" not in spec.dns_ip
            else [dns.Record_AAAA(spec.dns_ip, ttl=TTL)],
        }
        for entry in spec.names():
            if entry.dns is not None:
                continue  # nxdomain: absent; servfail and timeout: handled by the factory
            owner = entry.name.encode("ascii")
            records[owner] = list(_records(entry))
        # Ancestors of declared names exist, empty (RFC 8020): NODATA, not NXDOMAIN.
        for owner in list(records):
            labels = owner.split(b".")
            for i in range(1, len(labels)):
                parent = b".".join(labels[i:])
                if len(parent) > len(zone) and parent.endswith(b"." + zone):
                    records.setdefault(parent, [])
        self.records = records

    def answer(self, name: bytes, qtype: int) -> Answer:
        """The whole response for one question. Like FileAuthority._lookup, but CNAMEs are
        chased for every type (RFC 1034 4.3.2 step 3a: an MX query on an alias gets the
        CNAME and the MX) and the SOA comes with NXDOMAIN and NODATA (RFC 2308)."""
        owner = name.lower().rstrip(b".")
        if owner not in self.records:
            return Answer(dns.ENAME, [], [_rr(*self.soa)], [])
        answers: list[dns.RRHeader] = []
        for _ in range(MAX_CNAME_CHAIN):
            records = self.records[owner]
            matching = [r for r in records if qtype in (r.TYPE, dns.ALL_RECORDS)]
            cname = next((r for r in records if r.TYPE == dns.CNAME), None)
            if matching or cname is None:
                answers += [_rr(owner, r) for r in matching]
                break
            answers.append(_rr(owner, cname))
            owner = cname.name.name.lower()
            if owner not in self.records:
                break  # validated away: a CNAME target is always declared
        # RFC 1034 4.3.2 step 6: the addresses of MX exchanges, unless already answered.
        answered = {(a.name.name, a.type) for a in answers}
        additional = [
            rr
            for rr in self._additionalRecords([a for a in answers if a.type == dns.MX], [], TTL)
            if (rr.name.name, rr.type) not in answered
        ]
        found = any(a.type == qtype for a in answers) or (qtype == dns.ALL_RECORDS and answers)
        return Answer(dns.OK, answers, [] if found else [_rr(*self.soa)], additional)

    def _lookup(self, name, cls, type, timeout=None):
        # The IResolver path (e.g. when chained into another server); the factory below
        # calls `answer` directly, for every query type.
        result = self.answer(name, type)
        if result.rcode == dns.ENAME:
            return defer.fail(Failure(dns.AuthoritativeDomainError(name)))
        return defer.succeed((result.answers, result.authority, result.additional))


@dataclass
class Answer:
    """One response's rcode and sections."""

    rcode: int
    answers: list[dns.RRHeader]
    authority: list[dns.RRHeader]
    additional: list[dns.RRHeader]


def _rr(owner: bytes, record: dns.IEncodableRecord) -> dns.RRHeader:
    return dns.RRHeader(owner, record.TYPE, dns.IN, TTL, record, auth=True)


def _records(entry: DnsName) -> Iterator[dns.IEncodableRecord]:
    for mx in entry.mx:
        # An empty exchange encodes as the root: "MX 0 ." (RFC 7505).
        yield dns.Record_MX(mx.preference, mx.exchange.encode("ascii"), ttl=TTL)
    for address in entry.a:
        yield dns.Record_A(address, ttl=TTL)
    for address in entry.aaaa:
        yield dns.Record_AAAA(address, ttl=TTL)
    if entry.cname:
        yield dns.Record_CNAME(entry.cname.encode("ascii"), ttl=TTL)
    for text in entry.txt:
        yield dns.Record_TXT(text.encode("utf-8"), ttl=TTL)


class SpecDNSFactory(DNSServerFactory):
    """Routes each query: silence, SERVFAIL, REFUSED or the authority's answer."""

    def __init__(
        self,
        spec: Spec,
        clock: IReactorTime | None = None,
        delay: float = 0.0,
        signed: SignedZone | None = None,
    ) -> None:
        self.authority = SpecAuthority(spec)
        self.signed = signed  # the DNSSEC-signed zone (testnet/dnssec.py), if any
        super().__init__(authorities=[self.authority])
        self.clock = clock
        self.delay = delay
        self.zone = spec.zone.encode("ascii")
        self.servfail = {n.name.encode() for n in spec.names() if n.dns == "servfail"}
        self.drop = {n.name.encode() for n in spec.names() if n.dns == "timeout"}

    def handleQuery(self, message: dns.Message, protocol: object, address: object) -> None:
        query = message.queries[0]
        name = query.name.name.lower().rstrip(b".")
        if name in self.drop:
            # An unresponsive server: no reply at all, over UDP or TCP; the client times out.
            return
        if self.signed is not None and name not in self.servfail:
            wire = self._signed_reply(message, query)
            if wire is not None:
                self._send_wire(protocol, wire, address)
                return
        if name in self.servfail:
            result = Answer(dns.ESERVER, [], [], [])
        elif name != self.zone and not name.endswith(b"." + self.zone):
            result = Answer(dns.EREFUSED, [], [], [])
        else:
            result = self.authority.answer(name, query.type)
        response = self._responseFromMessage(
            message=message,
            rCode=result.rcode,
            answers=result.answers,
            authority=result.authority,
            additional=result.additional,
        )
        response.auth = result.rcode in (dns.OK, dns.ENAME)  # AA, also on NXDOMAIN
        if self.delay > 0 and self.clock is not None:
            self.clock.callLater(self.delay, self.sendReply, protocol, response, address)
        else:
            self.sendReply(protocol, response, address)

    def _signed_reply(self, message: dns.Message, query: dns.Query) -> bytes | None:
        """The signed zone's answer, built by dnspython (twisted.names knows no RRSIG)."""
        import dns.name as dnsname

        name = dnsname.from_text(query.name.name.decode("ascii"))
        assert self.signed is not None
        if not self.signed.serves(name):
            return None
        asked = dnsmessage.make_query(name, query.type, use_edns=0, want_dnssec=True)
        asked.id = message.id
        reply = self.signed.reply(asked)
        if not message.recDes:
            reply.flags &= ~0x0100  # RD is copied from the query only
        return reply.to_wire()

    def _send_wire(self, protocol: object, wire: bytes, address: object) -> None:
        def send() -> None:
            if isinstance(protocol, DNSDatagramProtocol):
                protocol.transport.write(wire, address)
            else:  # TCP: two length bytes first (RFC 1035 4.2.2)
                protocol.transport.write(struct.pack("!H", len(wire)) + wire)

        if self.delay > 0 and self.clock is not None:
            self.clock.callLater(self.delay, send)
        else:
            send()
