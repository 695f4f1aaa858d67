"""The TCP listener (RFC 7766): 2-byte length framing, pipelined queries answered as they finish,
an idle timeout, and caps on connections and on what one connection may buffer.

Timeouts as BIND's tcp-initial-timeout and Unbound's tcp-idle-timeout practice them: the first
byte must come within the idle timeout of the connection's start (or of its last question or
reply), and a message, once its first byte came, must be whole within the idle timeout of that
byte, however slowly the rest trickles in (a slowloris client sending a byte a second is closed).
The idle timeout shrinks as the pool fills (``TCPServerState.current_idle_timeout``), so idle
connections give their slots back sooner when new clients need them.

Half-close (RFC 7766 6.2.4 allows a client to send FIN after its queries): every question read
before the FIN is answered, forwarded ones included, then the connection is closed.

Back-pressure both ways: a connection stops being read while ``MAX_PIPELINED`` of its queries are
in progress, and while its replies wait in the transport because the client does not read them
(``pause_writing``). Either way the client's own sends then block in the kernel, so one
connection holds at most about MAX_BUFFERED + one read + the transport's high-water mark
(64 KiB) + its in-progress replies, whatever it sends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from resolver.answer.handler import QueryHandler, servfail_for
from resolver.dns.addresses import is_loopback
from resolver.dns.framing import frame
from resolver.ops.logs import RateLimitedLog
from resolver.serve.settings import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, TCPSettings

log = logging.getLogger("dockdns.tcp")
errors = RateLimitedLog(log)

# Queries one connection may have in progress before we stop reading from it (back-pressure).
# Stubs pipeline a handful (glibc sends A and AAAA together); 64 lets a resolver-like client
# keep a full window busy while one connection can hold at most 64 tasks and upstream slots.
MAX_PIPELINED = 64
# Unanswered bytes buffered from one connection: one maximal message plus its length prefix and
# a little slack. A client that sends more without reading replies is throttled by MAX_PIPELINED.
MAX_BUFFERED = 65_535 + 2 + 4096
# Replies queued in the transport towards a client: it stops being read past the transport's
# high-water mark (64 KiB), so only replies of queries already in progress add to that; past
# this (16 maximal replies) the connection is aborted instead of buffering more.
MAX_WRITE_BUFFER = 1 << 20
# Connections one (non-loopback) address may hold at once. Without it one container could take
# every --tcp-max slot (a byte every few seconds keeps a connection from going idle) and leave
# the others no TCP fallback for truncated answers. A stub opens one connection per lookup that
# needs TCP; 64 at once is far beyond that, and 1/16 of the default --tcp-max.
MAX_CONNECTIONS_PER_CLIENT = 64
# (share of slots free, factor): below each share the idle timeout is cut to that factor. The
# shares are Unbound's (50%, 35%, 20%); its factors (1%, 0.2%, 0) are gentler here, so that a
# stub still gets its second question of a pair onto the same connection in a full pool.
IDLE_SHRINK = ((0.5, 0.5), (0.35, 0.25), (0.2, 0.1))


class TCPServerState:
    """Shared by the connections of one listener: the handler and the connection count."""

    def __init__(self, handler: QueryHandler, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[TCPConnection] = set()  # at most max_connections
        # Open connections per non-loopback client address (each at most
        # MAX_CONNECTIONS_PER_CLIENT; an address leaves the table with its last connection).
        self.per_client: dict[str, int] = {}
        self.rejected = 0
        self.swept_factor = 1.0  # the shrink factor idle timers were last armed with

    def shrink_factor(self) -> float:
        free = 1.0 - len(self.connections) / self.max_connections
        factor = 1.0
        for below, cut in IDLE_SHRINK:
            if free < below:
                factor = cut
        return factor

    def current_idle_timeout(self) -> float:
        """The idle timeout for a connection armed now: shorter as the pool fills."""
        return self.idle_timeout * self.shrink_factor()

    def pool_changed(self) -> None:
        """A connection came or went. When the pool crossed into a fuller tier, every idle
        connection's timer is armed again with the shorter timeout (at most once per tier on
        the way up: three sweeps however many connections fill the pool)."""
        factor = self.shrink_factor()
        if factor < self.swept_factor:
            for connection in self.connections:
                connection.rearm()
        self.swept_factor = factor

    def reconfigure(self, settings: TCPSettings) -> None:
        """New bounds (SIGHUP) for the connections accepted from now on."""
        self.max_connections = settings.max_connections
        self.idle_timeout = settings.idle_timeout

    def admit(self, client: str) -> str | None:
        """Take a connection slot for ``client``; None, or why it gets none."""
        if len(self.connections) >= self.max_connections:
            return f"TCP connection limit ({self.max_connections}) reached; closing new " \
                "connections"
        if is_loopback(client):
            return None
        held = self.per_client.get(client, 0)
        if held >= MAX_CONNECTIONS_PER_CLIENT:
            return f"TCP client holds {MAX_CONNECTIONS_PER_CLIENT} connections already; " \
                "closing its new ones"
        self.per_client[client] = held + 1
        return None

    def release(self, client: str) -> None:
        held = self.per_client.get(client)
        if held is not None:
            if held > 1:
                self.per_client[client] = held - 1
            else:
                del self.per_client[client]

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
        # (loop time) the last complete question or reply: idleness counts from there.
        self.last_active = 0.0
        # (loop time) when the first byte of the message now in ``buffer`` came, and by when it
        # must be whole; meaningless while the buffer is empty.
        self.message_deadline = 0.0
        self.eof = False  # the client half-closed: answer what was read, then close
        self.message_complete_taken = False  # the last _drain_messages took a whole message
        self.reading = True
        self.writing_paused = False  # the transport holds more than its high-water mark
        self.stopped = False
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        refusal = self.state.admit(self.client)
        if refusal is not None:
            self.state.rejected += 1
            errors.warning(refusal)
            self.transport.abort()
            return
        self.admitted = True
        self.state.connections.add(self)
        self.last_active = asyncio.get_running_loop().time()
        self._arm_idle_timer()
        self.state.pool_changed()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.state.connections.discard(self)
            self.state.release(self.client)
            self.state.pool_changed()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        for task in self.pending:
            task.cancel()
        self.transport = None

    def _arm_idle_timer(self) -> None:
        """Arm the one timer for whichever deadline applies now: the message being read, or
        idleness. It is armed when data comes, not moved by every reply: ``_idle`` looks again
        at what happened meanwhile when it fires."""
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = asyncio.get_running_loop()
        if self.buffer and self.reading:
            deadline = self.message_deadline
        else:
            deadline = self.last_active + self.state.current_idle_timeout()
        self.idle_timer = loop.call_at(deadline, self._idle)

    def rearm(self) -> None:
        if self.transport is not None:
            self._arm_idle_timer()

    def _idle(self) -> None:
        self.idle_timer = None
        transport = self.transport
        if transport is None:
            return
        now = asyncio.get_running_loop().time()
        if self.buffer and self.reading and not self.stopped:
            if now >= self.message_deadline:
                errors.warning("TCP client %s did not complete its message within %.1f s; "
                               "closing", self.client, self.state.idle_timeout)
                transport.abort()
                return
        elif self.pending:  # still answering: idle means no traffic in either direction
            self.last_active = now
        elif now < self.last_active + self.state.current_idle_timeout():
            pass  # a question or reply since the timer was armed
        elif transport.get_write_buffer_size():
            # The client has read nothing for the whole timeout: a close would wait for
            # replies that never drain and keep the connection (and its slot) forever.
            transport.abort()
            return
        else:
            transport.close()
            return
        self._arm_idle_timer()

    def pause_writing(self) -> None:
        """The transport's buffer is past its high-water mark: the client is not reading its
        replies, so stop reading its queries until they drain."""
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._resume_reading()

    def _pause_reading(self) -> None:
        if self.reading and self.transport is not None:
            self.transport.pause_reading()
            self.reading = False

    def _resume_reading(self) -> None:
        if (not self.reading and not self.stopped and not self.writing_paused
                and self.transport is not None and len(self.pending) < MAX_PIPELINED):
            self.transport.resume_reading()
            self.reading = True
            self._drain_messages()
            if self.buffer:
                # The rest of a message waited on us, not on the client: its time starts now.
                self.message_deadline = (asyncio.get_running_loop().time()
                                         + self.state.current_idle_timeout())
                self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        try:
            started = not self.buffer
            self.buffer += data
            self._drain_messages()
            if self.buffer and (started or self.message_complete_taken):
                # A new message began with these bytes: it has the idle timeout to be whole.
                self.message_deadline = (asyncio.get_running_loop().time()
                                         + self.state.current_idle_timeout())
            self._arm_idle_timer()
        except Exception:
            errors.exception("TCP query from %s failed", self.client)
            self.transport.abort()

    def eof_received(self) -> bool:
        """The client sent FIN: keep the connection open (half-closed) until every question
        already read is answered; True keeps the transport from closing itself."""
        self.eof = True
        self._drain_messages()
        self._drop_incomplete()
        return bool(self.pending)

    def _drop_incomplete(self) -> None:
        """After FIN a message cut short can never be completed: forget it (whole ones waiting
        behind a full pipeline stay)."""
        buffer = self.buffer
        if len(buffer) < 2 or len(buffer) < 2 + ((buffer[0] << 8) | buffer[1]):
            buffer.clear()

    def _drain_messages(self) -> None:
        buffer = self.buffer
        self.message_complete_taken = False
        while len(buffer) >= 2 and len(self.pending) < MAX_PIPELINED and not self.writing_paused:
            length = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + length:
                break
            message = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            self.message_complete_taken = True
            self.last_active = asyncio.get_running_loop().time()
            reply = self.state.handler.answer_fast(message, self.client, True)
            if reply is not None:
                self._send(reply)
                continue
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self.pending.add(task)
            task.add_done_callback(self._finished)
        # Complete messages are taken out above, so the buffer only grows past one maximal
        # message while the pipeline is full or replies wait: stop reading until they go out.
        if len(self.pending) >= MAX_PIPELINED or len(buffer) > MAX_BUFFERED:
            self._pause_reading()

    def stop_reading(self) -> None:
        """Take no new queries (shutdown): stop reading and forget what is not yet started."""
        self.stopped = True
        self.buffer.clear()
        self._pause_reading()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if self.eof:
            # Half-closed: questions still buffered behind a full pipeline are taken now; once
            # none is left unanswered, the replies are flushed and the connection closed.
            self._drain_messages()
            self._drop_incomplete()
            if not self.pending and self.transport is not None:
                self.transport.close()
            return
        self._resume_reading()

    async def _answer(self, message: bytes) -> None:
        try:
            reply = await self.state.handler.answer(message, self.client, True)
        except asyncio.CancelledError:
            # Shutdown gave up waiting for this one (resolver/daemon/lifecycle.py): the client
            # gets SERVFAIL rather than silence. After connection_lost there is no transport.
            failed = servfail_for(message)
            if failed is not None:
                self._send(failed)
            raise
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
        transport.write(frame(reply))
