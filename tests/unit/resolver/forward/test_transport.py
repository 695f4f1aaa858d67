"""The UDP transport towards upstreams in this process (resolver/forward/transport.py), against
the fault server and plain sockets on loopback: replies matched to their queries in the
protocol's callback, forged ones dropped and counted, ICMP errors failing the attempt at once,
IDs from the CSPRNG buffer spread and never reused while pending, sockets rotated to new ports
in the background while the retired ones still get their replies."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import pytest

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward.errors import UpstreamUnreachable
from resolver.forward.transport import ID_BUFFER, QueryIDs, UDPExchange, UpstreamUDP
from tests.support.upstream import Behaviour, FaultServer


def message(name: str) -> tuple[bytes, bytes]:
    """A query's wire form and its question section."""
    data = dns.message.make_query(name, "A", use_edns=False).to_wire()
    return data, data[wire.HEADER.size:]


class Recorder:
    """A receiver that keeps what each exchange got, and a future per exchange."""

    def __init__(self) -> None:
        self.futures: dict[UDPExchange, asyncio.Future[bytes]] = {}

    def expect(self, exchange: UDPExchange) -> asyncio.Future[bytes]:
        return self.futures.setdefault(exchange, asyncio.get_running_loop().create_future())

    def replied(self, exchange: UDPExchange, data: bytes) -> None:
        self.expect(exchange).set_result(data)

    def unreachable(self, exchange: UDPExchange, error: OSError) -> None:
        self.expect(exchange).set_exception(error)


def test_sockets_rotate_to_new_ports_and_retired_ones_still_get_their_replies() -> None:
    with FaultServer() as upstream:
        for n in range(7):
            upstream.add(f"q{n}.rotate.test", "A", 300, f"192.0.2.{n + 1}")
        # The third query (the one that retires the first socket) is answered late.
        upstream.behave(Behaviour(delay=0.3), "q2.rotate.test")
        server = HostPort(upstream.host, upstream.port)

        async def scenario() -> tuple[list[dns.message.Message], int]:
            udp = UpstreamUDP(sockets_per_family=1, rotate_after=3)
            recorder = Recorder()
            try:
                late = None
                replies = []
                for n in range(7):
                    data, question = message(f"q{n}.rotate.test")
                    exchange = udp.send(server, data, question, recorder, 0.0)
                    future = recorder.expect(exchange)
                    # The replacement is bound in the background: let it finish, so which
                    # socket the next query leaves from is certain.
                    await udp.settle()
                    if n == 2:
                        late = future
                        continue
                    replies.append(dns.message.from_wire(await asyncio.wait_for(future, 3)))
                assert late is not None
                replies.append(dns.message.from_wire(await asyncio.wait_for(late, 3)))
                return replies, udp.stats.rotations
            finally:
                await udp.close()

        replies, rotations = asyncio.run(scenario())
        ports = [query.source[1] for query in upstream.queries if query.source]
    assert sorted(str(r.answer[0][0]) for r in replies) == [f"192.0.2.{n + 1}" for n in range(7)]
    assert rotations == 2
    # Three queries per port: 0-2 on the first, 3-5 on the second, 6 on the third.
    assert len(ports) == 7 and len(set(ports)) == 3
    assert ports[0] == ports[2] != ports[3] == ports[5] != ports[6]


def test_a_reply_from_elsewhere_or_for_another_question_is_not_taken() -> None:
    with FaultServer() as upstream, FaultServer() as other:
        upstream.add("match.test", "A", 300, "192.0.2.50")
        upstream.add("question.test", "A", 300, "192.0.2.51")
        upstream.add("id.test", "A", 300, "192.0.2.52")
        upstream.behave(Behaviour(forge="source"), "match.test")
        upstream.behave(Behaviour(forge="question"), "question.test")
        upstream.behave(Behaviour(forge="id"), "id.test")
        server = HostPort(upstream.host, upstream.port)

        async def scenario() -> tuple[list[list[str]], dict[str, int]]:
            udp = UpstreamUDP(sockets_per_family=1)
            try:
                answers = []
                for name in ("match.test", "question.test", "id.test"):
                    data, question = message(name)
                    reply = await udp.ask(server, data, question, 3)
                    answers.append([str(r) for r in dns.message.from_wire(reply).answer[0]])
                return answers, dict(udp.stats.rejected)
            finally:
                await udp.close()

        answers, rejected = asyncio.run(scenario())
    assert answers == [["192.0.2.50"], ["192.0.2.51"], ["192.0.2.52"]]
    # One forged copy of each kind came first and was dropped, by reason.
    assert rejected == {"wrong_source": 1, "wrong_question": 1, "unknown_id": 1}
    assert other.queries == []


def test_a_closed_port_fails_the_exchange_at_once_with_the_icmp_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = HostPort("127.0.0.1", probe.getsockname()[1])
    # (Closed again: nothing listens there, so the kernel answers port unreachable.)

    async def scenario() -> tuple[BaseException | None, int]:
        udp = UpstreamUDP(sockets_per_family=1)
        recorder = Recorder()
        try:
            data, question = message("closed.test")
            future = recorder.expect(udp.send(closed, data, question, recorder, 0.0))
            await asyncio.wait([future], timeout=10)
            return future.exception(), udp.pending()
        finally:
            await udp.close()

    error, pending = asyncio.run(scenario())
    assert isinstance(error, UpstreamUnreachable)
    assert pending == 0


def test_ids_come_from_the_buffer_spread_and_never_twice_on_one_socket_while_pending() -> None:
    # More queries than one buffer holds (so it is refilled), all pending at once on one socket
    # towards an upstream that never answers: by the birthday bound some 70 random draws
    # collide with a pending ID and must be drawn again.
    count = ID_BUFFER // 2 + 1000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        silent.settimeout(5)
        server = HostPort("127.0.0.1", silent.getsockname()[1])

        async def scenario() -> int:
            udp = UpstreamUDP(sockets_per_family=1, rotate_after=10 * count)
            recorder = Recorder()
            try:
                data, question = message("ids.test")
                udp.send(server, data, question, recorder, 0.0)
                await udp.settle()  # the socket is bound: the rest go out at once
                for _ in range(count - 1):
                    udp.send(server, data, question, recorder, 0.0)
                return udp.pending()
            finally:
                await udp.close()

        pending = asyncio.run(scenario())
        ids = []
        for _ in range(count):
            ids.append(int.from_bytes(silent.recv(512)[:2], "big"))
    assert pending == count
    assert len(set(ids)) == count  # none reused while the others were pending
    # Spread over the whole 16-bit space: every high byte value shows up, and the IDs are
    # not in sending order.
    assert len({qid >> 8 for qid in ids}) == 256
    assert ids != sorted(ids)


def test_query_ids_refill_from_the_csprng() -> None:
    ids = QueryIDs()
    drawn = [ids() for _ in range(3 * ID_BUFFER // 2)]  # 1.5 buffers of two-byte IDs
    assert all(0 <= qid < 65536 for qid in drawn)
    half = ID_BUFFER // 2
    assert drawn[:half] != drawn[half:2 * half]  # a fresh buffer, not the same one again


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "sendto"])
def test_queries_sent_in_one_callback_go_out_together_once_the_loop_runs_on(
        batched: bool) -> None:
    # Ten queries from one callback (as a client batch's misses are): none has left when the
    # callback returns, all have once the loop runs the flush; one cancelled meanwhile never
    # leaves. Both ways of sending: sendmmsg, and one sendto each where it is missing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.setblocking(False)
        server = HostPort("127.0.0.1", upstream.getsockname()[1])

        def arrived() -> list[bytes]:
            got = []
            while True:
                try:
                    got.append(upstream.recv(512))
                except BlockingIOError:
                    return got

        async def scenario() -> tuple[int, list[bytes], list[bytes], int]:
            udp = UpstreamUDP(sockets_per_family=2, batched=batched)
            recorder = Recorder()
            try:
                data, question = message("first.batch.test")
                udp.send(server, data, question, recorder, 0.0)
                await udp.settle()  # the sockets are bound and the first query sent
                await asyncio.sleep(0.05)
                first = arrived()
                exchanges = []
                for n in range(10):
                    data, question = message(f"q{n}.batch.test")
                    exchanges.append(udp.send(server, data, question, recorder, 0.0))
                exchanges[4].cancel()
                before = len(arrived())
                await asyncio.sleep(0.05)
                return before, first, arrived(), udp.stats.udp_sent
            finally:
                await udp.close()

        before, first, after, sent = asyncio.run(scenario())
    assert len(first) == 1
    assert before == 0
    names = sorted(str(dns.message.from_wire(query).question[0].name) for query in after)
    assert names == [f"q{n}.batch.test." for n in range(10) if n != 4], batched
    assert sent == 11


def test_replies_are_matched_whether_queries_go_out_batched_or_one_by_one() -> None:
    with FaultServer() as upstream:
        for n in range(20):
            upstream.add(f"r{n}.match.test", "A", 300, f"192.0.2.{n + 1}")
        server = HostPort(upstream.host, upstream.port)

        async def scenario(batched: bool) -> list[str]:
            udp = UpstreamUDP(sockets_per_family=3, rotate_after=4, batched=batched)
            try:
                asked = []
                for n in range(20):
                    data, question = message(f"r{n}.match.test")
                    asked.append(udp.ask(server, data, question, 3))
                replies = await asyncio.gather(*asked)
                return [str(dns.message.from_wire(reply).answer[0][0]) for reply in replies]
            finally:
                await udp.close()

        for batched in (True, False):
            assert asyncio.run(scenario(batched)) == [f"192.0.2.{n + 1}" for n in range(20)]
