"""Forwarding-loop detection, as CoreDNS's loop plugin does it: at start and whenever the
upstreams change, each upstream is asked a random name under ``dockdns-loop.invalid``. A server
that forwards back to dockdns (a dnsmasq pointed at dockdns, a resolv.conf naming a forwarder
that forwards here) brings that question back to our own listener; the upstream it was sent to
is marked a loop, logged once, and skipped until the next check.

With --workers the probe may come back to another worker (SO_REUSEPORT spreads the queries):
the label carries a MAC over the upstream it was sent to, keyed by a secret made before the
workers fork, so any worker can tell which of the (shared) upstreams it came back from.

Only configured upstreams are ever asked. ``.invalid`` (RFC 6761) is never delegated, so the
probe cannot leak anywhere a well-behaved resolver would send it; one that loops answers it
SERVFAIL here, which ends the loop after one round.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
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
# Probes per upstream and check: with --workers each worker marks only the loops whose probes
# come back to it, so each sends several; with N workers a worker misses all 6N of them with
# probability ((N-1)/N)^(6N), 1 in 4096 for two.
PROBES = 6
# Made at import, so before --workers forks: every worker of one dockdns shares it.
_SECRET = secrets.token_bytes(16)


def _mac(nonce: str, server: HostPort) -> str:
    return hmac.new(_SECRET, f"{nonce} {server}".encode(), hashlib.sha256).hexdigest()[:16]


def probe_label(server: HostPort) -> str:
    """A fresh label for a probe of ``server``: a random nonce and its MAC over the upstream."""
    nonce = secrets.token_hex(6)
    return nonce + _mac(nonce, server)


def probed(label: str, servers: Iterable[HostPort]) -> HostPort | None:
    """Which of ``servers`` a label made by ``probe_label`` (in any worker) was sent to."""
    nonce, mac = label[:12], label[12:]
    return next((server for server in servers
                 if hmac.compare_digest(_mac(nonce, server), mac)), None)


def probe_message(label: str) -> bytes:
    """``<label>.dockdns-loop.invalid IN A``, recursion desired (a forwarder must forward it)."""
    name = b"".join(len(part).to_bytes(1, "big") + part
                    for part in (label.encode("ascii"), *PROBE_ZONE)) + b"\x00"
    return wire.HEADER.pack(0, wire.RD, 1, 0, 0, 0) + name + struct.pack(
        "!HH", wire.TYPE_A, wire.CLASS_IN)


class LoopDetector:
    def __init__(self, pool: UpstreamPool, servers: Callable[[], Iterable[HostPort]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.servers = servers  # the upstreams configured now
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
            for _ in range(PROBES):
                label = probe_label(server)
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
            await self.pool.udp.ask(server, message, question, PROBE_WINDOW)
        except (OSError, TimeoutError):
            return  # silence or an error is the health's business, not a loop

    def seen(self, query: wire.Query) -> bool:
        """Whether ``query`` is a loop probe (ours coming back, or a late or foreign one): it is
        answered SERVFAIL at once, never forwarded. Ours marks its upstream a loop."""
        labels = query.labels
        if len(labels) != 3 or labels[2].lower() != PROBE_ZONE[1] \
                or labels[1].lower() != PROBE_ZONE[0]:
            return False
        label = labels[0].lower()
        probe = self._probes.pop(label, None)
        server = probe[0] if probe is not None else probed(
            label.decode("latin-1"), self.servers())  # another worker's probe
        if server is not None:
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
