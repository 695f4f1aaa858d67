"""The one entry point the daemon calls: ``start()`` once it listens, ``stop()`` at exit; registry
changes come in by subscription.

With --resolved auto (the default) dockdns registers when org.freedesktop.resolve1 is on the
system bus, and otherwise says so in one line and serves on; with --resolved on its absence is a
startup error; off leaves resolved alone. Registered, dockdns is resolved's DNS server for its
own zones on its own link (``link.py``): SetLinkDNSEx with the listen addresses,
SetLinkDomains with ``~DOMAIN`` and the reverse zones of Docker's subnets (set again when those
change), SetLinkDefaultRoute(false) so nothing else is sent its way, and RevertLink on exit.
While registered it keeps resolved's stub as its upstream when resolv.conf names it, and the
loop guard (``guard.py``) keeps the two from sending queries round in a circle.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Sequence
from typing import Protocol

from dbus_fast.aio import MessageBus

from discovery.registry.model import Snapshot
from discovery.registry.registry import Registry
from resolver.config.settings import Config
from resolver.dns.addresses import HostPort
from resolver.ops.logs import RateLimitedLog
from resolver.resolved import bus, link, stub, zones
from resolver.resolved.guard import LoopGuard

log = logging.getLogger("dockdns.resolved")
limited = RateLimitedLog(log)


class ResolvedUnavailable(Exception):
    """--resolved on, and dockdns cannot register with resolved: a startup error."""

    exit_code = 2


class Guarded(Protocol):
    """What takes the loop guard: the query handler and the forwarder."""

    guard: LoopGuard | None


class StubUpstreams(Protocol):
    def keep_stub_servers(self, keep: bool) -> None: ...


def registered_servers(listen: Sequence[HostPort]) -> list[HostPort]:
    """The listen addresses as servers resolved can send to: a wildcard becomes loopback."""
    servers: list[HostPort] = []
    for address in listen:
        ip = ipaddress.ip_address(address.host)
        host = ("127.0.0.1" if ip.version == 4 else "::1") if ip.is_unspecified else address.host
        server = HostPort(host, address.port)
        if server not in servers:
            servers.append(server)
    return servers


class ResolvedIntegration:
    def __init__(self, config: Config, registry: Registry, guarded: Sequence[Guarded],
                 upstreams: StubUpstreams, register: bool = True) -> None:
        """``register``: make the D-Bus calls (with --workers N, worker 0 only: the others
        only guard their own forwarding, as resolved sends any of them dockdns's zones)."""
        self.mode = config.resolved
        self.register = register
        self.listen = config.listen
        self.domain = config.domain
        self.default_bridge = config.default_bridge_names
        self.resolv_conf = config.resolv_conf
        self.registry = registry
        self.guarded = guarded
        self.upstreams = upstreams
        self.guard = LoopGuard()
        self.bus: MessageBus | None = None
        self.link: link.Link | None = None
        self.domains: tuple[str, ...] = ()
        self._update: asyncio.Task[None] | None = None
        self._wanted: tuple[str, ...] = ()

    def _unavailable(self, reason: str, present: bool = False) -> None:
        """No integration. Said as info when resolved is simply not there (most hosts without
        it), as a warning when it is there and refused (permission denied, say)."""
        if self.mode == "on":
            raise ResolvedUnavailable(f"--resolved on: cannot register with systemd-resolved: "
                                      f"{reason}")
        log.log(logging.WARNING if present else logging.INFO,
                "systemd-resolved integration off: %s; serving without it", reason)

    async def start(self) -> None:
        if self.mode == "off":
            return
        try:
            self.bus = await bus.connect()
            if not await bus.resolved_present(self.bus):
                raise bus.BusProblem(f"{bus.RESOLVE1} is not on the system bus (resolved does "
                                     "not run)")
        except bus.BusProblem as err:
            self._close_bus()
            self._unavailable(str(err))
            return
        self._wanted = zones.owned_zones(self.domain, zones.subnets_of(self.registry.snapshot,
                                                                       self.default_bridge))
        servers = registered_servers(self.listen)
        if self.register:
            try:
                self.link = await asyncio.to_thread(link.choose, self.listen)
                await bus.set_link_dns(self.bus, self.link.index, servers)
                await bus.set_link_domains(self.bus, self.link.index, self._wanted)
                await bus.set_link_default_route(self.bus, self.link.index, False)
            except (link.LinkProblem, bus.BusProblem) as err:
                await self._undo()
                self._unavailable(str(err), present=True)
                return
        else:
            self._close_bus()
        self.domains = self._wanted
        self.guard.set_zones(self.domains)
        for part in self.guarded:
            part.guard = self.guard
        through_stub = stub.points_at_stub(self.resolv_conf)
        if through_stub:
            self.upstreams.keep_stub_servers(True)
        self.registry.subscribe(self._on_snapshot)
        if self.link is None:
            return  # a worker that only guards
        log.info("systemd-resolved: dockdns (%s) is the DNS server of %s on link %s (%d)%s",
                 ", ".join(str(s) for s in servers), _routing(self.domains) or "no domain",
                 self.link.name, self.link.index,
                 "; forwarding through resolved's stub" if through_stub else "")

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        wanted = zones.owned_zones(self.domain,
                                   zones.subnets_of(snapshot, self.default_bridge))
        if wanted == self._wanted:
            return
        self._wanted = wanted
        if self.link is None:  # a worker that only guards: nothing to tell resolved
            self.guard.set_zones(wanted)
            return
        # Owned at once: from now on these names are answered here, never forwarded.
        self.guard.set_zones(set(wanted) | set(self.domains))
        if self._update is None or self._update.done():
            self._update = asyncio.get_running_loop().create_task(self._apply(),
                                                                  name="resolved-domains")

    async def _apply(self) -> None:
        """Send the latest domains until resolved has them (several changes may come at once)."""
        while self.bus is not None and self.link is not None and self.domains != self._wanted:
            wanted = self._wanted
            try:
                await bus.set_link_domains(self.bus, self.link.index, wanted)
            except bus.BusProblem as err:
                limited.warning("systemd-resolved: could not update the routing domains: %s",
                                str(err))
                return
            self.domains = wanted
            self.guard.set_zones(wanted)
            log.info("systemd-resolved: routing domains now %s", _routing(wanted))

    async def stop(self) -> None:
        if self._update is not None:
            self._update.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._update
        if self.link is not None:
            await self._undo()
            log.info("systemd-resolved: link reverted")

    async def _undo(self) -> None:
        current = self.link
        self.link = None
        if current is not None and self.bus is not None:
            try:
                await bus.revert_link(self.bus, current.index)
            except bus.BusProblem as err:
                log.warning("systemd-resolved: could not revert link %s: %s", current.name, err)
        if current is not None:
            await asyncio.to_thread(link.remove, current)
        self._close_bus()

    def _close_bus(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


def _routing(domains: Sequence[str]) -> str:
    return " ".join(f"~{domain}" for domain in domains)
