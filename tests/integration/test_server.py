"""The real daemon over real loopback sockets: UDP and TCP, dig and dnspython as clients."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import pytest

from tests.support.daemon import RunningDaemon, dockdns
from tests.support.net import addresses, ask, dig, udp_exchange

MANY = 60  # more A records than fit in 512 bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    hosts = tmp_path_factory.mktemp("hosts") / "hosts"
    lines = ["10.1.2.3 web1 Web-Alias", "10.1.2.4 multi", "10.1.2.5 multi", "fd00::7 multi"]
    lines += [f"10.9.0.{i} big" for i in range(1, MANY + 1)]
    hosts.write_text("\n".join(lines) + "\n")
    with dockdns("--hosts-file", str(hosts)) as running:
        yield running


@pytest.fixture(scope="module")
def server6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    hosts = tmp_path_factory.mktemp("hosts6") / "hosts"
    hosts.write_text("10.1.2.3 web1\nfd00::3 web1\n")
    with dockdns("--hosts-file", str(hosts), host="::1") as running:
        yield running


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_record_with_docker_semantics(server: RunningDaemon, tcp: bool) -> None:
    reply = ask(server.host, server.port, "WeB1", tcp=tcp)
    assert addresses(reply) == {"10.1.2.3"}
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.RA and not reply.flags & dns.flags.AA
    assert reply.question[0].name.to_text() == "WeB1."
    assert reply.answer[0].name.to_text() == "WeB1." and reply.answer[0].ttl == 600


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_aaaa_ptr_mx_and_unknown(server: RunningDaemon, tcp: bool) -> None:
    assert addresses(ask(server.host, server.port, "multi", "AAAA", tcp=tcp)) == {"fd00::7"}
    empty = ask(server.host, server.port, "web1", "AAAA", tcp=tcp)
    assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
    mx = ask(server.host, server.port, "web-alias", "MX", tcp=tcp)
    assert mx.rcode() == dns.rcode.NOERROR and not mx.answer
    ptr = ask(server.host, server.port, "3.2.1.10.in-addr.arpa", "PTR", tcp=tcp)
    assert [rd.to_text() for rd in ptr.answer[0]] == ["web1."]
    # Not in the registry and no upstream configured: SERVFAIL, never a hang.
    unknown = ask(server.host, server.port, "not-here.example", tcp=tcp)
    assert unknown.rcode() == dns.rcode.SERVFAIL


def test_dig_sees_the_same(server: RunningDaemon) -> None:
    out = dig(f"@{server.host}", "-p", str(server.port), "web1", "+noall", "+answer")
    assert out.split() == ["web1.", "600", "IN", "A", "10.1.2.3"]
    out = dig(f"@{server.host}", "-p", str(server.port), "web1", "+tcp", "+short")
    assert out.split() == ["10.1.2.3"]
    out = dig(f"@{server.host}", "-p", str(server.port), "-x", "10.1.2.3", "+short")
    assert out.split() == ["web1."]


def test_ipv6_listener(server6: RunningDaemon) -> None:
    assert addresses(ask("::1", server6.port, "web1", "AAAA")) == {"fd00::3"}
    assert addresses(ask("::1", server6.port, "web1", "A", tcp=True)) == {"10.1.2.3"}


def test_several_addresses_in_changing_order(server: RunningDaemon) -> None:
    orders = set()
    for _ in range(8):
        reply = ask(server.host, server.port, "multi")
        assert addresses(reply) == {"10.1.2.4", "10.1.2.5"}
        orders.add(tuple(rd.to_text() for rd in reply.answer[0]))
    assert len(orders) == 2


def test_edns_is_echoed_and_sizes_honoured(server: RunningDaemon) -> None:
    plain = ask(server.host, server.port, "web1")
    assert plain.edns == -1
    with_edns = ask(server.host, server.port, "web1", use_edns=0, payload=1232)
    assert with_edns.edns == 0 and with_edns.payload == 4096


def test_truncation_then_whole_over_tcp(server: RunningDaemon) -> None:
    small = ask(server.host, server.port, "big")
    assert small.flags & dns.flags.TC
    assert 0 < len(addresses(small)) < MANY
    roomy = ask(server.host, server.port, "big", use_edns=0, payload=4096)
    assert not roomy.flags & dns.flags.TC and len(addresses(roomy)) == MANY
    whole = ask(server.host, server.port, "big", tcp=True)
    assert not whole.flags & dns.flags.TC and len(addresses(whole)) == MANY
    # dig retries over TCP by itself when it sees TC, as stub resolvers do.
    out = dig(f"@{server.host}", "-p", str(server.port), "big", "+noedns", "+short")
    assert len(out.split()) == MANY


def header(packet: bytes) -> tuple[int, int, int, int, int, int]:
    return struct.unpack("!HHHHHH", packet[:12])  # type: ignore[return-value]


def test_error_tiers_over_udp(server: RunningDaemon) -> None:
    good = dns.message.make_query("web1", "A").to_wire()
    assert udp_exchange(server.host, server.port, b"\x01\x02\x03", timeout=0.5) is None
    response_bit = bytearray(good)
    response_bit[2] |= 0x80
    assert udp_exchange(server.host, server.port, bytes(response_bit), timeout=0.5) is None

    two_questions = bytearray(good)
    struct.pack_into("!H", two_questions, 4, 2)
    reply = udp_exchange(server.host, server.port, bytes(two_questions))
    assert reply is not None and header(reply)[1] & 0xF == dns.rcode.FORMERR
    assert header(reply)[0] == header(good)[0] and header(reply)[1] & 0x8000

    garbage = good[:12] + b"\x05abc"
    reply = udp_exchange(server.host, server.port, garbage)
    assert reply is not None and header(reply)[1] & 0xF == dns.rcode.FORMERR

    notify = dns.message.make_query("web1", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = udp_exchange(server.host, server.port, notify.to_wire())
    assert reply is not None and header(reply)[1] & 0xF == dns.rcode.NOTIMP
    parsed = dns.message.from_wire(reply)
    assert parsed.opcode() == dns.opcode.NOTIFY


def test_tcp_pipelined_queries_on_one_connection(server: RunningDaemon) -> None:
    names = ["web1", "multi", "not-here.example", "web-alias"] * 5
    queries = [dns.message.make_query(name, "A") for name in names]
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        stream = b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))
        sock.sendall(stream)
        replies = {}
        buffer = b""
        while len(replies) < len(queries):
            chunk = sock.recv(65535)
            assert chunk, "connection closed early"
            buffer += chunk
            while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                length = int.from_bytes(buffer[:2], "big")
                message = dns.message.from_wire(buffer[2 : 2 + length])
                buffer = buffer[2 + length :]
                replies[message.id] = message
    for query in queries:
        reply = replies[query.id]
        assert reply.question[0].name == query.question[0].name


def test_tcp_message_split_across_writes(server: RunningDaemon) -> None:
    wire_query = dns.message.make_query("web1", "A").to_wire()
    framed = len(wire_query).to_bytes(2, "big") + wire_query
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        for byte in framed:
            sock.sendall(bytes([byte]))
        reply = dns.query.receive_tcp(sock, expiration=time.time() + 5)[0]
    assert addresses(reply) == {"10.1.2.3"}


def test_hosts_file_changes_are_picked_up(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.1 before\n")
    with dockdns("--hosts-file", str(hosts)) as running:
        assert addresses(ask(running.host, running.port, "before")) == {"10.0.0.1"}
        hosts.write_text("10.0.0.2 after\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ask(running.host, running.port, "after").answer:
                break
            time.sleep(0.2)
        assert addresses(ask(running.host, running.port, "after")) == {"10.0.0.2"}
        assert ask(running.host, running.port, "before").rcode() == dns.rcode.SERVFAIL
