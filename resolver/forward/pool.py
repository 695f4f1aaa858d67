"""The upstream pool: the transport towards every upstream, each one's health, the probes that
bring one that is down back, and the per-upstream request counters the metrics read.

The forward stage asks the pool; the pool knows nothing of questions, caches or clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import probe_query
from resolver.forward.errors import UpstreamUnreachable
from resolver.forward.health import UpstreamHealth
from resolver.forward.tls import UpstreamTLS
from resolver.forward.transport import UpstreamUDP


class UpstreamPool:
    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic,
                 cafile: str = "") -> None:
        self.timeout = timeout  # one attempt's budget (--upstream-timeout)
        self.clock = clock
        self.health = UpstreamHealth()
        self.udp = UpstreamUDP()
        self.cafile = cafile
        self.tls = UpstreamTLS(cafile)  # tls:// upstreams
        # Per (upstream, outcome): as many as upstreams ever configured times the few outcomes.
        self._requests: dict[tuple[HostPort, str], int] = {}
        # At most one probe per configured upstream that is down.
        self._probes: dict[HostPort, asyncio.Task[None]] = {}

    def count(self, server: HostPort, outcome: str) -> None:
        key = (server, outcome)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1

    @property
    def requests(self) -> dict[tuple[str, str], int]:
        """The counts by (upstream as text, outcome), as the metrics label them."""
        counted: dict[tuple[str, str], int] = {}
        for (server, outcome), count in self._requests.items():
            key = (str(server), outcome)
            counted[key] = counted.get(key, 0) + count
        return counted

    def forget_except(self, servers: set[HostPort]) -> None:
        """Upstreams no longer configured (resolv.conf changed) lose their health state."""
        self.health.forget_except(servers)

    def failed(self, server: HostPort, err: BaseException | None) -> None:
        """One attempt to ``server`` failed: ``err`` None for a timeout, else what it raised."""
        if err is None:
            self.count(server, "timeout")
            self.health.failed(server, self.clock())
        elif isinstance(err, UpstreamUnreachable):
            self.count(server, "unreachable")
            self.health.failed(server, self.clock(), f"unreachable ({err.strerror})")
        else:
            self.count(server, "timeout" if isinstance(err, TimeoutError) else "error")
            self.health.failed(server, self.clock(), f"failed ({err})")

    def probe_down(self) -> None:
        """Start a probe for every upstream that is down, due for one and has none running."""
        for server in self.health.due(self.clock()):
            if server not in self._probes:
                self._probes[server] = asyncio.get_running_loop().create_task(
                    self._probe(server), name="upstream-probe")

    async def _probe(self, server: HostPort) -> None:
        try:
            await self._ask_alive(server)
        finally:
            self._probes.pop(server, None)

    def reconfigure_tls(self, cafile: str) -> None:
        if cafile != self.cafile:
            self.cafile = cafile
            self.tls.reconfigure(cafile)

    async def _ask_alive(self, server: HostPort) -> None:
        message = probe_query(0)
        sent = self.clock()
        if server.tls_name:
            try:
                await self.tls.exchange(server, message, message[wire.HEADER.size:],
                                        self.timeout)
            except (OSError, TimeoutError):
                self.health.probe_failed(server, self.clock())
                return
            self.health.succeeded(server, self.clock() - sent)
            return
        try:
            await self.udp.ask(server, message, message[wire.HEADER.size:], self.timeout)
        except (TimeoutError, OSError):
            self.health.probe_failed(server, self.clock())
            return
        self.health.succeeded(server, self.clock() - sent)

    def probes(self) -> Iterable[asyncio.Task[None]]:
        return list(self._probes.values())

    async def close(self) -> None:
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        if probes:
            await asyncio.wait(probes)
        await self.udp.close()
        await self.tls.close()
