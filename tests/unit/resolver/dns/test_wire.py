"""The query parser's tiers and the reply builder, on bytes alone."""

from __future__ import annotations

import ipaddress
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from resolver.dns import wire


def make(name: str = "Web1.Example", rdtype: str = "A", **kwargs: object) -> bytes:
    query = dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]
    return query.to_wire()


def test_parses_question_exactly_as_asked() -> None:
    packet = make("WeB1.ExAmple", "AAAA")
    query = wire.parse_query(packet)
    assert query.labels == (b"WeB1", b"ExAmple")
    assert query.name == "web1.example"
    assert query.qtype == wire.TYPE_AAAA
    assert query.question == packet[12:]
    assert not query.edns and query.max_udp_size == 512
    assert query.memoizable


def test_edns_size_is_clamped_and_do_bit_read() -> None:
    query = wire.parse_query(make(use_edns=0, payload=65000, want_dnssec=True))
    assert query.edns and query.dnssec_ok and query.max_udp_size == wire.MAX_UDP_SIZE
    assert wire.parse_query(make(use_edns=0, payload=100)).max_udp_size == 512
    with_cookie = make(use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")])
    assert not wire.parse_query(with_cookie).memoizable


@pytest.mark.parametrize("packet", [b"", b"\x00" * 11])
def test_short_packets_are_dropped(packet: bytes) -> None:
    with pytest.raises(wire.DropQuery):
        wire.parse_query(packet)


def test_responses_are_dropped() -> None:
    packet = bytearray(make())
    packet[2] |= 0x80
    with pytest.raises(wire.DropQuery):
        wire.parse_query(bytes(packet))


def test_other_opcodes_are_notimp() -> None:
    message = dns.message.make_query("x.example", "A")
    message.set_opcode(dns.opcode.NOTIFY)
    with pytest.raises(wire.QueryError) as caught:
        wire.parse_query(message.to_wire())
    assert caught.value.rcode == wire.NOTIMP


@pytest.mark.parametrize("qdcount", [0, 2])
def test_qdcount_other_than_one_is_formerr(qdcount: int) -> None:
    packet = bytearray(make())
    struct.pack_into("!H", packet, 4, qdcount)
    with pytest.raises(wire.QueryError) as caught:
        wire.parse_query(bytes(packet))
    assert caught.value.rcode == wire.FORMERR


@pytest.mark.parametrize("mutilate", [
    lambda p: p[:-1],  # question cut short
    lambda p: p[:12] + b"\xc0\x0c" + p[-4:],  # pointer in the question
    lambda p: p[:12] + b"\x40abc" + p[12:],  # reserved label type
])
def test_broken_questions_are_formerr(mutilate: object) -> None:
    packet = mutilate(make())  # type: ignore[operator]
    with pytest.raises(wire.QueryError) as caught:
        wire.parse_query(packet)
    assert caught.value.rcode == wire.FORMERR


def test_trailing_bytes_are_ignored() -> None:
    # Issue 15: Unbound and dnsmasq answer such queries; so does dockdns.
    query = wire.parse_query(make(use_edns=0) + b"\x00junk")
    assert query.edns and query.qtype == 1


def test_edns_version_other_than_zero_is_badvers() -> None:
    with pytest.raises(wire.QueryError) as caught:
        wire.parse_query(make(use_edns=1))
    assert caught.value.rcode == wire.BADVERS
    reply = dns.message.from_wire(wire.error_reply(caught.value.query, b"", caught.value.rcode))
    assert reply.rcode() == dns.rcode.BADVERS


def test_reply_echoes_question_and_sets_flags() -> None:
    packet = make("MiXed.Case", want_dnssec=False, use_edns=0)
    query = wire.parse_query(packet)
    record = wire.rr_to_qname(wire.TYPE_A, 600, wire.address_rdata("10.0.0.1"))
    reply = dns.message.from_wire(wire.build_reply(query, wire.NOERROR, [record], 1232))
    assert reply.id == query.id
    assert reply.question[0].name.to_text() == "MiXed.Case."
    assert reply.answer[0].name.to_text() == "MiXed.Case."
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert not reply.flags & dns.flags.AA
    assert reply.edns == 0 and reply.answer[0].ttl == 600


def test_reply_too_big_is_truncated_record_by_record() -> None:
    query = wire.parse_query(make())
    records = [wire.rr_to_qname(wire.TYPE_A, 600, wire.address_rdata(f"10.0.0.{i}"))
               for i in range(100)]
    packed = wire.build_reply(query, wire.NOERROR, records, 512)
    assert len(packed) <= 512
    reply = dns.message.from_wire(packed)
    assert reply.flags & dns.flags.TC
    assert 0 < len(reply.answer[0]) < 100
    whole = dns.message.from_wire(wire.build_reply(query, wire.NOERROR, records, 65535))
    assert not whole.flags & dns.flags.TC and len(whole.answer[0]) == 100


@pytest.mark.parametrize(("labels", "address"), [
    ((b"3", b"2", b"1", b"10", b"in-addr", b"ARPA"), "10.1.2.3"),
    ((b"256", b"2", b"1", b"10", b"in-addr", b"arpa"), None),
    ((b"03", b"2", b"1", b"10", b"in-addr", b"arpa"), None),
    ((b"2", b"1", b"10", b"in-addr", b"arpa"), None),
    (tuple(label.encode() for label in
           ipaddress.ip_address("fd00::7").reverse_pointer.split(".")), "fd00::7"),
])
def test_reverse_names(labels: tuple[bytes, ...], address: str | None) -> None:
    assert wire.reverse_pointer_address(labels) == address
