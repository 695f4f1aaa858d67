"""What an upstream or a client can smuggle in: answer records outside the question's chain,
forged and garbage replies (counted by reason), and names that would forge log lines. Over the
real daemon and the fault server of tests/support/upstream.py."""

from __future__ import annotations

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask
from tests.support.scrape import scrape, value
from tests.support.upstream import FORGED_ADDRESS, Behaviour, FaultServer


def test_answer_records_outside_the_chain_are_scrubbed() -> None:
    with FaultServer() as upstream:
        upstream.add("plain.chain.example", "A", 300, "198.51.100.10")
        upstream.behave(Behaviour(extra_answers=(("victim.other.", "A", "6.6.6.6"),)),
                        "plain.chain.example")
        with dockdns("--upstream", upstream.address) as daemon:
            for tcp in (False, False, True):  # from upstream, from the cache, over TCP
                reply = ask(daemon.host, daemon.port, "plain.chain.example", tcp=tcp)
                assert reply.rcode() == dns.rcode.NOERROR
                assert addresses(reply) == {"198.51.100.10"}
                assert {rrset.name.to_text() for rrset in reply.answer} == {
                    "plain.chain.example."}
            # Nothing about the victim was kept: asked for, it goes upstream.
            assert ask(daemon.host, daemon.port, "victim.other").rcode() == dns.rcode.REFUSED
            assert upstream.count("victim.other") == 1


def test_a_cname_chain_is_kept_and_the_intruder_dropped() -> None:
    with FaultServer() as upstream:
        upstream.behave(Behaviour(extra_answers=(
            ("victim.other.", "A", "6.6.6.6"),
            ("start.chain.example.", "CNAME", "middle.chain.example."),
            ("other.victim.", "CNAME", "start.chain.example."),
            ("middle.chain.example.", "CNAME", "end.chain.example."),
            ("end.chain.example.", "A", "198.51.100.9"),
        )), "start.chain.example")
        with dockdns("--upstream", upstream.address) as daemon:
            reply = ask(daemon.host, daemon.port, "start.chain.example")
    assert reply.rcode() == dns.rcode.NOERROR
    assert {(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
            for rrset in reply.answer} == {("start.chain.example.", "CNAME"),
                                           ("middle.chain.example.", "CNAME"),
                                           ("end.chain.example.", "A")}
    assert addresses(reply) == {"198.51.100.9"}


def test_rejected_upstream_replies_are_counted_by_reason() -> None:
    with FaultServer() as upstream:
        for kind in ("id", "question", "source"):
            upstream.add(f"{kind}.forged.example", "A", 300, "198.51.100.20")
            upstream.behave(Behaviour(forge=kind), f"{kind}.forged.example")
        upstream.add("garbage.forged.example", "A", 300, "198.51.100.21")
        upstream.behave(Behaviour(garbage_first=True), "garbage.forged.example")
        with dockdns("--upstream", upstream.address) as daemon:
            for kind in ("id", "question", "source"):
                reply = ask(daemon.host, daemon.port, f"{kind}.forged.example")
                assert addresses(reply) == {"198.51.100.20"}, kind
                assert FORGED_ADDRESS not in reply.to_text()
            assert addresses(ask(daemon.host, daemon.port, "garbage.forged.example")) == {
                "198.51.100.21"}
            assert daemon.metrics_port is not None
            samples = scrape(daemon.metrics_port)
    metric = "dockdns_upstream_rejected_replies_total"
    assert value(samples, metric, reason="unknown_id") >= 1
    assert value(samples, metric, reason="wrong_question") >= 1
    assert value(samples, metric, reason="wrong_source") >= 1
    # 40 random bytes behind the right ID: no question that reads as ours.
    assert (value(samples, metric, reason="malformed")
            + value(samples, metric, reason="wrong_question")) >= 2


def test_names_holding_newlines_forge_no_log_line() -> None:
    evil = dns.name.Name([b"evil\nFORGED-LINE injected", b"example", b""])
    with FaultServer() as upstream:
        upstream.behave(Behaviour(rcode=dns.rcode.SERVFAIL))  # a debug line for each failure
        with dockdns("--upstream", upstream.address, "--log-queries") as daemon:
            for rdtype in ("A", "TXT"):
                query = dns.message.make_query(evil, rdtype)
                reply = dns.query.udp(query, daemon.host, port=daemon.port, timeout=5)
                assert reply.rcode() == dns.rcode.SERVFAIL
            log = daemon.log()  # each query's lines are written before its reply is sent
    lines = log.splitlines()
    assert not [line for line in lines if "FORGED-LINE" in line and "evil" not in line]
    assert not [line for line in lines if line.startswith("FORGED")]
    escaped = "evil\\010FORGED-LINE\\032injected.example"
    assert sum(escaped in line for line in lines if "query " in line) >= 2  # the query log
    assert any(escaped in line and "no usable answer" in line for line in lines)  # debug
