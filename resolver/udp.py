"""The UDP listener: a thin shell around the handler. Nothing raised here may escape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from resolver.handler import QueryHandler, servfail_for
from resolver.logs import RateLimitedLog

log = logging.getLogger("dockdns.udp")
errors = RateLimitedLog(log)

# Queries waiting on the full path (mostly on upstreams) at once, per listener. Beyond it a query
# gets SERVFAIL at once: memory stays bounded under a flood of unique names, and the client
# learns immediately instead of timing out. The forwarder has its own, lower, cap on distinct
# questions (--max-inflight); this one also counts the clients that wait on a question someone
# else asked first, each in a task of its own. A waiting task (its coroutine frames and the
# query) is a few kB, so 10,000 is some 30 MB at worst, and it still lets ~2,800 full-path
# queries a second wait out the 3.5 s answer budget.
MAX_PENDING = 10_000


class UDPListener(asyncio.DatagramProtocol):
    def __init__(self, handler: QueryHandler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            reply = self.handler.answer_fast(data, addr[0], False)
            if reply is not None:
                transport.sendto(reply, addr)
                return
            if len(self.pending) >= MAX_PENDING:
                reply = servfail_for(data)
                if reply is not None:
                    transport.sendto(reply, addr)
                return
            task = asyncio.get_running_loop().create_task(self._answer(data, addr))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        except Exception:
            errors.exception("UDP query from %s failed", addr[0])

    async def _answer(self, data: bytes, addr: Any) -> None:
        reply = await self.handler.answer(data, addr[0], False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.sendto(reply, addr)
            except OSError as err:
                errors.warning("UDP reply to %s failed: %s", addr[0], err)

    def stop_reading(self) -> None:
        """Take no new queries (shutdown); pending ones can still send their replies.

        The transport gets a protocol that ignores datagrams, so the hot path carries no flag.
        """
        if self.transport is not None:
            self.transport.set_protocol(_Ignore())

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from earlier sends (port unreachable): the client went away, nothing to do.
        log.debug("UDP socket error: %s", exc)


class _Ignore(asyncio.DatagramProtocol):
    """Receives the datagrams that arrive while the daemon drains, and drops them."""
