"""The tables that grow with what clients send, each driven past its cap over real loopback
sockets: the daemon's UDP listener, handler and forwarder run in this process so that the test
can lower a cap (a flood of 100,000 addresses or names is not needed to show that the cap holds)
and look at the table itself after every query. The caps' own values are the code's.

Caps: the memo's entries (memo.MEMO_LIMIT) and bytes (memo.MEMO_BYTES), the client->view
table (views.CLIENT_LIMIT), the rate limiter's client table (ratelimit.MAX_CLIENTS), the UDP
queries waiting on the full path (udp.MAX_PENDING), and the query counters' labels (stats:
unknown question types and rcodes share one label).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Iterator

import dns.message
import dns.rcode
import pytest

from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry
from resolver.answer import memo, views
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config
from resolver.config.slices import forward_settings
from resolver.dns.addresses import HostPort
from resolver.forward import forwarder as forwarder_module
from resolver.forward.forwarder import UpstreamForwarder
from resolver.ops.stats import OTHER_QTYPE
from resolver.serve import ratelimit
from resolver.serve import udp as udp_socket
from resolver.serve.ratelimit import RateLimiter
from resolver.serve.sockets import bind_udp
from resolver.serve.udp import UDPSocketListener

Body = Callable[[UDPSocketListener, int], Awaitable[None]]


def registry_with(records: list[Record]) -> Registry:
    registry = Registry()
    registry.update("hosts", SourcePart(records=tuple(records)))
    return registry


def run(handler: QueryHandler, body: Body, limiter: RateLimiter | None = None) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = UDPSocketListener(handler, bind_udp(HostPort("127.0.0.1", 0)), loop, limiter)
        try:
            await body(listener, listener.sock.getsockname()[1])
        finally:
            listener.close()
    asyncio.run(main())


def query(name: str, qid: int = 7, rdtype: str | int = "A") -> bytes:
    message = dns.message.make_query(name, rdtype, use_edns=False)
    message.id = qid
    return message.to_wire()


async def exchange(port: int, packet: bytes, source: str = "127.0.0.1") -> dns.message.Message:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setblocking(False)
        client.bind((source, 0))
        client.connect(("127.0.0.1", port))
        await loop.sock_sendall(client, packet)
        data = await asyncio.wait_for(loop.sock_recv(client, 65535), 5)
    return dns.message.from_wire(data)


def a_records(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def test_the_memo_starts_again_at_its_entry_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "MEMO_LIMIT", 40)
    names = [f"host{i}" for i in range(150)]
    records = [Record(names=(name,), ipv4=(f"10.3.{i // 250}.{i % 250}",))
               for i, name in enumerate(names)]
    handler = QueryHandler(registry_with(records), AnswerSettings())

    async def body(listener: UDPSocketListener, port: int) -> None:
        sizes = []
        for index, name in enumerate(names * 2):
            reply = await exchange(port, query(name, index))
            assert a_records(reply) == {f"10.3.{names.index(name) // 250}."
                                        f"{names.index(name) % 250}"}
            sizes.append(len(handler.views.for_client("127.0.0.1").memo_udp))
        assert max(sizes) == 40  # filled up to the cap, never past it

    run(handler, body)


def test_the_memo_starts_again_at_its_byte_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "MEMO_BYTES", 100_000)
    # Names with 60 addresses: each memo entry holds 16 prebuilt orders of a ~1 kB reply.
    records = [Record(names=(f"big{i}",), ipv4=tuple(f"10.4.{i}.{j}" for j in range(1, 61)))
               for i in range(20)]
    handler = QueryHandler(registry_with(records), AnswerSettings())

    async def body(listener: UDPSocketListener, port: int) -> None:
        used, entries = [], []
        for index in range(40):
            packet = dns.message.make_query(f"big{index % 20}", "A", use_edns=0, payload=4096)
            reply = await exchange(port, packet.to_wire())
            assert len(a_records(reply)) == 60
            view = handler.views.for_client("127.0.0.1")
            used.append(view.memo_udp.used)
            entries.append(len(view.memo_udp))
        # Far below the entry cap, the bytes decide: a handful of entries, then it starts again.
        assert max(used) <= 100_000
        assert 2 <= max(entries) < 20 and entries.count(1) >= 4

    run(handler, body)


def test_the_client_table_starts_again_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "CLIENT_LIMIT", 16)
    handler = QueryHandler(registry_with([Record(names=("web1",), ipv4=("10.1.2.3",))]),
                           AnswerSettings())

    async def body(listener: UDPSocketListener, port: int) -> None:
        sizes = []
        for host in range(2, 70):  # 68 source addresses of 127.0.0.0/8, all of this host
            reply = await exchange(port, query("web1", host), source=f"127.0.9.{host}")
            assert a_records(reply) == {"10.1.2.3"}
            sizes.append(len(handler.views.by_client))
        assert max(sizes) == 16

    run(handler, body)


def test_the_rate_limiter_table_starts_again_at_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_CLIENTS", 16)
    handler = QueryHandler(registry_with([Record(names=("web1",), ipv4=("10.1.2.3",))]),
                           AnswerSettings())
    limiter = RateLimiter(rate=1000)

    async def body(listener: UDPSocketListener, port: int) -> None:
        sizes = []
        for host in range(2, 70):
            reply = await exchange(port, query("web1", host), source=f"127.0.8.{host}")
            assert a_records(reply) == {"10.1.2.3"}
            sizes.append(len(limiter._buckets))
        assert max(sizes) == 16

    run(handler, body, limiter)


class SilentUpstream:
    """A UDP socket on loopback that takes queries and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    @property
    def address(self) -> HostPort:
        return HostPort("127.0.0.1", self.sock.getsockname()[1])

    def received(self) -> int:
        count = 0
        while True:
            try:
                self.sock.recv(65535)
            except BlockingIOError:
                return count
            count += 1


@pytest.fixture
def silent() -> Iterator[SilentUpstream]:
    upstream = SilentUpstream()
    try:
        yield upstream
    finally:
        upstream.sock.close()


def test_queries_waiting_on_the_full_path_stop_at_their_cap_and_the_rest_get_servfail_at_once(
        monkeypatch: pytest.MonkeyPatch, silent: SilentUpstream) -> None:
    monkeypatch.setattr(udp_socket, "MAX_PENDING", 8)
    # Nothing may time out while the test looks: questions wait on the silent upstream.
    monkeypatch.setattr(forwarder_module, "ANSWER_BUDGET", 120.0)
    config = Config(upstreams=(silent.address,), resolv_conf=os.devnull, upstream_timeout=10.0,
                    special_names=False)  # the flood asks names under .test
    registry = registry_with([Record(names=("web1",), ipv4=("10.1.2.3",))])

    async def main() -> None:
        forwarder = UpstreamForwarder(forward_settings(config))
        forwarder.start()
        handler = QueryHandler(registry, AnswerSettings(), forwarder=forwarder)
        loop = asyncio.get_running_loop()
        listener = UDPSocketListener(handler, bind_udp(HostPort("127.0.0.1", 0)), loop)
        port = listener.sock.getsockname()[1]
        try:
            assert a_records(await exchange(port, query("web1"))) == {"10.1.2.3"}
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.setblocking(False)
                client.connect(("127.0.0.1", port))
                for qid in range(30):
                    await loop.sock_sendall(client, query(f"n{qid}.flood.test", qid))
                replies = [dns.message.from_wire(await asyncio.wait_for(
                    loop.sock_recv(client, 65535), 5)) for _ in range(22)]
            assert {r.rcode() for r in replies} == {dns.rcode.SERVFAIL}
            assert sorted(r.id for r in replies) == list(range(8, 30))
            assert len(listener.waiting) == 8
            for _ in range(100):  # the forwarder sends on the loop: let it get to all eight
                if forwarder.udp.stats.udp_sent == 8:
                    break
                await asyncio.sleep(0.02)
            assert forwarder.udp.stats.udp_sent == 8
            # Memo hits are answered inline, whatever waits on the full path.
            assert a_records(await exchange(port, query("web1"))) == {"10.1.2.3"}
        finally:
            listener.close()
            await forwarder.close()
        assert silent.received() == 8

    asyncio.run(main())


def test_unknown_question_types_share_one_counter_label() -> None:
    handler = QueryHandler(registry_with([Record(names=("web1",), ipv4=("10.1.2.3",))]),
                           AnswerSettings())

    async def body(listener: UDPSocketListener, port: int) -> None:
        for qtype in range(1000, 3000):
            reply = await exchange(port, query("web1", qtype % 65536, qtype))
            assert reply.rcode() == dns.rcode.NOERROR and not reply.answer

    run(handler, body)
    labels = handler.stats.totals()
    assert labels == {(OTHER_QTYPE, 0, "local"): 2000}
