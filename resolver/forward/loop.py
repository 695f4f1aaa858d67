"""Forwarding-loop detection, as CoreDNS's loop plugin does it: at start and whenever the
upstreams change, each upstream is asked a random name under ``dockdns-loop.invalid``. A server
that forwards back to dockdns (a dnsmasq pointed at dockdns, a resolv.conf naming a forwarder
that forwards here) brings that question back to our own listener; the upstream it was sent to
is marked a loop, logged once, and skipped until the next check.

Only configured upstreams are ever asked. ``.invalid`` (RFC 6761) is never delegated, so the
probe cannot leak anywhere a well-behaved resolver would send it; one that loops answers it
SERVFAIL here, which ends the loop after one round.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable, Iterable

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward.pool import UpstreamPool

log = logging.getLogger("dockdns.forwarder")

PROBE_ZONE = (b"dockdns-loop", b"invalid")
# How long a probe's name is remembered: its answer may take the upstream's own timeouts.
PROBE_WINDOW = 10.0


def probe_message(label: str) -> bytes:
    """``<label>.dockdns-loop.invalid IN A``, recursion desired (a forwarder must forward it)."""
    name = b"".join(len(part).to_bytes(1, "big") + part
                    for part in (label.encode("ascii"), *PROBE_ZONE)) + b"\x00"
    return wire.HEADER.pack(0, wire.RD, 1, 0, 0, 0) + name + struct.pack(
        "!HH", wire.TYPE_A, wire.CLASS_IN)


class LoopDetector:
    def __init__(self, pool: UpstreamPool, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.clock = clock
        # Probe label -> (the upstream it was sent to, until when it is remembered).
        self._probes: dict[bytes, tuple[HostPort, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def check(self, servers: Iterable[HostPort]) -> None:
        """Probe every one of ``servers`` (loop marks from an earlier check are cleared: the
        operator may have fixed the upstream)."""
        self.pool.health.clear_loops()
        now = self.clock()
        for old in [k for k, (_, until) in self._probes.items() if until <= now]:
            del self._probes[old]
        for server in sorted(servers):
            label = secrets.token_hex(8)
            self._probes[label.encode("ascii")] = (server, now + PROBE_WINDOW)
            task = asyncio.get_running_loop().create_task(self._send(server, label),
                                                          name="loop-probe")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, server: HostPort, label: str) -> None:
        message = probe_message(label)
        question = message[wire.HEADER.size:]
        try:
            if server.tls_name:
                await self.pool.tls.exchange(server, message, question, PROBE_WINDOW)
                return
            exchange = await self.pool.udp.send(server, message, question)
            try:
                await asyncio.wait_for(exchange.future, PROBE_WINDOW)
            finally:
                exchange.cancel()
        except (OSError, TimeoutError):
            return  # silence or an error is the health's business, not a loop

    def seen(self, query: wire.Query) -> bool:
        """Whether ``query`` is a loop probe (ours coming back, or a late or foreign one): it is
        answered SERVFAIL at once, never forwarded. Ours marks its upstream a loop."""
        labels = query.labels
        if len(labels) != 3 or tuple(label.lower() for label in labels[1:]) != PROBE_ZONE:
            return False
        probe = self._probes.pop(labels[0].lower(), None)
        if probe is not None and self.clock() < probe[1]:
            server = probe[0]
            if self.pool.health.mark_loop(server):
                log.error("forwarding loop: upstream %s sent dockdns's own probe question back "
                          "to it (it forwards to dockdns); skipping that upstream until the "
                          "upstreams change or SIGHUP", server)
        return True

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
