"""The pure wire logic of forwarding (resolver/dns/upstream_message.py): upstream queries,
scanning upstream
replies, and rendering one reply per client. Replies are made and read back with dnspython."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.dns import wire
from resolver.dns.upstream_message import (
    UPSTREAM_UDP_SIZE,
    BadReply,
    cache_key,
    render,
    reply_question,
    same_question,
    scan,
    scan_any,
    upstream_query,
)
from tests.support.replies import a_records, client_query, read, upstream_reply


def test_cache_key_ignores_name_case_but_not_type_bytes() -> None:
    assert cache_key(client_query("WWW.Example.Test")) == \
        cache_key(client_query("www.example.test"))
    # Types 65 (HTTPS) and 97 differ only in a bit that lower() would clear on an ASCII letter.
    assert cache_key(client_query(rdtype="HTTPS")) != cache_key(client_query(rdtype="TYPE97"))
    assert cache_key(client_query(want_dnssec=True)) != cache_key(client_query())
    assert cache_key(client_query(flags=dns.flags.RD | dns.flags.CD)) != cache_key(client_query())
    # dig sets AD in its queries; the answer is the same one.
    assert cache_key(client_query(flags=dns.flags.RD | dns.flags.AD)) == cache_key(client_query())


def test_upstream_query_keeps_the_question_and_dnssec_bit_with_our_size() -> None:
    query = client_query("MiXeD.example.test", "MX", want_dnssec=True,
                         options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")])
    sent = dns.message.from_wire(upstream_query(query, 999))
    assert sent.id == 999
    assert sent.question[0].name.to_text() == "MiXeD.example.test."
    assert sent.question[0].rdtype == dns.rdatatype.MX
    assert sent.flags & dns.flags.RD
    assert sent.flags & dns.flags.AD
    assert sent.payload == UPSTREAM_UDP_SIZE
    assert sent.ednsflags & dns.flags.DO
    assert not sent.options  # the client's cookie is its own


def test_render_gives_each_client_its_id_question_and_opt() -> None:
    asked = client_query("www.example.test", "MX")
    mx = dns.rrset.from_text_list("www.example.test.", 300, "IN", "MX",
                                  ["10 mail.example.test.", "20 mail2.example.test."])
    glue = a_records("mail.example.test.", 1)
    scanned = scan(upstream_reply(asked, mx, additional=(glue,)))
    other = client_query("WWW.EXAMPLE.TEST", "MX", qid=55, use_edns=False)
    reply = read(render(scanned, other, scanned.ttls, 0, other.max_udp_size))
    assert reply.id == 55
    assert reply.question[0].name.to_text() == "WWW.EXAMPLE.TEST."
    assert reply.edns < 0
    # Names compressed against the question read in the client's case: DNS names compare
    # without case (RFC 4343), and DNSSEC lowercases these types before checking signatures.
    assert {str(r).lower() for r in reply.answer[0]} == {"10 mail.example.test.",
                                                         "20 mail2.example.test."}
    assert [str(r) for r in reply.additional[0]] == ["192.0.2.1"]
    with_edns = client_query("www.example.test", "MX", qid=56, use_edns=0, payload=1400)
    reply = read(render(scanned, with_edns, scanned.ttls, 0, with_edns.max_udp_size))
    assert reply.edns == 0 and reply.payload == wire.OUR_UDP_SIZE


def test_render_counts_ttls_down_and_not_below_zero() -> None:
    asked = client_query()
    scanned = scan(upstream_reply(asked, a_records("www.example.test.", 1, ttl=300),
                                  authority=(dns.rrset.from_text("example.test.", 5, "IN", "NS",
                                                                 "ns.example.test."),)))
    reply = read(render(scanned, asked, scanned.ttls, 10, 4096))
    assert reply.answer[0].ttl == 290
    assert reply.authority[0].ttl == 0
    stale = read(render(scanned, asked, scanned.ttls, 10, 4096, fixed_ttl=30))
    assert stale.answer[0].ttl == 30 and stale.authority[0].ttl == 30


def test_render_truncates_answers_with_tc_but_not_for_missing_additional() -> None:
    asked = client_query(use_edns=False)
    big = scan(upstream_reply(asked, a_records("www.example.test.", 60)))
    data = render(big, asked, big.ttls, 0, 512)
    reply = read(data)
    assert len(data) <= 512
    assert reply.flags & dns.flags.TC
    assert 0 < len(reply.answer[0]) < 60
    extra = scan(upstream_reply(asked, a_records("www.example.test.", 1),
                                additional=(a_records("other.example.test.", 60),)))
    data = render(extra, asked, extra.ttls, 0, 512)
    reply = read(data)
    assert len(data) <= 512
    assert not reply.flags & dns.flags.TC
    assert len(reply.answer[0]) == 1


@settings(max_examples=60, deadline=None)
@given(count=st.integers(min_value=0, max_value=300),
       size=st.integers(min_value=512, max_value=4096), edns=st.booleans())
def test_every_cut_is_a_valid_message_within_size(count: int, size: int, edns: bool) -> None:
    asked = client_query(use_edns=0 if edns else False)
    answers = (a_records("www.example.test.", count),) if count else ()
    scanned = scan(upstream_reply(asked, *answers))
    data = render(scanned, asked, scanned.ttls, 0, size)
    reply = read(data)
    kept = len(reply.answer[0]) if reply.answer else 0
    assert len(data) <= size
    assert bool(reply.flags & dns.flags.TC) == (kept < count)
    assert (reply.edns == 0) == edns


def test_ad_bit_only_for_clients_that_asked_for_it() -> None:
    asked = client_query(want_dnssec=True)
    scanned = scan(upstream_reply(asked, a_records("www.example.test.", 1), flags=dns.flags.AD))
    assert read(render(scanned, asked, scanned.ttls, 0, 4096)).flags & dns.flags.AD
    plain = client_query()
    assert not read(render(scanned, plain, scanned.ttls, 0, 4096)).flags & dns.flags.AD


def test_scan_reads_the_negative_ttl_from_the_soa() -> None:
    asked = client_query("nope.example.test")
    soa = dns.rrset.from_text("example.test.", 300, "IN", "SOA",
                              "ns.example.test. admin.example.test. 1 2 3 4 60")
    scanned = scan(upstream_reply(asked, authority=(soa,), rcode=dns.rcode.NXDOMAIN))
    assert scanned.rcode == wire.NXDOMAIN
    assert scanned.negative_ttl == 60
    assert scanned.authority_count == 1 and scanned.additional_count == 0


def test_scan_declines_an_opt_that_is_not_last_and_scan_any_repairs_it() -> None:
    asked = client_query(use_edns=0)
    base = upstream_reply(asked, a_records("www.example.test.", 1))
    opt = base[-11:]  # dnspython puts our 11-byte OPT record last
    assert opt[:3] == b"\x00\x00\x29"
    extra = wire.rr_named(wire.encode_name("x.example.test"), wire.TYPE_A, 300,
                          bytes([192, 0, 2, 9]))
    header = base[:10] + struct.pack("!H", 2)
    reordered = header + base[12:-11] + opt + extra
    with pytest.raises(BadReply):
        scan(reordered)
    repaired = scan_any(reordered)
    assert repaired.additional_count == 1
    reply = read(render(repaired, asked, repaired.ttls, 0, 4096))
    assert [str(r) for r in reply.additional[0]] == ["192.0.2.9"]
    assert reply.edns == 0


def test_scan_rejects_pointers_into_the_header() -> None:
    asked = client_query()
    good = upstream_reply(asked, a_records("www.example.test.", 1))
    body_at = wire.HEADER.size + len(asked.question)
    # The answer's owner is a pointer to the question (c0 0c); aim it at the header instead.
    assert good[body_at : body_at + 2] == b"\xc0\x0c"
    bad = good[:body_at] + b"\xc0\x02" + good[body_at + 2 :]
    with pytest.raises(BadReply):
        scan(bad)


def test_reply_question_accepts_only_replies_with_one_question() -> None:
    asked = client_query()
    good = upstream_reply(asked, a_records("www.example.test.", 1))
    assert reply_question(good) == asked.question
    not_a_reply = bytes([good[0], good[1], good[2] & 0x7F]) + good[3:]
    assert reply_question(not_a_reply) is None
    two = good[:4] + struct.pack("!H", 2) + good[6:]
    assert reply_question(two) is None
    assert reply_question(b"\x00" * 11) is None
    assert same_question(asked.question, client_query("WWW.example.TEST").question)
    assert not same_question(asked.question, client_query(rdtype="AAAA").question)


def test_scan_scrubs_answers_outside_the_question_chain() -> None:
    query = client_query("www.example.test")
    data = upstream_reply(
        query,
        dns.rrset.from_text("victim.other.", 300, "IN", "A", "6.6.6.6"),
        dns.rrset.from_text("WWW.example.test.", 300, "IN", "CNAME", "cdn.example.net."),
        dns.rrset.from_text("cdn.example.net.", 300, "IN", "A", "192.0.2.7"),
        dns.rrset.from_text("cdn.example.net.", 300, "IN", "TXT", "kept: same owner"),
        dns.rrset.from_text("elsewhere.example.net.", 300, "IN", "CNAME", "victim.other."),
        authority=(dns.rrset.from_text("example.test.", 300, "IN", "NS", "ns.example.test."),))
    reply = read(render(scan(data), query, scan(data).ttls, 0, 65535))
    assert {(r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype)) for r in reply.answer} == {
        ("www.example.test.", "CNAME"), ("cdn.example.net.", "A"), ("cdn.example.net.", "TXT")}
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.NS]  # not the answer section


def test_a_cname_question_does_not_follow_the_chain() -> None:
    query = client_query("www.example.test", "CNAME")
    data = upstream_reply(
        query, dns.rrset.from_text("www.example.test.", 300, "IN", "CNAME", "cdn.example.net."),
        dns.rrset.from_text("cdn.example.net.", 300, "IN", "A", "192.0.2.7"))
    reply = read(render(scan(data), query, scan(data).ttls, 0, 65535))
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.CNAME]
