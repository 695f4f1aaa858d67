"""Forwarding through the real daemon to a real upstream: Debian's dnsmasq with fixed records."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import ask, dig
from tests.support.upstream import Dnsmasq, dnsmasq

RECORDS = (
    "--local-ttl=300",
    "--host-record=ext.test,198.51.100.7,2001:db8::7",
    "--host-record=countdown.test,198.51.100.8",
    "--host-record=survivor.test,198.51.100.9",
    "--txt-record=txt.test,hello world,second string",
    "--mx-host=mx.test,mail.test,10",
    "--address=/nx.test/",
)
# An authoritative zone: its negative answers carry the SOA that RFC 2308 caching needs.
AUTH_ZONE = (
    "--auth-server=ns.auth.test,127.0.0.1",
    "--auth-zone=auth.test",
    "--auth-soa=1,hostmaster.auth.test,1200,120,604800,60",
    "--auth-ttl=300",
    "--host-record=www.auth.test,198.51.100.20",
    "--local-ttl=300",
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Dnsmasq]:
    with dnsmasq(*RECORDS) as server:
        yield server


@pytest.fixture(scope="module")
def daemon(upstream: Dnsmasq) -> Iterator[RunningDaemon]:
    with dockdns("--upstream", upstream.address) as running:
        yield running


def queries_seen(server: Dnsmasq, qtype: str, name: str) -> int:
    """How many queries dnsmasq logged for ``name`` (--log-queries: "query[A] name from ...",
    or "auth[A] name from ..." for its authoritative zones)."""
    log = server.log()
    return log.count(f"query[{qtype}] {name} from") + log.count(f"auth[{qtype}] {name} from")


@pytest.mark.parametrize("name,rdtype", [("ext.test", "A"), ("ext.test", "AAAA"),
                                         ("txt.test", "TXT"), ("mx.test", "MX")])
def test_forwards_each_record_type_as_upstream_answers_it(
        daemon: RunningDaemon, upstream: Dnsmasq, name: str, rdtype: str) -> None:
    direct = ask(upstream.host, upstream.port, name, rdtype)
    via = ask(daemon.host, daemon.port, name, rdtype)
    assert via.rcode() == dns.rcode.NOERROR
    assert direct.answer, "dnsmasq itself must have an answer for the comparison to mean much"
    assert [set(map(str, rrset)) for rrset in via.answer] == \
        [set(map(str, rrset)) for rrset in direct.answer]
    assert via.flags & dns.flags.RA


def test_dig_sees_the_same_records(daemon: RunningDaemon) -> None:
    out = dig(f"@{daemon.host}", "-p", str(daemon.port), "+short", "txt.test", "TXT")
    assert out.strip() == '"hello world" "second string"'
    out = dig(f"@{daemon.host}", "-p", str(daemon.port), "+short", "mx.test", "MX")
    assert out.strip() == "10 mail.test."


def test_question_case_and_id_are_the_clients(daemon: RunningDaemon) -> None:
    # The second query is answered from the cache, so its reply is built from the first one's.
    ask(daemon.host, daemon.port, "ext.test", "A")
    reply = ask(daemon.host, daemon.port, "eXt.TeSt", "A")
    assert reply.question[0].name.to_text() == "eXt.TeSt."
    assert {str(r) for r in reply.answer[0]} == {"198.51.100.7"}


def test_no_opt_record_for_a_client_without_edns(daemon: RunningDaemon) -> None:
    plain = ask(daemon.host, daemon.port, "ext.test", "AAAA", use_edns=False)
    assert plain.edns < 0
    assert {str(r) for r in plain.answer[0]} == {"2001:db8::7"}
    edns = ask(daemon.host, daemon.port, "ext.test", "AAAA", use_edns=0, payload=1232)
    assert edns.edns == 0


def test_nxdomain_is_passed_through(daemon: RunningDaemon) -> None:
    reply = ask(daemon.host, daemon.port, "host.nx.test", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer


def test_ttl_counts_down_in_the_cache(daemon: RunningDaemon, upstream: Dnsmasq) -> None:
    first = ask(daemon.host, daemon.port, "countdown.test", "A")
    time.sleep(2.2)
    second = ask(daemon.host, daemon.port, "countdown.test", "A")
    # dnsmasq answers every query with TTL 300: only our cache counts down.
    assert first.answer[0].ttl <= 300
    assert second.answer[0].ttl <= first.answer[0].ttl - 2
    assert queries_seen(upstream, "A", "countdown.test") == 1


def test_tcp_client_gets_the_forwarded_answer(daemon: RunningDaemon) -> None:
    reply = ask(daemon.host, daemon.port, "ext.test", "A", tcp=True)
    assert {str(r) for r in reply.answer[0]} == {"198.51.100.7"}


def test_cached_answers_survive_the_upstream() -> None:
    with contextlib.ExitStack() as upstream_life:
        server = upstream_life.enter_context(dnsmasq(*RECORDS))
        with dockdns("--upstream", server.address) as daemon:
            before = ask(daemon.host, daemon.port, "survivor.test", "A")
            upstream_life.close()  # dnsmasq is gone from here on
            after = ask(daemon.host, daemon.port, "survivor.test", "A")
    assert {str(r) for r in before.answer[0]} == {"198.51.100.9"}
    # The entry is still fresh (TTL 300), so the answer comes from the cache.
    assert after.rcode() == dns.rcode.NOERROR
    assert {str(r) for r in after.answer[0]} == {"198.51.100.9"}


def test_negative_answers_are_cached_with_their_soa() -> None:
    with dnsmasq(*AUTH_ZONE) as auth, dockdns("--upstream", auth.address) as daemon:
        nx = ask(daemon.host, daemon.port, "nope.auth.test", "A")
        nodata = ask(daemon.host, daemon.port, "www.auth.test", "AAAA")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        assert nx.authority[0].rdtype == dns.rdatatype.SOA
        again_nx = ask(daemon.host, daemon.port, "nope.auth.test", "A")
        again_nodata = ask(daemon.host, daemon.port, "www.auth.test", "AAAA")
        assert again_nx.rcode() == dns.rcode.NXDOMAIN
        assert again_nx.authority[0].rdtype == dns.rdatatype.SOA
        assert again_nodata.rcode() == dns.rcode.NOERROR and not again_nodata.answer
        assert queries_seen(auth, "A", "nope.auth.test") == 1
        assert queries_seen(auth, "AAAA", "www.auth.test") == 1
