"""``dockdns check`` and ``dockdns registry``: the registry as ``serve`` would build it, explained.

No daemon is needed: the sources are made from the same config (resolver/daemon/sources.py) and
loaded once, and the question is answered by the very handler and forward chain ``serve`` runs
(resolver/daemon/build.py ``answering``), with a trace that each step writes its decision to. A
name the registry does not hold goes to the upstreams ``serve`` would ask (--upstream, the zones,
resolv.conf), once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from dnslib import EDNS0, QTYPE, DNSRecord

from discovery.registry.model import NameSet, Record, Snapshot
from discovery.registry.registry import Registry
from discovery.registry.source import LoadError
from resolver.answer.chain import Trace, settled
from resolver.answer.local import HOST_NAME, answer_local
from resolver.answer.views import View, ViewTable
from resolver.config import slices
from resolver.config.settings import Config
from resolver.daemon.build import answering
from resolver.daemon.sources import build_sources
from resolver.dns import wire
from resolver.dns.codes import qtype_code, rcode_name

log = logging.getLogger("dockdns.explain")

class ExplainError(Exception):
    """The question itself cannot be asked (bad name or type); one line for the operator."""


async def load_registry(config: Config) -> tuple[Registry, list[str]]:
    """Every source the config enables, loaded once and all at once (so one bound covers them
    all), and what could not be loaded: one line per engine, however many of its sources failed.
    A source that fails is left out, so that the rest can still be explained."""
    registry = Registry()
    sources = build_sources(slices.discovery_settings(config), registry)
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
    """The question as a client with EDNS (4096 bytes) asks it, so a large answer fits."""
    code = qtype_code(qtype)
    if code is None:
        raise ExplainError(f"unknown record type {qtype!r}")
    try:
        question = DNSRecord.question(name, QTYPE.forward.get(code, code))
        question.add_ar(EDNS0(udp_len=wire.OUR_UDP_SIZE))
        packet = bytes(question.pack())
        return wire.parse_query(packet), packet
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
    return [rr.toZone() for rr in (*parsed.rr, *parsed.ar) if rr.rtype != wire.TYPE_OPT]


def explain(config: Config, snapshot: Snapshot, name: str, qtype: str = "A",
            client: str = "127.0.0.1") -> Explanation:
    query, packet = make_query(name, qtype)
    return asyncio.run(_explain(config, snapshot, query, packet, name, qtype, client))


async def _explain(config: Config, snapshot: Snapshot, query: wire.Query, packet: bytes,
                   name: str, qtype: str, client: str) -> Explanation:
    registry, forwarder, handler = answering(config)
    registry.snapshot = snapshot
    handler.on_snapshot(snapshot)
    forwarder.start()
    views = handler.views
    view = views.for_client(client)
    result = Explanation(name, qtype.upper(), client, view,
                         describe_client(snapshot, views, client, view))
    trace = Trace()
    try:
        reply = await settled(handler.answer_now(packet, client, False, trace))
    finally:
        await forwarder.close()
    if reply is None:
        raise ExplainError(f"cannot ask for {name!r}: the query would be dropped")
    result.rcode = rcode_name(int.from_bytes(reply[2:4], "big") & 0xF)
    result.answers = _rr_lines(reply)
    local = trace.local
    if view.refused:
        result.origins = ["this client may not ask: not loopback, not on a Docker network, not "
                          "in --allow"]
    elif local is not None:
        records = local.records or _ptr_records(snapshot, query, local.network)
        result.origins = [record_origin(record) for record in records]
        if local.network:
            result.origins.insert(0, f"found on network {local.network}")
        if not records and view.host and query.name.endswith(HOST_NAME):
            result.origins = [f"{HOST_NAME}: the gateway of this client's own network "
                              "(--host-names)"]
        if local.chase is not None:
            result.origins.append(f"CNAME target {local.chase} is not in the registry: chased "
                                  "through the forwarder")
            result.origins += _forward_origins(trace, forwarder.requests, view.forward)
    else:
        result.origins = _forward_origins(trace, forwarder.requests, view.forward)
        hidden = _hidden_network(config, snapshot, view, query)
        if hidden is not None:
            result.origins.insert(0, f"{name} is on network {hidden}, which this client does "
                                     f"not see: not answered from the registry")
    return result


def _forward_origins(trace: Trace, requests: Mapping[tuple[str, str], int],
                     forward: bool) -> list[str]:
    """What the forward chain decided, from its trace and the upstream pool's counters (the
    forwarder was made for this one question, so every request counted is this question's)."""
    if not forward:
        return ["not in the registry, and this client is only on internal networks: not "
                "forwarded (as Docker does)"]
    stages = dict(trace.steps)
    last = trace.steps[-1][0] if trace.steps else ""
    if last not in ("forward", "cache", "registry"):
        # A stage in front of the forward stage answered (private-reverse, ...).
        return [f"not in the registry; {last}: {trace.steps[-1][1]}"]
    decision = stages.get("forward", "")
    if decision.startswith("no upstream server"):
        return ["not in the registry; would be forwarded, but no upstream is set (--upstream, "
                "--forward-zone or the nameservers of --resolv-conf)"]
    # Counted per (upstream, outcome); REFUSED and SERVFAIL are answers too (the upstream's word).
    answered = list(dict.fromkeys(upstream for (upstream, outcome) in requests
                                  if outcome in ("ok", "refused", "servfail")))
    failed = [f"{upstream}: {outcome}" for (upstream, outcome) in requests
              if outcome not in ("ok", "refused", "servfail")]
    if not answered:
        return ["not in the registry; forwarded, but no upstream answered: "
                + "; ".join(failed or ["(none asked)"])]
    ok = [upstream for (upstream, outcome) in requests if outcome == "ok"]
    lines = [f"forwarded to {ok[0] if ok else answered[-1]} (not in the registry)"]
    lines.extend(f"no answer from {problem}" for problem in failed)
    return lines


def _hidden_network(config: Config, snapshot: Snapshot, view: View,
                    query: wire.Query) -> str | None:
    """The network holding the name among those the client does not see (another network, or
    the default bridge without --default-bridge-names), found by the same answer logic."""
    others = [network for network in snapshot.by_network if network not in view.networks]
    if not others:
        return None
    found = answer_local(snapshot, others, query, config.ttl, config.domain)
    return found.network if found is not None else None


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
