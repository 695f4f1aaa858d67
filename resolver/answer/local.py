"""Answers from the registry, with Docker's embedded DNS as the reference. Pure: no I/O.

How Docker's resolver (libnetwork ``sandbox.ResolveName``) finds a name, reproduced here:
for ``a.b.c`` it tries ``a.b.c`` on every network of the client, then ``a.b`` on network ``c``,
then ``a`` on network ``b.c``; the client's networks are tried in order (Swarm-scoped first, then
by name) and the first network that holds the name answers with all of its addresses there. A name
that exists but has no address of the asked family gets NOERROR with no answer, as does a known
name asked for another type (MX, TXT, ...). Names no network knows fall through to hosts files,
then to the forwarder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from discovery.registry.model import NameSet, Record, Snapshot
from resolver.dns import wire


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


def find(snapshot: Snapshot, networks: Sequence[str], name: str, family: int) -> tuple[
    Found | None, bool
]:
    """Find ``name`` as the client on ``networks`` sees it.

    Returns the first holder that has addresses of ``family`` (4 or 6; 0 for any), and whether the
    name exists at all (so that a family miss becomes NOERROR/empty rather than a forward).
    """
    exists = False
    for request, on_network in _splits(name):
        for network in networks:
            if on_network is not None and on_network != network.lower():
                continue
            names = snapshot.by_network.get(network)
            found = names.get(request) if names is not None else None
            if found is None:
                continue
            if family == 0 or (found.ipv4 if family == 4 else found.ipv6):
                return Found(found, network), True
            exists = True
        if exists:
            # Docker stops at the first split that knows the name (its ipv6Miss rule).
            return None, True
    found = snapshot.global_names.get(name)
    if found is not None:
        if family == 0 or (found.ipv4 if family == 4 else found.ipv6):
            return Found(found, None), True
        return None, True
    return None, False


def _strip_domain(name: str, domain: str | None) -> str | None:
    if domain and name.endswith("." + domain):
        return name[: -len(domain) - 1]
    return None


def _address_answer(found: Found, family: int, ttl: int) -> LocalAnswer:
    if family == 4:
        rtype, addresses = wire.TYPE_A, found.names.ipv4
    else:
        rtype, addresses = wire.TYPE_AAAA, found.names.ipv6
    answers = tuple(wire.rr_to_qname(rtype, ttl, wire.address_rdata(a)) for a in addresses)
    return LocalAnswer(wire.NOERROR, answers, shuffle=len(answers) > 1,
                       records=found.names.records, network=found.network)


def _ptr_answer(snapshot: Snapshot, networks: Sequence[str], address: str,
                ttl: int) -> LocalAnswer | None:
    entries = snapshot.ptr.get(address)
    if not entries:
        return None
    by_network = dict(entries[::-1])  # the first entry for a network wins
    for network in (*networks, None):
        target = by_network.get(network)
        if target is not None:
            rdata = wire.encode_name(target)
            return LocalAnswer(wire.NOERROR, (wire.rr_to_qname(wire.TYPE_PTR, ttl, rdata),),
                               network=network)
    return None


def _srv_answer(snapshot: Snapshot, networks: Sequence[str], name: str, domain: str | None,
                ttl: int) -> LocalAnswer | None:
    """``_<port>._<proto>.<name>``: the holders of ``name`` that expose that port."""
    parts = name.split(".", 2)
    if len(parts) < 3:
        return None
    port_label, proto_label, rest = parts
    if not (port_label.startswith("_") and proto_label in ("_tcp", "_udp") and rest):
        return None
    try:
        port = int(port_label[1:])
    except ValueError:
        return None
    target_name = _strip_domain(rest, domain) or rest
    found, exists = find(snapshot, networks, target_name, 0)
    if found is None:
        return LocalAnswer(wire.NOERROR, ()) if exists else None
    proto = proto_label[1:]
    answers: list[bytes] = []
    additional: list[bytes] = []
    for record in found.names.records:
        if (proto, port) not in record.srv:
            continue
        target = record.srv_target or record.ptr or target_name
        answers.append(wire.rr_to_qname(wire.TYPE_SRV, ttl, wire.srv_rdata(0, 0, port, target)))
        owner = wire.encode_name(target)
        additional.extend(wire.rr_named(owner, wire.TYPE_A, ttl, wire.address_rdata(a))
                          for a in record.ipv4)
        additional.extend(wire.rr_named(owner, wire.TYPE_AAAA, ttl, wire.address_rdata(a))
                          for a in record.ipv6)
    return LocalAnswer(wire.NOERROR, tuple(answers), tuple(additional),
                       shuffle=len(answers) > 1, records=found.names.records,
                       network=found.network)


def answer_local(snapshot: Snapshot, networks: Sequence[str], query: wire.Query, ttl: int,
                 domain: str | None = None) -> LocalAnswer | None:
    """The registry's answer to ``query`` for a client on ``networks``; None: not ours."""
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
        srv = _srv_answer(snapshot, networks, name, domain, ttl)
        if srv is not None:
            return srv
    family = 4 if qtype == wire.TYPE_A else 6 if qtype == wire.TYPE_AAAA else 0
    candidates = [name]
    stripped = _strip_domain(name, domain)
    if stripped:
        candidates.insert(0, stripped)
    for candidate in candidates:
        found, exists = find(snapshot, networks, candidate, family)
        if found is not None and family:
            return _address_answer(found, family, ttl)
        if qtype == wire.TYPE_ANY and found is not None:
            v4 = _address_answer(found, 4, ttl)
            v6 = _address_answer(found, 6, ttl)
            return LocalAnswer(wire.NOERROR, v4.answers + v6.answers,
                               records=found.names.records, network=found.network)
        if exists:
            records = found.names.records if found is not None else ()
            network = found.network if found is not None else None
            return LocalAnswer(wire.NOERROR, (), records=records, network=network)
    return None
