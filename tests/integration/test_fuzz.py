"""Random and mutated packets: the server drops them or answers a well-formed reply with the right
rcode, and keeps answering afterwards. In-process through the handler (many examples, fast) and
over real sockets against the daemon (thousands of packets)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import addresses, ask

# A bigger budget outside CI: DOCKDNS_FUZZ_EXAMPLES=100000 pytest tests/integration/test_fuzz.py
EXAMPLES = int(os.environ.get("DOCKDNS_FUZZ_EXAMPLES", "1500"))

SEEDS = [
    dns.message.make_query("web1", "A").to_wire(),
    dns.message.make_query("Web1.Net", "AAAA", use_edns=0, payload=1232).to_wire(),
    dns.message.make_query("3.2.1.10.in-addr.arpa", "PTR", want_dnssec=True).to_wire(),
    dns.message.make_query("_80._tcp.web1", "SRV").to_wire(),
    dns.message.make_query("elsewhere.example", "MX").to_wire(),
]


def make_handler() -> QueryHandler:
    registry = Registry()
    registry.update("test", SourcePart(records=(
        Record(names=("web1", "web1.net"), ipv4=("10.1.2.3",), ptr="web1", srv=(("tcp", 80),)),
    )))
    return QueryHandler(registry, AnswerSettings())


HANDLER = make_handler()


def expected_rcode(packet: bytes) -> int | None:
    """What the reference parser (dnspython) makes of the packet: None = must be dropped."""
    if len(packet) < 12 or packet[2] & 0x80:
        return None
    try:
        # Only the header and question decide the rcode for sure: dnspython also validates the
        # rdata of extra records, which a server need not (and dockdns does not) look into.
        dns.message.from_wire(packet, question_only=True)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return -1  # the question does not parse: we must answer FORMERR (or NOTIMP)
    return -2  # any rcode of ours is acceptable, the reply must be well formed


def check(packet: bytes) -> None:
    reply = asyncio.run(HANDLER.answer(packet, "127.0.0.1", False))
    expected = expected_rcode(packet)
    if expected is None:
        assert reply is None
        return
    assert reply is not None, "a query with a header must get an answer"
    assert reply[:2] == packet[:2], "the reply carries the query's ID"
    assert reply[2] & 0x80, "QR set"
    opcode = (packet[2] >> 3) & 0xF
    if opcode != 0:
        # dnspython reads UPDATE replies with zone rules, so check the header bits instead.
        assert reply[3] & 0xF == dns.rcode.NOTIMP and (reply[2] >> 3) & 0xF == opcode
        return
    parsed = dns.message.from_wire(reply)
    if expected == -1:
        assert parsed.rcode() in (dns.rcode.FORMERR, dns.rcode.BADVERS)
    assert len(reply) <= 65535
    assert HANDLER.stats.internal_errors == 0


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        if action == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 1:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif action == 2 and data:
            del data[rng.randrange(len(data))]
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(packet: bytes) -> None:
    check(packet)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_mutated_queries(seed: bytes, rng: random.Random) -> None:
    check(mutate(seed, rng))


@settings(max_examples=EXAMPLES // 3, deadline=None)
@given(st.sampled_from(SEEDS), st.binary(min_size=2, max_size=2), st.integers(0, 0xFFFF))
def test_header_fields(seed: bytes, qid: bytes, flags: int) -> None:
    check(qid + flags.to_bytes(2, "big") + seed[4:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    hosts: Path = tmp_path_factory.mktemp("fuzz") / "hosts"
    hosts.write_text("10.1.2.3 web1\n")
    with dockdns("--hosts-file", str(hosts)) as running:
        yield running


def test_thousands_of_garbage_packets_over_sockets(server: RunningDaemon) -> None:
    rng = random.Random(20261128)
    packets = [mutate(rng.choice(SEEDS), rng) for _ in range(3000)]
    packets += [rng.randbytes(rng.randrange(0, 80)) for _ in range(2000)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, packet in enumerate(packets):
            sock.sendto(packet, (server.host, server.port))
            if index % 200 == 0:  # bounded bursts: stay within the socket buffer
                assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
    with socket.create_connection((server.host, server.port), timeout=5) as tcp:
        for packet in packets[:300]:
            tcp.sendall(len(packet).to_bytes(2, "big") + packet)
    assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
    assert addresses(ask(server.host, server.port, "web1", tcp=True)) == {"10.1.2.3"}
    assert server.process.poll() is None
    assert "Traceback" not in server.log()
