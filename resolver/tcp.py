"""The TCP listener (RFC 7766): 2-byte length framing, pipelined queries answered as they finish,
an idle timeout, and caps on connections and on what one connection may buffer."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from resolver.handler import QueryHandler
from resolver.logs import RateLimitedLog

log = logging.getLogger("dockdns.tcp")
errors = RateLimitedLog(log)

# RFC 7766 6.2.3 recommends closing idle connections after "a few seconds"; 10 s leaves room for
# a stub that reuses its connection across a burst of lookups.
DEFAULT_IDLE_TIMEOUT = 10.0
# Open connections at once. Each costs a socket and a small buffer; past this, new connections
# are closed at once so that a client holding sockets open cannot exhaust file descriptors.
DEFAULT_MAX_CONNECTIONS = 1024
# Queries one connection may have in progress before we stop reading from it (back-pressure).
MAX_PIPELINED = 64
# Unanswered bytes buffered from one connection: one maximal message plus its length prefix and
# a little slack. A client that sends more without reading replies is throttled by MAX_PIPELINED.
MAX_BUFFERED = 65_535 + 2 + 4096
# Replies queued towards a client that does not read them; past this the connection is closed.
MAX_WRITE_BUFFER = 1 << 20


class TCPServerState:
    """Shared by the connections of one listener: the handler and the connection count."""

    def __init__(self, handler: QueryHandler, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[TCPConnection] = set()
        self.rejected = 0

    def protocol(self) -> TCPConnection:
        return TCPConnection(self)


class TCPConnection(asyncio.Protocol):
    def __init__(self, state: TCPServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.buffer = bytearray()
        self.pending: set[asyncio.Task[None]] = set()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        if len(self.state.connections) >= self.state.max_connections:
            self.state.rejected += 1
            errors.warning("TCP connection limit (%d) reached; closing new connections",
                           self.state.max_connections)
            self.transport.abort()
            return
        self.state.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        for task in self.pending:
            task.cancel()
        self.transport = None

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.state.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.pending:  # still answering: idle means no traffic in either direction
            self._arm_idle_timer()
        elif self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        try:
            self.buffer += data
            self._arm_idle_timer()
            self._drain_messages()
        except Exception:
            errors.exception("TCP query from %s failed", self.client)
            self.transport.abort()

    def _drain_messages(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2 and len(self.pending) < MAX_PIPELINED:
            length = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + length:
                break
            message = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            reply = self.state.handler.answer_fast(message, self.client, True)
            if reply is not None:
                self._send(reply)
                continue
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self.pending.add(task)
            task.add_done_callback(self._finished)
        # Complete messages are taken out above, so the buffer only grows past one maximal
        # message while the pipeline is full: stop reading until answers go out.
        if (len(self.pending) >= MAX_PIPELINED or len(buffer) > MAX_BUFFERED) and self.reading:
            if self.transport is not None:
                self.transport.pause_reading()
                self.reading = False

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not self.reading and self.transport is not None and len(self.pending) < MAX_PIPELINED:
            self.transport.resume_reading()
            self.reading = True
            self._drain_messages()

    async def _answer(self, message: bytes) -> None:
        reply = await self.state.handler.answer(message, self.client, True)
        if reply is not None:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            errors.warning("TCP client %s does not read its replies; closing", self.client)
            transport.abort()
            return
        transport.write(len(reply).to_bytes(2, "big") + reply)
