"""``dockdns check`` and ``dockdns registry``: the registry as ``serve`` would build it, explained.

No daemon is needed: the sources are made from the same config (``resolver/daemon/sources.py``) and
loaded once, and the question is answered by the same pure code the daemon runs
(``resolver/answer/local.py`` and ``resolver/answer/views.py``). A name the registry does not
hold is asked of
the configured upstreams, once, and shown as forwarded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dnslib import QTYPE, DNSRecord

from discovery.registry.model import NameSet, Record, Snapshot
from discovery.registry.registry import Registry
from resolver.answer.local import HOST_NAME, answer_local
from resolver.answer.views import View, ViewTable
from resolver.config.settings import Config, HostPort
from resolver.daemon.sources import LoadError, build_sources
from resolver.dns import wire
from resolver.ops.metrics import rcode_name

log = logging.getLogger("dockdns.explain")

# How long `check` waits for one upstream before trying the next.
UPSTREAM_TIMEOUT = 3.0


class ExplainError(Exception):
    """The question itself cannot be asked (bad name or type); one line for the operator."""


async def load_registry(config: Config) -> tuple[Registry, list[str]]:
    """Every source the config enables, loaded once and all at once (so one bound covers them
    all), and what could not be loaded: one line per engine, however many of its sources failed.
    A source that fails is left out, so that the rest can still be explained."""
    registry = Registry()
    sources = build_sources(config, registry)
    # The sources' own warnings speak of retrying, which a one-shot load does not do; what failed
    # is reported once below instead.
    quiet = logging.getLogger("dockdns")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        results = await asyncio.gather(*(source.load() for source in sources),
                                       return_exceptions=True)
    finally:
        quiet.setLevel(level)
    problems: dict[str, str] = {}
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, LoadError):
            problems.setdefault(result.what, str(result))
        elif isinstance(result, BaseException):  # a bug: still one line, naming the source
            problems.setdefault(source.name, f"{source.name} could not be loaded: "
                                f"{str(result) or type(result).__name__}")
    return registry, list(problems.values())


def build_registry(config: Config) -> tuple[Snapshot, list[str]]:
    """The registry ``serve`` would start with, and one line per source that could not load."""
    registry, problems = asyncio.run(load_registry(config))
    return registry.snapshot, problems


def choose_upstreams(config: Config, name: str) -> list[HostPort]:
    """The upstreams a name is forwarded to. The forwarder's zone rules replace this when merged
    (``UPSTREAM_CHOOSER``)."""
    return list(config.upstreams)


UPSTREAM_CHOOSER: Callable[[Config, str], list[HostPort]] = choose_upstreams


@dataclass
class Explanation:
    name: str
    qtype: str
    client: str
    view: View
    client_note: str
    rcode: str = "NOERROR"
    answers: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    def lines(self, show_client: bool) -> list[str]:
        out = [f"{self.name} {self.qtype} asked by {self.client}: {self.rcode}"]
        if show_client:
            out.append(f"client: {self.client_note}")
        out.extend(f"  {answer}" for answer in self.answers)
        if not self.answers:
            out.append("  (no records)")
        out.extend(f"from: {origin}" for origin in self.origins)
        return out


def make_query(name: str, qtype: str) -> tuple[wire.Query, bytes]:
    code = QTYPE.reverse.get(qtype.upper())
    if code is None:
        if qtype.upper().startswith("TYPE") and qtype[4:].isdigit():
            code = int(qtype[4:])
        else:
            raise ExplainError(f"unknown record type {qtype!r}")
    try:
        packet = DNSRecord.question(name, QTYPE.forward.get(code, code)).pack()
        return wire.parse_query(bytes(packet)), bytes(packet)
    except Exception as err:  # dnslib raises several kinds for a bad name
        raise ExplainError(f"cannot ask for {name!r}: {err}") from None


def describe_client(snapshot: Snapshot, views: ViewTable, client: str, view: View) -> str:
    if view.refused:
        return "may not ask: not loopback, not on a Docker network, not in --allow (REFUSED)"
    if views.sidecar_view is view and views.as_container:
        who = f"loopback in sidecar mode: sees what container {views.as_container} sees"
    elif client in snapshot.clients:
        entry = snapshot.clients[client]
        who = f"container {entry.container or '(unnamed)'}, attached to {', '.join(entry.networks)}"
    else:
        who = "not a container: sees every user-defined network"
    seen = (f"networks {', '.join(view.networks)} (in lookup order)" if view.networks
            else "no network (hosts-file names only)")
    forward = "other names are forwarded" if view.forward else \
        "other names are not forwarded (only on internal networks)"
    return f"{who}; {seen}; {forward}"


SOURCE_NAMES = {"hosts": "hosts file"}


def record_origin(record: Record) -> str:
    where = f"network {record.network}" if record.network else "every network"
    kind = SOURCE_NAMES.get(record.source, record.source)
    # The Docker and Swarm sources' origins already start with what they are
    # ("docker:unix:///var/run/docker.sock container web1 (0123456789ab)").
    text = record.origin if record.origin.startswith(kind) else f"{kind} {record.origin}".strip()
    line = _hosts_line(record.origin) if record.source == "hosts" else None
    if line:
        text += f' "{line}"'
    return f"{text}, visible on {where}"


def _hosts_line(origin: str) -> str | None:
    """The text of ``PATH:LINE``, to show the very line a hosts-file answer came from."""
    path, _, number = origin.rpartition(":")
    if not number.isdigit():
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for index, line in enumerate(handle, start=1):
                if index == int(number):
                    return line.strip()
    except OSError:
        return None
    return None


def _rr_lines(reply: bytes) -> list[str]:
    parsed = DNSRecord.parse(reply)
    return [rr.toZone() for rr in (*parsed.rr, *parsed.ar)]


def ask_upstream(upstream: HostPort, packet: bytes,
                 timeout: float = UPSTREAM_TIMEOUT) -> bytes:
    """One query over UDP, again over TCP when the reply is truncated. Raises OSError."""
    family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((upstream.host, upstream.port))
        sock.send(packet)
        while True:
            reply = sock.recv(65535)
            if reply[:2] == packet[:2]:
                break
    if not int.from_bytes(reply[2:4], "big") & wire.TC:
        return reply
    with socket.create_connection((upstream.host, upstream.port), timeout) as stream:
        stream.sendall(len(packet).to_bytes(2, "big") + packet)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = stream.recv(65535)
            if not chunk:
                raise OSError("the upstream closed the TCP connection")
            data += chunk
        return data[2 : 2 + int.from_bytes(data[:2], "big")]


def explain(config: Config, snapshot: Snapshot, name: str, qtype: str = "A",
            client: str = "127.0.0.1") -> Explanation:
    query, packet = make_query(name, qtype)
    views = ViewTable(snapshot, config.default_bridge_names, allow=config.allow,
                      as_container=config.as_container, host_names=config.host_names)
    view = views.for_client(client)
    result = Explanation(name, qtype.upper(), client, view,
                         describe_client(snapshot, views, client, view))
    if view.refused:  # as the handler: checked before anything is looked up
        result.rcode = "REFUSED"
        result.origins = ["this client may not ask: not loopback, not on a Docker network, not "
                          "in --allow"]
        return result
    local = answer_local(snapshot, view.networks, query, config.ttl, config.domain,
                         view.private, view.host)
    if local is not None:
        reply = wire.build_reply(query, local.rcode, list(local.answers), wire.MAX_TCP_SIZE,
                                 list(local.additional))
        result.rcode = rcode_name(local.rcode)
        result.answers = _rr_lines(reply)
        records = local.records or _ptr_records(snapshot, query, local.network)
        result.origins = [record_origin(record) for record in records]
        if local.network:
            result.origins.insert(0, f"found on network {local.network}")
        if not records and view.host and query.name.endswith(HOST_NAME):
            result.origins = [f"{HOST_NAME}: the gateway of this client's own network "
                              "(--host-names)"]
        if local.chase is not None:
            _chase(config, result, local.chase, qtype)
        return result
    if not view.forward:
        result.rcode = "SERVFAIL"
        result.origins = ["not in the registry, and this client is only on internal networks: "
                          "not forwarded (as Docker does)"]
    else:
        _forward(config, result, name, packet)
    hidden = _hidden_network(config, snapshot, view, query)
    if hidden is not None:
        result.origins.insert(0, f"{name} is on network {hidden}, which this client does not "
                                 f"see: not answered from the registry")
    return result


def _chase(config: Config, result: Explanation, target: str, qtype: str) -> None:
    """The rest of a static CNAME chain, asked upstream as the daemon's forwarder would."""
    _, packet = make_query(target, qtype)
    rest = Explanation(target, qtype, result.client, result.view, result.client_note)
    _forward(config, rest, target, packet)
    result.rcode = rest.rcode
    result.answers += [line for line in rest.answers if not line.startswith(result.name)]
    result.origins.append(f"CNAME target {target} is not in the registry: chased through the "
                          "forwarder")
    result.origins += rest.origins


def _hidden_network(config: Config, snapshot: Snapshot, view: View,
                    query: wire.Query) -> str | None:
    """The network holding the name among those the client does not see (another network, or
    the default bridge without --default-bridge-names), found by the same answer logic."""
    others = [network for network in snapshot.by_network if network not in view.networks]
    if not others:
        return None
    found = answer_local(snapshot, others, query, config.ttl, config.domain)
    return found.network if found is not None else None


def _forward(config: Config, result: Explanation, name: str, packet: bytes) -> None:
    upstreams = UPSTREAM_CHOOSER(config, name.rstrip(".").lower())
    if not upstreams:
        result.rcode = "SERVFAIL"
        result.origins = ["not in the registry; would be forwarded, but no upstream is set"]
        return
    problems: list[str] = []
    for upstream in upstreams:
        try:
            reply = ask_upstream(upstream, packet)
        except OSError as err:
            problems.append(f"{upstream}: {err.strerror or err or 'no reply'}")
            continue
        result.rcode = rcode_name(int.from_bytes(reply[2:4], "big") & 0xF)
        result.answers = _rr_lines(reply)
        result.origins = [f"forwarded to {upstream} (not in the registry)",
                          *(f"no answer from {problem}" for problem in problems)]
        return
    result.rcode = "SERVFAIL"
    result.origins = ["not in the registry; forwarded, but no upstream answered: "
                      + "; ".join(problems)]


def _ptr_records(snapshot: Snapshot, query: wire.Query, network: str | None) -> list[Record]:
    address = wire.reverse_pointer_address(query.labels) if query.qtype == wire.TYPE_PTR else None
    if address is None:
        return []
    return [r for r in snapshot.records
            if r.network == network and r.ptr and address in r.ipv4 + r.ipv6]


@dataclass(frozen=True, slots=True)
class Entry:
    """One name on one network (None: every network), with the records that hold it."""

    name: str
    network: str | None
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    records: tuple[Record, ...]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "network": self.network, "ipv4": list(self.ipv4),
                "ipv6": list(self.ipv6),
                "records": [{"origin": r.origin, "source": r.source, "ipv4": list(r.ipv4),
                             "ipv6": list(r.ipv6), "srv": [f"{n}/{p}" for p, n in r.srv]}
                            for r in self.records]}


def registry_entries(snapshot: Snapshot, host_names: bool = False) -> list[Entry]:
    """Every (name, network) in the registry, sorted by name; with ``host_names``,
    host.docker.internal on every network that has a gateway."""
    tables: list[tuple[str | None, Mapping[str, NameSet]]] = [
        *snapshot.by_network.items(), (None, snapshot.global_names)]
    wild: list[tuple[str | None, Mapping[str, NameSet]]] = [
        *snapshot.wild_by_network.items(), (None, snapshot.global_wild)]
    entries = [Entry(name, network, name_set.ipv4, name_set.ipv6, name_set.records)
               for network, names in tables for name, name_set in names.items()]
    entries += [Entry(f"*.{suffix}", network, name_set.ipv4, name_set.ipv6, name_set.records)
                for network, names in wild for suffix, name_set in names.items()]
    # Names one client alone sees (--add-host, --link): listed once, with that client.
    seen: set[tuple[str, int]] = set()
    for client, names in snapshot.private.items():
        for name, name_set in names.items():
            if (name, id(name_set)) in seen:
                continue
            seen.add((name, id(name_set)))
            entries.append(Entry(name, f"client {client}", name_set.ipv4, name_set.ipv6,
                                 name_set.records))
    # Static PTR records have no name of their own: listed under their reverse name.
    for address, ptrs in snapshot.ptr.items():
        for network, target, _ in ptrs:
            static = [r for r in snapshot.records
                      if r.source == "static" and r.ptr == target and address in r.ipv4 + r.ipv6]
            if network is None and static:
                entries.append(Entry(ipaddress.ip_address(address).reverse_pointer, None, (), (),
                                     tuple(static)))
    if host_names:
        entries += [Entry(HOST_NAME, network.name,
                          tuple(a for a in network.gateways if ":" not in a),
                          tuple(a for a in network.gateways if ":" in a), ())
                    for network in snapshot.networks.values() if network.gateways]
    entries.sort(key=lambda e: (e.name, e.network or ""))
    return entries


def registry_text(snapshot: Snapshot, as_json: bool, host_names: bool = False) -> str:
    entries = registry_entries(snapshot, host_names)
    if as_json:
        return json.dumps({"generation": snapshot.generation,
                           "names": [entry.to_json() for entry in entries]}, indent=2)
    lines = []
    for entry in entries:
        network = entry.network or "(every network)"
        addresses = ", ".join(entry.ipv4 + entry.ipv6) or "(no address)"
        origins = ", ".join(record.origin or record.source for record in entry.records) or \
            ("the network's gateway (--host-names)" if entry.name == HOST_NAME else "")
        lines.append(f"{entry.name}\t{network}\t{addresses}\t{origins}")
    lines.append(f"{len(entries)} names")
    return "\n".join(lines)
