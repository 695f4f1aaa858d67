"""Which network link dockdns registers on, made with rtnetlink (pyroute2); blocking calls, run
in a thread by the caller.

resolved keeps DNS servers per link, and ignores loopback and links that are down or have no
address. A real host's choice, in order: the link that holds a dockdns listen address (dockdns
serving on a bridge's gateway, say), if resolved would use it (up, carrier, an address); else a
veth pair of dockdns's own, ``dockdns0`` (a ``dummy`` link would do, but not every kernel has
that driver), up, with a link-local address so that resolved counts it as up. That pair carries
no traffic: the servers registered on it are dockdns's listen addresses (loopback ones too),
reached over their own routes. dockdns removes the pair on exit when it made it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from resolver.dns.addresses import HostPort

log = logging.getLogger("dockdns.resolved")
# pyroute2 logs every netlink message at debug level: hundreds of lines per call under
# --log-level debug, none of which say anything about dockdns.
logging.getLogger("pyroute2").setLevel(logging.WARNING)

LINK_NAME = "dockdns0"
PEER_NAME = "dockdns0p"
# IPv4 link-local (RFC 3927), /32: routes nothing anywhere, and gives resolved the address it
# requires of a link before it uses the link's servers.
LINK_ADDRESS = "169.254.53.53"
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_LOWER_UP = 0x10000


class LinkProblem(Exception):
    """No link could be found or made (permission denied, say)."""


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    created: bool  # made by dockdns: removed again on exit


def _usable(ipr: IPRoute, index: int) -> tuple[str, bool]:
    (message,) = ipr.get_links(index)
    flags = message["flags"]
    name = message.get_attr("IFLA_IFNAME")
    return name, bool(flags & IFF_UP and flags & IFF_LOWER_UP and not flags & IFF_LOOPBACK)


def _holding(ipr: IPRoute, listen: Sequence[HostPort]) -> int | None:
    """The index of a link with one of the ``listen`` addresses, if a non-loopback one does."""
    wanted = {ipaddress.ip_address(a.host) for a in listen}
    for message in ipr.get_addr():
        address = message.get_attr("IFA_ADDRESS")
        if address and ipaddress.ip_address(address) in wanted \
                and not ipaddress.ip_address(address).is_loopback:
            return int(message["index"])
    return None


def choose(listen: Sequence[HostPort]) -> Link:
    """The link to register on, made if need be (see the module's docstring)."""
    try:
        with IPRoute() as ipr:
            index = _holding(ipr, listen)
            if index is not None:
                name, usable = _usable(ipr, index)
                if usable:
                    return Link(index, name, created=False)
                log.info("systemd-resolved: %s holds the listen address but is down or has no "
                         "carrier; using a link of dockdns's own", name)
            found = ipr.link_lookup(ifname=LINK_NAME)
            created = not found
            if created:
                ipr.link("add", ifname=LINK_NAME, kind="veth", peer=PEER_NAME)
                found = ipr.link_lookup(ifname=LINK_NAME)
            index = int(found[0])
            peer = ipr.link_lookup(ifname=PEER_NAME)
            has_address = any(m.get_attr("IFA_ADDRESS") == LINK_ADDRESS
                              for m in ipr.get_addr(index=index))
            if not has_address:
                ipr.addr("add", index=index, address=LINK_ADDRESS, prefixlen=32)
            # A veth has carrier only while both ends are up.
            for end in (index, *peer):
                ipr.link("set", index=int(end), state="up")
            return Link(index, LINK_NAME, created)
    except NetlinkError as err:
        raise LinkProblem(f"cannot make the link {LINK_NAME}: {err.args[-1]}") from None
    except OSError as err:
        raise LinkProblem(f"cannot use rtnetlink: {err.strerror or err}") from None


def remove(link: Link) -> None:
    """Delete a link dockdns made (its veth peer goes with it)."""
    if not link.created:
        return
    try:
        with IPRoute() as ipr:
            ipr.link("del", index=link.index)
    except (NetlinkError, OSError) as err:
        log.warning("systemd-resolved: could not remove the link %s: %s", link.name, err)
