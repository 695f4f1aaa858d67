"""Answers from the registry, with Docker's embedded DNS as the reference. Pure: no I/O.

How Docker's resolver (libnetwork ``sandbox.ResolveName``) finds a name, reproduced here:
for ``a.b.c`` it tries ``a.b.c`` on every network of the client, then ``a.b`` on network ``c``,
then ``a`` on network ``b.c``; the client's networks are tried in order (Swarm-scoped first, then
by name) and the first network that holds the name answers with all of its addresses there. A name
that exists but has no address of the asked family gets NOERROR with no answer, as does a known
name asked for another type (MX, TXT, ...). Names no network knows fall through to hosts files
and static records, then to wildcard owners (the most specific suffix first), then to
``host.docker.internal``, then to the forwarder. Names private to one client (its ``--add-host``
and ``--link`` names) come before all of these, as /etc/hosts comes before DNS in that container.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from discovery.registry.model import Group, NameSet, Record, Snapshot
from resolver.dns import wire

# The name every client may ask for its own network's gateway (Docker Desktop's convention).
HOST_NAME = "host.docker.internal"
# CNAMEs followed inside the registry before giving up (a loop of static CNAMEs ends here).
MAX_CHAIN = 8
# Types a static record may hold beyond addresses and CNAMEs.
DATA_TYPES = frozenset({wire.TYPE_TXT, wire.TYPE_MX, wire.TYPE_SRV, wire.TYPE_PTR})


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """What the registry says about one question."""

    rcode: int
    answers: tuple[bytes, ...]  # answer records in wire form, owner compressed to the question
    additional: tuple[bytes, ...] = ()
    # Addresses in no meaningful order: every response gets a new order (Docker shuffles them).
    shuffle: bool = False
    records: tuple[Record, ...] = ()  # which registry records it came from (for `dockdns check`)
    network: str | None = None  # the network the name was found on (None: a hosts file)
    # A CNAME chain left the registry at this name: the forwarder must answer the rest.
    chase: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    names: NameSet
    network: str | None


def _splits(name: str) -> Iterator[tuple[str, str | None]]:
    """``a.b.c`` -> (a.b.c, None), (a.b, c), (a, b.c): name first, then name-on-network."""
    yield name, None
    dot = len(name)
    while (dot := name.rfind(".", 0, dot)) > 0:
        yield name[:dot], name[dot + 1 :]


def _visible_part(found: NameSet, networks: Sequence[str]) -> NameSet | None:
    """A private name's holders that are on a network the client sees (or on none)."""
    records = tuple(r for r in found.records if r.network is None or r.network in networks)
    if len(records) == len(found.records):
        return found
    if not records:
        return None
    return Group(records, tuple(dict.fromkeys(a for r in records for a in r.ipv4)),
                 tuple(dict.fromkeys(a for r in records for a in r.ipv6)))


def _has(found: NameSet, family: int) -> bool:
    return family == 0 or bool(found.ipv4 if family == 4 else found.ipv6)


def find(snapshot: Snapshot, networks: Sequence[str], name: str, family: int,
         private: str | None = None) -> tuple[Found | None, bool]:
    """Find ``name`` as the client on ``networks`` (at address ``private``) sees it.

    Returns the first holder that has addresses of ``family`` (4 or 6; 0 for any), and whether the
    name exists at all (so that a family miss becomes NOERROR/empty rather than a forward).
    """
    if private is not None and snapshot.private:
        own = snapshot.private.get(private)
        held = own.get(name) if own is not None else None
        if held is not None and (held := _visible_part(held, networks)) is not None:
            return (Found(held, None), True) if _has(held, family) else (None, True)
    exists = False
    for request, on_network in _splits(name):
        for network in networks:
            if on_network is not None and on_network != network.lower():
                continue
            names = snapshot.by_network.get(network)
            found = names.get(request) if names is not None else None
            if found is None:
                continue
            if _has(found, family):
                return Found(found, network), True
            exists = True
        if exists:
            # Docker stops at the first split that knows the name (its ipv6Miss rule).
            return None, True
    found = snapshot.global_names.get(name)
    if found is not None:
        if _has(found, family):
            return Found(found, None), True
        return None, True
    if snapshot.wild_by_network or snapshot.global_wild:
        return _find_wild(snapshot, networks, name, family)
    return None, False


def _find_wild(snapshot: Snapshot, networks: Sequence[str], name: str,
               family: int) -> tuple[Found | None, bool]:
    """The wildcard owner of the longest suffix of ``name`` (the most specific one wins); on
    each suffix the client's networks in lookup order, then wildcards every network sees."""
    dot = name.find(".")
    while dot >= 0:
        suffix = name[dot + 1 :]
        exists = False
        for network in networks:
            wild = snapshot.wild_by_network.get(network)
            found = wild.get(suffix) if wild is not None else None
            if found is None:
                continue
            if _has(found, family):
                return Found(found, network), True
            exists = True
        if exists:
            return None, True
        found = snapshot.global_wild.get(suffix)
        if found is not None:
            return (Found(found, None), True) if _has(found, family) else (None, True)
        dot = name.find(".", dot + 1)
    return None, False


def record_ttl(records: Sequence[Record], ttl: int) -> int:
    """The TTL of an answer from ``records``: the lowest of their own (``dockdns.ttl``), with
    ``ttl`` (--ttl) standing in for records that have none."""
    if len(records) == 1:
        own = records[0].ttl
        return ttl if own is None else own
    return min((ttl if r.ttl is None else r.ttl for r in records), default=ttl)


def _strip_domain(name: str, domain: str | None) -> str | None:
    if domain and name.endswith("." + domain):
        return name[: -len(domain) - 1]
    return None


def _address_answer(found: Found, family: int, ttl: int) -> LocalAnswer:
    ttl = record_ttl(found.names.records, ttl)
    if family == 4:
        rtype, addresses = wire.TYPE_A, found.names.ipv4
    else:
        rtype, addresses = wire.TYPE_AAAA, found.names.ipv6
    answers = tuple(wire.rr_to_qname(rtype, ttl, wire.address_rdata(a)) for a in addresses)
    return LocalAnswer(wire.NOERROR, answers, shuffle=len(answers) > 1,
                       records=found.names.records, network=found.network)


def _ptr_answer(snapshot: Snapshot, networks: Sequence[str], address: str,
                ttl: int) -> LocalAnswer | None:
    held = snapshot.ptr_holders.get(address)
    if held is None:
        return None
    # The first holder on each network wins (hosts files: the first line of an address).
    by_network: dict[str | None, Record] = {r.network: r for r in held.records[::-1]}
    for network in (*networks, None):
        record = by_network.get(network)
        if record is not None:
            assert record.ptr is not None
            rdata = wire.encode_name(record.ptr)
            own = record.ttl
            return LocalAnswer(wire.NOERROR, (wire.rr_to_qname(
                wire.TYPE_PTR, ttl if own is None else own, rdata),), network=network)
    return None


def _srv_answer(snapshot: Snapshot, networks: Sequence[str], name: str, domain: str | None,
                ttl: int, private: str | None) -> LocalAnswer | None:
    """``_<port>._<proto>.<name>``: the holders of ``name`` that expose that port;
    ``_<service>._<proto>.<name>``: those that publish that service (``dockdns.srv``)."""
    parts = name.split(".", 2)
    if len(parts) < 3:
        return None
    service_label, proto_label, rest = parts
    if not (service_label.startswith("_") and proto_label in ("_tcp", "_udp") and rest):
        return None
    number = service_label[1:]
    port = int(number) if number.isdigit() else None
    service = f"{service_label}.{proto_label}"
    target_name = _strip_domain(rest, domain) or rest
    found, exists = find(snapshot, networks, target_name, 0, private)
    if found is None:
        return LocalAnswer(wire.NOERROR, ()) if exists and port is not None else None
    if port is None and not any(s == service for r in found.names.records
                                for s, _ in r.srv_names):
        return None  # not a service anyone published: not ours (as before service labels)
    proto = proto_label[1:]
    answers: list[bytes] = []
    additional: list[bytes] = []
    for record in found.names.records:
        ports = [p for s, p in record.srv_names if s == service]
        if port is not None and (proto, port) in record.srv:
            ports.append(port)
        rr_ttl = ttl if record.ttl is None else record.ttl
        for number_ in dict.fromkeys(ports):
            target = record.srv_target or record.ptr or target_name
            answers.append(wire.rr_to_qname(wire.TYPE_SRV, rr_ttl,
                                            wire.srv_rdata(0, 0, number_, target)))
            owner = wire.encode_name(target)
            additional.extend(wire.rr_named(owner, wire.TYPE_A, rr_ttl, wire.address_rdata(a))
                              for a in record.ipv4)
            additional.extend(wire.rr_named(owner, wire.TYPE_AAAA, rr_ttl,
                                            wire.address_rdata(a)) for a in record.ipv6)
    return LocalAnswer(wire.NOERROR, tuple(answers), tuple(additional),
                       shuffle=len(answers) > 1, records=found.names.records,
                       network=found.network)


def _data_answer(found: Found, qtype: int, ttl: int) -> LocalAnswer | None:
    """Static TXT/MX/SRV/PTR records of ``qtype`` held by the name; None when it holds none."""
    answers = tuple(wire.rr_to_qname(qtype, ttl if r.ttl is None else r.ttl, rdata)
                    for r in found.names.records for rtype, rdata in r.data if rtype == qtype)
    if not answers:
        return None
    return LocalAnswer(wire.NOERROR, answers, records=found.names.records,
                       network=found.network)


def _cname_of(names: NameSet) -> str | None:
    return next((r.cname for r in names.records if r.cname), None)


def _cname_answer(snapshot: Snapshot, networks: Sequence[str], found: Found, query: wire.Query,
                  ttl: int, private: str | None) -> LocalAnswer | None:
    """A static CNAME, chased inside the registry as far as it goes (Unbound's local-data
    does the same); where the chain leaves the registry, ``chase`` names what the forwarder
    must answer."""
    target = _cname_of(found.names)
    if target is None:
        return None
    records = found.names.records
    answers = [wire.rr_to_qname(wire.TYPE_CNAME, record_ttl(records, ttl),
                                wire.encode_name(target))]
    if query.qtype == wire.TYPE_CNAME:
        return LocalAnswer(wire.NOERROR, tuple(answers), records=records, network=found.network)
    qtype = query.qtype
    family = 4 if qtype == wire.TYPE_A else 6 if qtype == wire.TYPE_AAAA else 0
    seen = {query.name}
    for _ in range(MAX_CHAIN):
        if target in seen:
            break  # a loop of static CNAMEs: answered with what it went through once
        seen.add(target)
        holder, exists = find(snapshot, networks, target, family, private)
        if holder is None and exists:
            holder, _ = find(snapshot, networks, target, 0, private)
        if holder is None:
            return LocalAnswer(wire.NOERROR, tuple(answers), records=records,
                               network=found.network, chase=target)
        owner = wire.encode_name(target)
        rr_ttl = record_ttl(holder.names.records, ttl)
        records += holder.names.records
        following = _cname_of(holder.names)
        if following is not None:
            answers.append(wire.rr_named(owner, wire.TYPE_CNAME, rr_ttl,
                                         wire.encode_name(following)))
            target = following
            continue
        if family:
            addresses = holder.names.ipv4 if family == 4 else holder.names.ipv6
            answers.extend(wire.rr_named(owner, qtype, rr_ttl, wire.address_rdata(a))
                           for a in addresses)
        elif qtype in DATA_TYPES:
            answers.extend(wire.rr_named(owner, qtype, ttl if r.ttl is None else r.ttl, rdata)
                           for r in holder.names.records for rtype, rdata in r.data
                           if rtype == qtype)
        break
    return LocalAnswer(wire.NOERROR, tuple(answers), records=records, network=found.network)


def _host_answer(qtype: int, addresses: Sequence[str], ttl: int) -> LocalAnswer:
    """``host.docker.internal``: the gateway of the client's own network."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    chosen = v4 if qtype == wire.TYPE_A else v6 if qtype == wire.TYPE_AAAA else \
        v4 + v6 if qtype == wire.TYPE_ANY else []
    answers = tuple(wire.rr_to_qname(wire.TYPE_AAAA if ":" in a else wire.TYPE_A, ttl,
                                     wire.address_rdata(a)) for a in chosen)
    return LocalAnswer(wire.NOERROR, answers)


def answer_local(snapshot: Snapshot, networks: Sequence[str], query: wire.Query, ttl: int,
                 domain: str | None = None, private: str | None = None,
                 host: Sequence[str] = ()) -> LocalAnswer | None:
    """The registry's answer to ``query`` for a client on ``networks``; None: not ours.

    ``private`` is the client's address when it has names of its own (--add-host, --link);
    ``host`` what ``host.docker.internal`` answers it (empty: --no-host-names)."""
    if query.qclass != wire.CLASS_IN or not query.plain_labels:
        # Registry names are dotted text: a label holding a dot (``host1\\.lan``) names nothing
        # in it, however it reads once the labels are joined.
        return None
    name = query.name
    qtype = query.qtype
    if qtype == wire.TYPE_PTR:
        address = wire.reverse_pointer_address(query.labels)
        return _ptr_answer(snapshot, networks, address, ttl) if address else None
    if qtype == wire.TYPE_SRV:
        held, _ = find(snapshot, networks, name, 0, private)
        static = _data_answer(held, qtype, ttl) if held is not None else None
        if static is not None:
            return static
        srv = _srv_answer(snapshot, networks, name, domain, ttl, private)
        if srv is not None:
            return srv
    family = 4 if qtype == wire.TYPE_A else 6 if qtype == wire.TYPE_AAAA else 0
    candidates = [name]
    stripped = _strip_domain(name, domain)
    if stripped:
        candidates.insert(0, stripped)
    for candidate in candidates:
        found, exists = find(snapshot, networks, candidate, family, private)
        if found is not None and family:
            return _address_answer(found, family, ttl)
        if not exists:
            continue
        holder = found if found is not None else find(snapshot, networks, candidate, 0,
                                                      private)[0]
        if holder is not None:
            special = (_cname_answer(snapshot, networks, holder, query, ttl, private)
                       or (_data_answer(holder, qtype, ttl) if qtype in DATA_TYPES else None))
            if special is not None:
                return special
        if qtype == wire.TYPE_ANY and found is not None:
            v4 = _address_answer(found, 4, ttl)
            v6 = _address_answer(found, 6, ttl)
            return LocalAnswer(wire.NOERROR, v4.answers + v6.answers,
                               records=found.names.records, network=found.network)
        records = holder.names.records if holder is not None else ()
        network = holder.network if holder is not None else None
        return LocalAnswer(wire.NOERROR, (), records=records, network=network)
    if host and HOST_NAME in candidates:
        return _host_answer(qtype, host, ttl)
    return None
