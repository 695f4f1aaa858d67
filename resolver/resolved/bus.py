"""The D-Bus calls to systemd-resolved (org.freedesktop.resolve1.Manager), with dbus-fast.

The same calls as ``resolvectl dns/domain/default-route/revert``; resolved checks that the caller
may make them (root, CAP_NET_ADMIN, or polkit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError, InvalidAddressError

from resolver.dns.addresses import HostPort

RESOLVE1 = "org.freedesktop.resolve1"
PATH = "/org/freedesktop/resolve1"
MANAGER = "org.freedesktop.resolve1.Manager"
DBUS = "org.freedesktop.DBus"
# How long one call may take: resolved answers at once, and a hung bus must not hold up startup.
CALL_SECONDS = 5.0


class BusProblem(Exception):
    """The bus or resolved refused or could not be reached; the message says which and why."""


async def connect() -> MessageBus:
    """The system bus (DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket)."""
    try:
        return await MessageBus(bus_type=BusType.SYSTEM, auth_timeout=CALL_SECONDS).connect()
    except (OSError, EOFError, TimeoutError, AuthError, DBusError, InvalidAddressError,
            ValueError) as err:
        raise BusProblem(f"no system bus ({err.__class__.__name__}: {err})") from None


async def _call(bus: MessageBus, message: Message) -> list[object]:
    try:
        reply = await asyncio.wait_for(bus.call(message), CALL_SECONDS)
    except (OSError, EOFError, TimeoutError) as err:
        raise BusProblem(f"{message.member} failed: {err or err.__class__.__name__}") from None
    if reply is None or reply.message_type == MessageType.ERROR:
        name = reply.error_name if reply is not None else "no reply"
        detail = reply.body[0] if reply is not None and reply.body else ""
        raise BusProblem(f"{message.member} refused: {name}: {detail}".rstrip(": "))
    return list(reply.body)


async def resolved_present(bus: MessageBus) -> bool:
    """Whether org.freedesktop.resolve1 has an owner on the bus (resolved runs)."""
    body = await _call(bus, Message(destination=DBUS, path="/org/freedesktop/DBus",
                                    interface=DBUS, member="NameHasOwner", signature="s",
                                    body=[RESOLVE1]))
    return bool(body and body[0])


def _manager(member: str, signature: str, body: list[object]) -> Message:
    return Message(destination=RESOLVE1, path=PATH, interface=MANAGER, member=member,
                   signature=signature, body=body)


def dns_servers(servers: Sequence[HostPort]) -> list[list[object]]:
    """SetLinkDNSEx's a(iayqs): family, address bytes, port, server name (for DoT; none)."""
    entries: list[list[object]] = []
    for server in servers:
        address = ipaddress.ip_address(server.host)
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        entries.append([family, address.packed, server.port, ""])
    return entries


async def set_link_dns(bus: MessageBus, ifindex: int, servers: Sequence[HostPort]) -> None:
    await _call(bus, _manager("SetLinkDNSEx", "ia(iayqs)", [ifindex, dns_servers(servers)]))


async def set_link_domains(bus: MessageBus, ifindex: int, domains: Sequence[str]) -> None:
    """Every domain routing-only (``~docker``): resolved sends those names to this link's
    servers, and never appends them to single-label names."""
    await _call(bus, _manager("SetLinkDomains", "ia(sb)",
                              [ifindex, [[domain, True] for domain in domains]]))


async def set_link_default_route(bus: MessageBus, ifindex: int, enabled: bool) -> None:
    await _call(bus, _manager("SetLinkDefaultRoute", "ib", [ifindex, enabled]))


async def revert_link(bus: MessageBus, ifindex: int) -> None:
    await _call(bus, _manager("RevertLink", "i", [ifindex]))
