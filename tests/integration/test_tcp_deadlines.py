"""TCP deadlines and endings over real sockets: slowloris clients, silent clients, idle timeouts
that shrink as the pool fills, half-closed connections whose forwarded answers come after the
FIN, and a shutdown whose drain window ends with SERVFAIL for what is still waiting.

No timed assertions: every loop is bounded, and each test asserts that the daemon closed or
answered within a bound far above the setting it tests (the harness measures, the test does not
assert a latency)."""

from __future__ import annotations

import re
import signal
import socket
import struct
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.support.daemon import dockdns
from tests.support.net import addresses, recv_framed
from tests.support.upstream import Behaviour, FaultServer


def hosts_file(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("10.1.2.3 web1\n")
    return str(path)


def framed(name: str, rdtype: str = "A", qid: int | None = None) -> tuple[int, bytes]:
    query = dns.message.make_query(name, rdtype)
    if qid is not None:
        query.id = qid
    wire = query.to_wire()
    return query.id, struct.pack("!H", len(wire)) + wire


def closed(sock: socket.socket) -> bool:
    """Whether the peer has closed (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_a_slowloris_client_is_closed_though_it_keeps_sending(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-idle-timeout", "1") as server:
        _, message = framed("web1")
        with socket.create_connection((server.host, server.port)) as sock:
            sock.sendall(message[:2])  # the length, then the message a byte at a time
            sent = 2
            # Each byte comes well within the idle timeout, so only a whole-message deadline
            # can close this; 60 bytes at 0.25 s would be 15 s, the deadline is 1 s.
            for byte in message[2:] * 3:
                time.sleep(0.25)
                if closed(sock):
                    break
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += 1
            else:
                raise AssertionError("a slowloris client kept its connection")
        assert sent < len(message), "closed only after the message was whole"
        assert "did not complete its message" in server.log()


def test_a_client_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-idle-timeout", "0.5") as server:
        with socket.create_connection((server.host, server.port)) as sock:
            sock.settimeout(20)
            assert sock.recv(1) == b""


def test_idle_timeouts_shrink_as_the_pool_fills(tmp_path: Path) -> None:
    # A 60 s idle timeout; with the pool full an idle connection gets a tenth of it. The loop
    # below gives up after 30 s: only the shrunk timeout can free a slot within it. (Once some
    # slots are free again, the others get their longer timeout back.)
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-max", "4",
                 "--tcp-idle-timeout", "60") as server:
        held = [socket.create_connection((server.host, server.port)) for _ in range(4)]
        try:
            for sock in held:
                qid, message = framed("web1")
                sock.sendall(message)
                assert dns.message.from_wire(recv_framed(sock)).id == qid
            for _ in range(300):
                if any(closed(sock) for sock in held):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("idle connections kept a full pool's slots")
            with socket.create_connection((server.host, server.port), timeout=5) as fresh:
                qid, message = framed("web1")
                fresh.sendall(message)
                reply = dns.message.from_wire(recv_framed(fresh))
                assert reply.id == qid and addresses(reply) == {"10.1.2.3"}
        finally:
            for sock in held:
                sock.close()


def test_half_close_gets_every_answer_forwarded_ones_included(tmp_path: Path) -> None:
    with FaultServer() as upstream:
        upstream.add("slow.example", "A", 300, "198.51.100.30")
        upstream.add("slower.example", "A", 300, "198.51.100.31")
        upstream.behave(Behaviour(delay=0.4), "slow.example")
        upstream.behave(Behaviour(delay=0.8), "slower.example")
        with dockdns("--hosts-file", hosts_file(tmp_path), "--upstream",
                     upstream.address) as server:
            for _ in range(5):  # as the probe: 5 of 5
                asked = [framed(name) for name in ("slow.example", "web1", "slower.example")]
                with socket.create_connection((server.host, server.port), timeout=10) as sock:
                    sock.sendall(b"".join(message for _, message in asked))
                    sock.shutdown(socket.SHUT_WR)
                    replies = {}
                    for _ in asked:
                        reply = dns.message.from_wire(recv_framed(sock))
                        replies[reply.id] = addresses(reply)
                    assert sock.recv(1) == b"", "closed once everything was answered"
                assert replies == {asked[0][0]: {"198.51.100.30"}, asked[1][0]: {"10.1.2.3"},
                                   asked[2][0]: {"198.51.100.31"}}
                upstream.queries.clear()


def test_queries_still_waiting_at_the_end_of_the_drain_get_servfail() -> None:
    with FaultServer() as upstream:
        upstream.add("stuck.example", "A", 300, "198.51.100.40")
        upstream.behave(Behaviour(delay=30), "stuck.example")
        with dockdns("--upstream", upstream.address, "--drain-timeout", "0.5",
                     "--upstream-timeout", "10", "--log-level", "info") as server:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.create_connection((server.host, server.port), timeout=10)
            try:
                udp_id, message = framed("stuck.example")
                udp.settimeout(10)
                udp.sendto(message[2:], (server.host, server.port))
                tcp_id, message = framed("stuck.example")
                tcp.sendall(message)
                for _ in range(200):  # both questions reached the upstream: they are in flight
                    if upstream.count("stuck.example") >= 2:
                        break
                    time.sleep(0.05)
                server.signal(signal.SIGTERM)
                udp_reply = dns.message.from_wire(udp.recv(65535))
                tcp_reply = dns.message.from_wire(recv_framed(tcp))
            finally:
                udp.close()
                tcp.close()
            assert server.process.wait(timeout=20) == 0
            log = server.log()
    assert (udp_reply.id, udp_reply.rcode()) == (udp_id, dns.rcode.SERVFAIL)
    assert (tcp_reply.id, tcp_reply.rcode()) == (tcp_id, dns.rcode.SERVFAIL)
    assert re.search(r"drained in-flight queries: 2 cancelled after 0\.5 s", log), log
