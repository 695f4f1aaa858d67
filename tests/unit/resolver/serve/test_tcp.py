"""The TCP listener in-process on a loopback port: framed queries split across writes and
pipelined in one, answered with the registry's records; the connection cap and the per-client
cap; the idle timeout; new bounds on reconfigure; and stop_reading at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.message
import pytest

from discovery.registry.model import Record, SourcePart
from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.dns.addresses import HostPort
from resolver.dns.framing import frame, read_framed
from resolver.serve import tcp
from resolver.serve.settings import TCPSettings
from resolver.serve.sockets import bind_tcp
from resolver.serve.tcp import TCPServerState


def make_state(**bounds: float) -> TCPServerState:
    registry = Registry()
    registry.update("hosts", SourcePart(records=(
        Record(names=("web1",), ipv4=("10.1.2.3",)),
        Record(names=("db",), ipv4=("10.1.2.9",)),
    )))
    return TCPServerState(QueryHandler(registry, AnswerSettings()), **bounds)  # type: ignore


def query(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()


def serve(state: TCPServerState, body: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(state.protocol, sock=bind_tcp(HostPort("127.0.0.1", 0)))
        port = server.sockets[0].getsockname()[1]
        try:
            await body(port)
        finally:
            server.close()
            for connection in list(state.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            await server.wait_closed()

    asyncio.run(main())


async def read_reply(reader: asyncio.StreamReader) -> dns.message.Message:
    return dns.message.from_wire(await asyncio.wait_for(read_framed(reader), 10))


def test_split_and_pipelined_queries() -> None:
    state = make_state()

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        one = frame(query("web1", 1))
        # One message in three writes (the length prefix split too), then two in one write.
        for part in (one[:1], one[1:5], one[5:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(frame(query("db", 2)) + frame(query("web1", 3)))
        replies = [await read_reply(reader) for _ in range(3)]
        assert sorted((r.id, r.answer[0][0].to_text()) for r in replies) == [
            (1, "10.1.2.3"), (2, "10.1.2.9"), (3, "10.1.2.3")]
        assert len(state.connections) == 1
        writer.close()
        await writer.wait_closed()

    serve(state, body)
    assert not state.connections and state.per_client == {}


def test_connection_cap() -> None:
    state = make_state(max_connections=1)

    async def body(port: int) -> None:
        _, first = await asyncio.open_connection("127.0.0.1", port)
        reader, second = await asyncio.open_connection("127.0.0.1", port)
        # The second is closed at once, with no reply to what it sends.
        second.write(frame(query("web1", 1)))
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert state.rejected == 1 and len(state.connections) == 1
        first.close()
        second.close()

    serve(state, body)


def test_per_client_cap_for_non_loopback_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loopback clients are exempt (a sidecar's stub); real addresses are counted.
    monkeypatch.setattr(tcp, "MAX_CONNECTIONS_PER_CLIENT", 2)
    state = make_state()
    assert state.admit("10.0.0.5") is None and state.admit("10.0.0.5") is None
    assert "holds 2 connections" in (state.admit("10.0.0.5") or "")
    assert state.admit("127.0.0.1") is None and state.admit("10.0.0.6") is None
    state.release("10.0.0.5")
    assert state.per_client == {"10.0.0.5": 1, "10.0.0.6": 1}
    state.release("10.0.0.5")
    state.release("127.0.0.1")  # never counted: nothing to release
    assert state.per_client == {"10.0.0.6": 1}


def test_idle_connections_are_closed_and_bounds_reconfigure() -> None:
    state = make_state()
    state.reconfigure(TCPSettings(max_connections=5, idle_timeout=0.2))
    assert (state.max_connections, state.idle_timeout) == (5, 0.2)

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(query("web1", 7)))
        assert (await read_reply(reader)).id == 7
        # Then silence: the server closes after the idle timeout.
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()

    serve(state, body)


def test_stop_reading_takes_no_new_queries() -> None:
    state = make_state()

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(query("web1", 1)))
        assert (await read_reply(reader)).id == 1
        (connection,) = state.connections
        connection.stop_reading()
        writer.write(frame(query("web1", 2)))
        await writer.drain()
        await asyncio.sleep(0.1)
        assert not connection.reading and connection.stopped
        # Nothing came back for the query sent after the stop.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(2), 0.2)
        writer.close()

    serve(state, body)

