"""The registry's values: networks, records, clients, and what one name holds.

Written for registries of a million records (a large hosts file): a ``Record`` is one tuple of
eight slots, its rarely set fields (TTL, SRV, CNAME, static data, private clients) in one shared
extra tuple that most records do not have, and a name held by one record is held by that record
itself (``Record`` answers ``records``, ``ipv4`` and ``ipv6`` as a ``NameSet`` does); only names
held by several records get a ``Group``.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The scope Docker gives networks that span a Swarm; its resolver tries those first.
SCOPE_SWARM = "swarm"
SCOPE_LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Network:
    """A network whose members can resolve each other's names."""

    name: str
    id: str = ""
    driver: str = "bridge"
    scope: str = SCOPE_LOCAL
    subnets: tuple[IPNetwork, ...] = ()
    internal: bool = False
    # Docker's default "bridge" network: Docker gives its members no names at all.
    default_bridge: bool = False
    source: str = ""
    # The network's gateway addresses: what `host.docker.internal` answers its members.
    gateways: tuple[str, ...] = ()


class _Extra(NamedTuple):
    """The fields of a ``Record`` that most records leave at their defaults."""

    srv: tuple[tuple[str, int], ...]
    srv_target: str | None
    ttl: int | None
    srv_names: tuple[tuple[str, int], ...]
    clients: tuple[str, ...]
    cname: str | None
    data: tuple[tuple[int, bytes], ...]


class Record(tuple[Any, ...]):
    """One holder of addresses: a container's endpoint on a network, a service VIP, a hosts line.

    Immutable, hashable and compared by value (a tuple: hashing and equality run in C, which the
    registry's multiset deltas lean on). Made with the keywords of its fields:

    - ``names``: lower case, no trailing dot; a name ``*.SUFFIX`` is a wildcard owner: it answers
      every name below SUFFIX that no exact name holds (the most specific suffix wins);
    - ``ipv4``, ``ipv6``; ``network``: None for records every client may see (hosts files);
    - ``ptr``: the name a PTR question for these addresses answers (case kept);
    - ``srv``: (protocol, port) pairs, e.g. ("tcp", 80); ``srv_target``: the name SRV answers
      point at; ``srv_names``: named SRV services ("_http._tcp", port) from dockdns.srv;
    - ``origin``: where it came from, for `dockdns check` and logs; ``source``: which kind of
      source made it ("hosts", "docker", "swarm", "static");
    - ``ttl``: its own TTL (forward and PTR); None: the --ttl setting;
    - ``clients``: only queries from these addresses see it (a container's --add-host and --link
      names, which Docker writes into that one container's /etc/hosts); empty: as ``network``;
    - ``cname``: a static CNAME (the names are aliases of this target); ``data``: static records
      of other types, (type code, rdata in wire form).
    """

    __slots__ = ()

    def __new__(cls, names: tuple[str, ...], ipv4: tuple[str, ...] = (),
                ipv6: tuple[str, ...] = (), network: str | None = None, ptr: str | None = None,
                srv: tuple[tuple[str, int], ...] = (), srv_target: str | None = None,
                origin: str = "", source: str = "", ttl: int | None = None,
                srv_names: tuple[tuple[str, int], ...] = (), clients: tuple[str, ...] = (),
                cname: str | None = None,
                data: tuple[tuple[int, bytes], ...] = ()) -> Record:
        extra = None
        if srv or srv_target is not None or ttl is not None or srv_names or clients \
                or cname is not None or data:
            extra = _Extra(srv, srv_target, ttl, srv_names, clients, cname, data)
        if ptr is not None and names and ptr == names[0]:
            ptr = names[0]  # one string for both (hosts lines: the first name is the PTR)
        # One name, one address: kept as the string itself, not a tuple of one (48 bytes a
        # record each: 96 MB for a million hosts lines). The properties give tuples back.
        return tuple.__new__(cls, (names[0] if len(names) == 1 else names,
                                   ipv4[0] if len(ipv4) == 1 else ipv4,
                                   ipv6[0] if len(ipv6) == 1 else ipv6,
                                   network, ptr, origin, source, extra))

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy and pickle make it through __new__
        return (self.names, self.ipv4, self.ipv6, self.network, self.ptr, self.srv,
                self.srv_target, self.origin, self.source, self.ttl, self.srv_names,
                self.clients, self.cname, self.data)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in
                           zip(_FIELDS, self.__getnewargs__(), strict=True)
                           if value != _DEFAULTS.get(name))
        return f"Record({fields})"

    @property
    def names(self) -> tuple[str, ...]:
        names = self[0]
        return (names,) if type(names) is str else names

    @property
    def ipv4(self) -> tuple[str, ...]:
        ipv4 = self[1]
        return (ipv4,) if type(ipv4) is str else ipv4

    @property
    def ipv6(self) -> tuple[str, ...]:
        ipv6 = self[2]
        return (ipv6,) if type(ipv6) is str else ipv6

    @property
    def network(self) -> str | None:
        return self[3]  # type: ignore[no-any-return]

    @property
    def ptr(self) -> str | None:
        return self[4]  # type: ignore[no-any-return]

    @property
    def origin(self) -> str:
        return self[5]  # type: ignore[no-any-return]

    @property
    def source(self) -> str:
        return self[6]  # type: ignore[no-any-return]

    @property
    def srv(self) -> tuple[tuple[str, int], ...]:
        extra: _Extra | None = self[7]
        return () if extra is None else extra.srv

    @property
    def srv_target(self) -> str | None:
        extra: _Extra | None = self[7]
        return None if extra is None else extra.srv_target

    @property
    def ttl(self) -> int | None:
        extra: _Extra | None = self[7]
        return None if extra is None else extra.ttl

    @property
    def srv_names(self) -> tuple[tuple[str, int], ...]:
        extra: _Extra | None = self[7]
        return () if extra is None else extra.srv_names

    @property
    def clients(self) -> tuple[str, ...]:
        extra: _Extra | None = self[7]
        return () if extra is None else extra.clients

    @property
    def cname(self) -> str | None:
        extra: _Extra | None = self[7]
        return None if extra is None else extra.cname

    @property
    def data(self) -> tuple[tuple[int, bytes], ...]:
        extra: _Extra | None = self[7]
        return () if extra is None else extra.data

    @property
    def records(self) -> tuple[Record, ...]:
        """As a ``NameSet``: a name this record alone holds is held by the record itself."""
        return (self,)


_FIELDS = ("names", "ipv4", "ipv6", "network", "ptr", "srv", "srv_target", "origin", "source",
           "ttl", "srv_names", "clients", "cname", "data")
_DEFAULTS: dict[str, object] = {"ipv4": (), "ipv6": (), "network": None, "ptr": None, "srv": (),
                                "srv_target": None, "origin": "", "source": "", "ttl": None,
                                "srv_names": (), "clients": (), "cname": None, "data": ()}


@dataclass(frozen=True, slots=True)
class Client:
    """An address that belongs to a container: queries from it see only its networks."""

    address: str
    networks: tuple[str, ...]
    container: str = ""


@dataclass(frozen=True, slots=True)
class SourcePart:
    """Everything one source knows at one moment (or, for ``Registry.change``, a delta)."""

    networks: tuple[Network, ...] = ()
    records: tuple[Record, ...] = ()
    clients: tuple[Client, ...] = ()


# A PTR answer: (the network it is visible on, None for every network; the target; its TTL).
PtrEntry = tuple[str | None, str, int | None]


class NameSet(Protocol):
    """The records one name has on one network (or globally), ready for answering: a
    ``Record`` (the name's only holder) or a ``Group``."""

    @property
    def records(self) -> tuple[Record, ...]: ...

    @property
    def ipv4(self) -> tuple[str, ...]: ...

    @property
    def ipv6(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Group:
    """A name held by several records (or by one that lists an address twice), in the order a
    whole build gives: by source part, then as that part lists them. ``owners`` names each
    record's part, so that a record added later lands where a build would put it."""

    records: tuple[Record, ...]
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    owners: tuple[str, ...] = ()


def unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return values if len(values) < 2 else tuple(dict.fromkeys(values))


def alone_holds(record: Record) -> bool:
    """Whether ``record`` can hold a name by itself: its addresses are listed once each."""
    ipv4, ipv6 = record[1], record[2]  # a string for one address
    return (type(ipv4) is str or len(ipv4) < 2 or len(set(ipv4)) == len(ipv4)) and \
        (type(ipv6) is str or len(ipv6) < 2 or len(set(ipv6)) == len(ipv6))


def group_of(records: tuple[Record, ...], owners: tuple[str, ...]) -> Group:
    return Group(records, tuple(dict.fromkeys(a for r in records for a in r.ipv4)),
                 tuple(dict.fromkeys(a for r in records for a in r.ipv6)), owners)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a registry is built: a build makes hundreds of
    thousands of acyclic objects for 100,000 names, and the collector would scan them again and
    again (it more than doubled the build time). Reference counting still frees as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
