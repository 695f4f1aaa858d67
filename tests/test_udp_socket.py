"""The daemon's UDP listener in-process on real sockets: memo hits answered inline with the same
bytes as the full path, replies queued while the send buffer is full, and rate limiting on both
paths for a client with a real non-loopback address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import dns.message
import pytest

from discovery.model import Record, SourcePart
from discovery.registry import Registry
from resolver import udp_socket
from resolver.config import HostPort
from resolver.handler import AnswerSettings, QueryHandler
from resolver.ratelimit import RateLimiter
from resolver.sockets import bind_udp
from resolver.udp_socket import SocketSender, UDPSocketListener
from tests.support.netns import namespace


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


def run_with_listener(handler: QueryHandler, host: str,
                      body: Callable[[UDPSocketListener, int], Awaitable[None]],
                      limiter: RateLimiter | None = None) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = UDPSocketListener(handler, bind_udp(HostPort(host, 0)), loop, limiter)
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


def test_memo_hits_are_answered_inline_with_the_full_paths_bytes() -> None:
    handler = make_handler()
    full_path: list[bytes] = []

    async def body(listener: UDPSocketListener, port: int) -> None:
        original = listener._full_path

        def spy(data: bytes, addr: Any) -> None:
            full_path.append(data)
            original(data, addr)

        listener._full_path = spy  # type: ignore[method-assign]
        first = await exchange(port, query("WeB1", 0x1111))
        second = await exchange(port, query("WeB1", 0x2222))
        assert first[:2] == b"\x11\x11" and second[:2] == b"\x22\x22"
        assert first[2:] == second[2:]
        assert len(full_path) == 1  # the second came from the memo, inline
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
        assert len(full_path) == 2

    run_with_listener(handler, "127.0.0.1", body)
    # Full-path answers and memo hits together (memo hits count in slots of their own).
    assert handler.stats.totals()[(1, 0, "local")] == 42


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


def test_rate_limit_applies_to_memo_hits_too() -> None:
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

        run_with_listener(handler, ns.host_address, body, limiter)
        assert limiter.limited == 4
