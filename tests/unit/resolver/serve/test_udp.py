"""The daemon's UDP listener in-process on real sockets: memo hits answered inline with the same
bytes as the full path, replies queued while the send buffer is full, and rate limiting on both
paths for a client with a real non-loopback address. Each runs over both ways of reading the
socket: batched (recvmmsg/sendmmsg) and one datagram at a time (recvfrom/sendto)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import dns.message
import pytest

from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config
from resolver.config.slices import forward_settings
from resolver.dns.addresses import HostPort
from resolver.forward.forwarder import UpstreamForwarder
from resolver.serve import udp as udp_socket
from resolver.serve.ratelimit import RateLimiter
from resolver.serve.settings import DEFAULT_UDP_BUFFER
from resolver.serve.sockets import bind_udp
from resolver.serve.udp import SocketSender, UDPSocketListener
from tests.support.net import free_port
from tests.support.netns import namespace
from tests.support.upstream import FaultServer


def make_handler(allow: str | None = None) -> QueryHandler:
    registry = Registry()
    registry.update("hosts", SourcePart(records=(
        Record(names=("web1",), ipv4=("10.1.2.3",), ptr="web1"),
        Record(names=("multi",), ipv4=("10.1.2.4",)),
        Record(names=("multi",), ipv4=("10.1.2.5",)),
    )))
    allowed = (ipaddress.ip_network(allow),) if allow else ()
    return QueryHandler(registry, AnswerSettings(allow=allowed))


def query(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()


BATCHED = [pytest.param(True, id="batched"), pytest.param(False, id="one-by-one")]


def run_with_listener(handler: QueryHandler, host: str,
                      body: Callable[[UDPSocketListener, int], Awaitable[None]],
                      limiter: RateLimiter | None = None, batched: bool = True) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = UDPSocketListener(handler, bind_udp(HostPort(host, 0)), loop, limiter,
                                     batched=batched)
        # The batched path is what the daemon runs wherever libc has recvmmsg: it must be
        # the one under test here (this is Linux with glibc).
        assert (listener.batch is not None) == batched
        try:
            await body(listener, listener.sock.getsockname()[1])
        finally:
            listener.close()
    asyncio.run(main())


async def exchange(port: int, packet: bytes, timeout: float = 2.0) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setblocking(False)
        client.connect(("127.0.0.1", port))
        await loop.sock_sendall(client, packet)
        return await asyncio.wait_for(loop.sock_recv(client, 65535), timeout)


@pytest.mark.parametrize("batched", BATCHED)
def test_memo_hits_are_answered_inline_with_the_full_paths_bytes(batched: bool) -> None:
    handler = make_handler()

    def full_path_answers() -> int:  # every answer that was not a memo hit
        return sum(handler.stats.totals().values()) - handler.stats.memo_hits()

    async def body(listener: UDPSocketListener, port: int) -> None:
        first = await exchange(port, query("WeB1", 0x1111))
        second = await exchange(port, query("WeB1", 0x2222))
        assert first[:2] == b"\x11\x11" and second[:2] == b"\x22\x22"
        assert first[2:] == second[2:]
        assert full_path_answers() == 1  # the second came from the memo, inline
        answer = dns.message.from_wire(second)
        assert answer.question[0].name.to_text() == "WeB1."
        assert [rd.to_text() for rd in answer.answer[0]] == ["10.1.2.3"]
        # Several addresses: the prebuilt orders are cycled through on the inline path too.
        leaders = set()
        for qid in range(40):
            reply = dns.message.from_wire(await exchange(port, query("multi", qid)))
            assert reply.id == qid
            assert sorted(rd.to_text() for rd in reply.answer[0]) == ["10.1.2.4", "10.1.2.5"]
            leaders.add(reply.answer[0][0].to_text())
        assert leaders == {"10.1.2.4", "10.1.2.5"}
        assert full_path_answers() == 2

    run_with_listener(handler, "127.0.0.1", body, batched=batched)
    # Full-path answers and memo hits together (memo hits count in slots of their own).
    assert handler.stats.totals()[(1, 0, "local")] == 42
    assert handler.stats.memo_hits() == 40


class FullBuffer:
    """A real socket whose first ``refusals`` sends fail as a full send buffer would (EAGAIN):
    that state cannot be produced on loopback, where a datagram is delivered during sendto."""

    def __init__(self, sock: socket.socket, refusals: int) -> None:
        self.sock = sock
        self.refusals = refusals

    def fileno(self) -> int:
        return self.sock.fileno()

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.refusals > 0:
            self.refusals -= 1
            raise BlockingIOError()
        return self.sock.sendto(data, addr)


def test_replies_wait_for_room_in_the_send_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp_socket, "MAX_BACKLOG", 5)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            server.bind(("127.0.0.1", 0))
            server.setblocking(False)
            client.bind(("127.0.0.1", 0))
            client.settimeout(2)
            sender = SocketSender(server, loop)
            # Refused 9 times: 5 replies queued, 2 dropped past the cap, and the first two
            # attempts to flush the queue refused too, so it waits for the next writable event.
            sender.sock = FullBuffer(server, refusals=9)  # type: ignore[assignment]
            for number in range(7):
                sender.sendto(struct.pack("!H", number), client.getsockname())
            assert len(sender.backlog) == 5
            for _ in range(50):
                if not sender.backlog:
                    break
                await asyncio.sleep(0.01)
            assert not sender.backlog
            got = sorted(struct.unpack("!H", client.recv(16))[0] for _ in range(5))
            assert got == [0, 1, 2, 3, 4]
            sender.close()

    asyncio.run(main())


CLIENT = r"""
import socket, struct, sys
port = int(sys.argv[1]); host = sys.argv[2]
for qid in range(6):
    packet = bytes.fromhex(sys.argv[3])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(struct.pack("!H", qid) + packet[2:], (host, port))
        try:
            reply = s.recv(65535)
        except TimeoutError:
            print("none"); continue
        print("tc" if reply[2] & 0x02 else "answer")
"""


@pytest.mark.parametrize("batched", BATCHED)
def test_rate_limit_applies_to_memo_hits_too(batched: bool) -> None:
    with namespace(subnet_octet=46) as ns:
        handler = make_handler(allow=f"{ns.address}/32")
        limiter = RateLimiter(rate=0.001, burst=2, slip=2)

        async def body(listener: UDPSocketListener, port: int) -> None:
            process = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, sys.executable, "-c", CLIENT, str(port),
                ns.host_address, query("web1", 0).hex(), stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(process.communicate(), 30)
            # Two within the burst (the second from the memo), then dropped and slipped
            # (an empty TC=1 reply) in turn, whichever path the query would have taken.
            assert out.decode().split() == ["answer", "answer", "none", "tc", "none", "tc"]

        run_with_listener(handler, ns.host_address, body, limiter, batched=batched)
        assert limiter.limited == 4


@pytest.mark.parametrize("batched", BATCHED)
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_burst_read_in_one_go_answers_every_client_its_own_query(batched: bool,
                                                                   host: str) -> None:
    """Many clients' queries wait in the socket before the listener reads: memo hits, misses and
    a datagram too long to be a query, mixed. Every client gets exactly its own answers, the long
    datagram none."""
    handler = make_handler()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    names = ["web1", "multi", "nothing-here", "WEB1"]

    async def body(listener: UDPSocketListener, port: int) -> None:
        loop = asyncio.get_running_loop()
        clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(12)]

        async def receive(client: socket.socket) -> bytes:
            # Awaited, never blocking: the listener runs on this same loop.
            return await asyncio.wait_for(loop.sock_recv(client, 65535), 5)

        try:
            for client in clients:
                client.setblocking(False)
            # The first query of each name takes the full path; the burst then mixes memo
            # hits with the full path's misses.
            for name in names:
                clients[0].sendto(query(name, 7), (host, port))
                assert (await receive(clients[0]))[:2] == b"\x00\x07"
            oversized = query("web1", 99) + bytes(udp_socket.MAX_QUERY_SIZE)
            clients[1].sendto(oversized, (host, port))
            sent: dict[int, list[tuple[int, str]]] = {}
            for index, client in enumerate(clients):
                for round_ in range(8):  # 96 queries: more than one batch
                    qid = index * 100 + round_
                    name = names[(index + round_) % len(names)] if round_ < 6 else "fresh" \
                        + str(qid)
                    client.sendto(query(name, qid), (host, port))
                    sent.setdefault(index, []).append((qid, name))
            # Only now does the listener run, and find the whole burst waiting.
            for index, client in enumerate(clients):
                got = {}
                for _ in sent[index]:
                    reply = dns.message.from_wire(await receive(client))
                    got[reply.id] = reply
                assert sorted(got) == sorted(qid for qid, _ in sent[index])
                for qid, name in sent[index]:
                    reply = got[qid]
                    assert reply.question[0].name.to_text() == name + "."
                    expected = {"web1": {"10.1.2.3"}, "WEB1": {"10.1.2.3"},
                                "multi": {"10.1.2.4", "10.1.2.5"}}.get(name, set())
                    found = {rd.to_text() for rrset in reply.answer for rd in rrset}
                    assert found == expected, (name, reply)
            with pytest.raises(BlockingIOError):  # nothing for the long datagram
                clients[1].recv(65535)
        finally:
            for client in clients:
                client.close()

    run_with_listener(handler, host, body, batched=batched)
    assert handler.stats.dropped == 1
    assert handler.stats.memo_hits() > 0


class RefusingSends:
    """libc's sendmmsg, but for its first ``refusals`` calls, which find the send buffer full
    (they send nothing, as for EAGAIN): that state cannot be produced on loopback, where a
    datagram is delivered during the call (tests/integration/test_udp_buffers.py makes it for
    real in a namespace)."""

    def __init__(self, sendmmsg: Callable[[int, Any, int, int], int], refusals: int) -> None:
        self.sendmmsg = sendmmsg
        self.refusals = refusals
        self.refused: list[int] = []  # how many datagrams each refused call was given

    def __call__(self, fd: int, messages: Any, count: int, flags: int) -> int:
        if self.refusals > 0:
            self.refusals -= 1
            self.refused.append(count)
            return 0
        return self.sendmmsg(fd, messages, count, flags)


def test_batched_replies_wait_for_room_in_the_send_buffer() -> None:
    handler = make_handler()

    async def body(listener: UDPSocketListener, port: int) -> None:
        assert listener.batch is not None
        await exchange(port, query("web1", 1))  # now in the memo
        refusing = RefusingSends(listener.batch._sendmmsg, 1)
        listener.batch._sendmmsg = refusing
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            client.connect(("127.0.0.1", port))
            for qid in range(2, 6):
                client.send(query("web1", qid))
            replies = [await asyncio.wait_for(loop.sock_recv(client, 65535), 3)
                       for _ in range(4)]
        assert sorted(struct.unpack("!H", reply[:2])[0] for reply in replies) == [2, 3, 4, 5]
        assert all(reply[2:] == replies[0][2:] for reply in replies)
        assert refusing.refusals == 0  # the full buffer was met, and the queue sent them
        assert not listener.sender.backlog

    run_with_listener(handler, "127.0.0.1", body)


def test_one_wake_up_reads_on_while_batches_come_back_full() -> None:
    """300 memo hits waiting: one wake-up answers BATCHES_PER_WAKEUP full batches (256) in place,
    and the next the rest."""
    handler = make_handler()
    slots = udp_socket.mmsg.SLOTS
    per_wakeup = udp_socket.BATCHES_PER_WAKEUP * slots
    waiting = per_wakeup + 44

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = UDPSocketListener(handler, bind_udp(HostPort("127.0.0.1", 0),
                                                       buffer=DEFAULT_UDP_BUFFER), loop)
        assert listener.batch is not None
        port = listener.sock.getsockname()[1]
        try:
            await exchange(port, query("web1", 1))  # now in the memo
            listener.stop_reading()  # the test wakes it, not the loop
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                client.connect(("127.0.0.1", port))
                client.setblocking(False)
                for qid in range(waiting):  # on loopback: in the listener's queue at once
                    client.send(query("web1", qid))

                def answered() -> list[int]:
                    got = []
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            got.append(struct.unpack("!H", client.recv(65535)[:2])[0])
                    return got

                listener._read_batch()
                assert answered() == list(range(per_wakeup))  # in order, every one
                listener._read_batch()
                assert answered() == list(range(per_wakeup, waiting))
        finally:
            listener.close()

    asyncio.run(main())


@pytest.mark.parametrize("refusals", [0, 1], ids=["room", "send-buffer-full"])
def test_forwarded_replies_go_out_together_and_wait_for_room_when_the_buffer_is_full(
        refusals: int) -> None:
    """Twenty clients' misses at once through the real forwarder: their replies, settling in
    the upstream's callbacks, are collected and sent with sendmmsg; one that finds the send
    buffer full (as loopback cannot make it) leaves them to the sender's queue, and each client
    still gets its own answer."""
    zone = "together.test"
    with FaultServer(zone=zone) as upstream:
        for index in range(20):
            upstream.add(f"c{index}.{zone}", "A", 60, f"198.51.100.{index + 1}")
        config = Config(listen=(HostPort("127.0.0.1", free_port()),), resolv_conf="/dev/null",
                        upstreams=(HostPort(upstream.host, upstream.port),),
                        special_names=False)

        async def scenario() -> tuple[list[str], int]:
            loop = asyncio.get_running_loop()
            forwarder = UpstreamForwarder(forward_settings(config))
            forwarder.start()
            handler = QueryHandler(Registry(), AnswerSettings(), forwarder=forwarder)
            listener = UDPSocketListener(handler, bind_udp(HostPort("127.0.0.1", 0)), loop)
            assert listener.outbox is not None
            refusing = RefusingSends(listener.outbox._sendmmsg, refusals)
            listener.outbox._sendmmsg = refusing
            port = listener.sock.getsockname()[1]
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(20)]
            try:
                for index, client in enumerate(clients):
                    client.setblocking(False)
                    client.connect(("127.0.0.1", port))
                    client.send(query_for(f"c{index}.{zone}", index))
                replies = [await asyncio.wait_for(loop.sock_recv(client, 65535), 5)
                           for client in clients]
                answers = [str(dns.message.from_wire(reply).answer[0][0]) for reply in replies]
                return answers, len(refusing.refused)
            finally:
                for client in clients:
                    client.close()
                listener.close()
                await forwarder.close()

        answers, refused = asyncio.run(scenario())
    assert answers == [f"198.51.100.{index + 1}" for index in range(20)]
    assert refused == refusals


def query_for(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()
