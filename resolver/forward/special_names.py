"""Names no upstream should be asked about, answered here: special-use names, local reverse zones
and the CHAOS-class identity questions. Pure: a parsed query in, reply bytes (or None) out.

Special-use names (RFC 6761 ``localhost``, ``invalid``, ``test``; RFC 7686 ``onion``; RFC 8375
``home.arpa``; RFC 6762 3 ``local``) and the reverse zones of private and special addresses
(RFC 6303, RFC 1918, RFC 5737, RFC 4193) are answered as Unbound's default local zones answer
them, record for record: each zone has an SOA and an NS at its apex, a name below the apex is
NXDOMAIN with the SOA in the authority section (so RFC 2308 caches can keep it), another type
at an existing name is NODATA with the SOA. ``localhost`` and every name under it have the
addresses 127.0.0.1 and ::1 (Unbound's ``redirect`` zone); ``127.0.0.1`` and ``::1`` point back
to ``localhost.``. One deliberate difference: Unbound forwards ``local`` (mDNS's domain), dockdns
answers it NXDOMAIN, since no unicast upstream can know those names (RFC 6762 3).

Sent upstream these names leak what a network is called inside, and wait on servers that can
only say NXDOMAIN (with a dead upstream ``localhost`` would be SERVFAIL after seconds).
``--no-special-names`` forwards them all; a ``--forward-zone`` that covers a name always wins.

CHAOS class (``version.bind``, ``version.server``, ``id.server``, ``hostname.bind``, TXT or
ANY) is answered with dockdns's own version and identity, TTL 0, never forwarded (an upstream's
answer would tell any client what the upstream runs); hidden ones and every other CHAOS question
get REFUSED, as Unbound answers them.
"""

from __future__ import annotations

import importlib.metadata
import math
import socket
import struct
from dataclasses import dataclass

from resolver.answer.chain import Answer, ForwardedReply, Next, Request
from resolver.dns import wire
from resolver.forward.settings import ForwardSettings
from resolver.ops.stats import SOURCE_LOCAL

Labels = tuple[bytes, ...]

# Unbound's TTL for its default local zones, and the SOA it gives every one of them.
LOCAL_TTL = 10800
LOCALHOST = wire.encode_name("localhost")
SOA_RDATA = LOCALHOST + wire.encode_name("nobody.invalid") + struct.pack(
    "!IIIII", 1, 3600, 1200, 604800, 10800)
LOOPBACK_V4 = wire.address_rdata("127.0.0.1")
LOOPBACK_V6 = wire.address_rdata("::1")

CHAOS_VERSION = frozenset({"version.bind", "version.server"})
CHAOS_IDENTITY = frozenset({"id.server", "hostname.bind"})


def _version() -> str:
    try:
        return "dockdns " + importlib.metadata.version("dockdns")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "dockdns"


def _labels(name: str) -> Labels:
    return tuple(label.encode("ascii") for label in name.split("."))


def _reverse_v6(address: str, prefix_nibbles: int) -> str:
    nibbles = socket.inet_pton(socket.AF_INET6, address).hex()[:prefix_nibbles]
    return ".".join(reversed(nibbles)) + ".ip6.arpa"


# Unbound 1.17's default local zones (unbound.conf(5), "local-zone"), plus ``local``.
ZONES: frozenset[Labels] = frozenset(_labels(zone) for zone in (
    "localhost", "invalid", "test", "onion", "home.arpa", "local",
    "127.in-addr.arpa", "0.in-addr.arpa", "10.in-addr.arpa", "254.169.in-addr.arpa",
    *(f"{octet}.172.in-addr.arpa" for octet in range(16, 32)),
    "168.192.in-addr.arpa", "2.0.192.in-addr.arpa", "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa", "255.255.255.255.in-addr.arpa",
    _reverse_v6("::", 32), _reverse_v6("::1", 32),
    "d.f.ip6.arpa", "8.e.f.ip6.arpa", "9.e.f.ip6.arpa", "a.e.f.ip6.arpa", "b.e.f.ip6.arpa",
    _reverse_v6("2001:db8::", 8),
))
LOCALHOST_ZONE = _labels("localhost")
# Names that point back to localhost (Unbound's local-data for them).
LOOPBACK_PTR: frozenset[Labels] = frozenset({
    _labels("1.0.0.127.in-addr.arpa"), _labels(_reverse_v6("::1", 32))})


@dataclass(frozen=True, slots=True)
class SpecialSettings:
    enabled: bool = True  # --special-names
    identity: str = socket.gethostname()  # --identity (Unbound's default is the host name too)
    version: str = _version()
    hide_identity: bool = False
    hide_version: bool = False
    # The --forward-zone zones other than the root, lowered, as labels: they win over ours.
    forwarded: frozenset[Labels] = frozenset()

    @classmethod
    def from_config(cls, config: ForwardSettings) -> SpecialSettings:
        return cls(enabled=config.special_names,
                   identity=config.identity or socket.gethostname(),
                   hide_identity=config.hide_identity, hide_version=config.hide_version,
                   forwarded=frozenset(_labels(zone.zone) for zone in config.forward_zones
                                       if zone.zone))


def special_reply(query: wire.Query, settings: SpecialSettings) -> bytes | None:
    """The reply to ``query`` if it asks for a special name or CHAOS; None: ask upstream."""
    if query.qclass == wire.CLASS_CH:
        return _chaos(query, settings)
    if not settings.enabled or query.qclass != wire.CLASS_IN:
        return None
    lowered = tuple(label.lower() for label in query.labels)
    # Labels are compared as they are on the wire: ``x\.test`` (one label) is not under test.
    suffixes = [lowered[start:] for start in range(len(lowered))]
    if any(suffix in settings.forwarded for suffix in suffixes):
        return None
    zone = next((suffix for suffix in suffixes if suffix in ZONES), None)
    if zone is None:
        return None
    return _zone_answer(query, lowered, zone)


def _zone_answer(query: wire.Query, lowered: Labels, zone: Labels) -> bytes:
    qtype = query.qtype
    apex = lowered == zone
    if zone == LOCALHOST_ZONE and qtype in (wire.TYPE_A, wire.TYPE_AAAA):
        rdata = LOOPBACK_V4 if qtype == wire.TYPE_A else LOOPBACK_V6
        return _reply(query, wire.NOERROR, [wire.rr_to_qname(qtype, LOCAL_TTL, rdata)], [])
    if lowered in LOOPBACK_PTR and qtype == wire.TYPE_PTR:
        return _reply(query, wire.NOERROR,
                      [wire.rr_to_qname(wire.TYPE_PTR, LOCAL_TTL, LOCALHOST)], [])
    if apex and qtype == wire.TYPE_SOA:
        return _reply(query, wire.NOERROR,
                      [wire.rr_to_qname(wire.TYPE_SOA, LOCAL_TTL, SOA_RDATA)], [])
    if apex and qtype == wire.TYPE_NS:
        return _reply(query, wire.NOERROR,
                      [wire.rr_to_qname(wire.TYPE_NS, LOCAL_TTL, LOCALHOST)], [])
    # The SOA's owner is the zone apex, a suffix of the question name: a pointer into it.
    skipped = sum(len(label) + 1 for label in query.labels[: len(lowered) - len(zone)])
    owner = struct.pack("!H", 0xC000 | (wire.HEADER.size + skipped))
    soa = wire.rr_named(owner, wire.TYPE_SOA, LOCAL_TTL, SOA_RDATA)
    exists = apex or zone == LOCALHOST_ZONE or lowered in LOOPBACK_PTR
    return _reply(query, wire.NOERROR if exists else wire.NXDOMAIN, [], [soa])


def _chaos(query: wire.Query, settings: SpecialSettings) -> bytes:
    name = query.name if query.plain_labels else ""
    text: str | None = None
    if query.qtype in (wire.TYPE_TXT, wire.TYPE_ANY):
        if name in CHAOS_VERSION and not settings.hide_version:
            text = settings.version
        elif name in CHAOS_IDENTITY and not settings.hide_identity:
            text = settings.identity
    if text is None:
        return wire.error_reply(query, b"", wire.REFUSED)
    raw = text.encode("utf-8")[:255]
    record = (wire.POINTER_TO_QNAME + wire.RR_FIXED.pack(wire.TYPE_TXT, wire.CLASS_CH, 0,
                                                         len(raw) + 1) + bytes([len(raw)]) + raw)
    return wire.build_reply(query, wire.NOERROR, [record], wire.MAX_TCP_SIZE)


def _reply(query: wire.Query, rcode: int, answers: list[bytes], authority: list[bytes]) -> bytes:
    """An authoritative reply (AA, as Unbound's local zones give); always well under 512 bytes:
    a question of at most 259 bytes and one short record."""
    opt = wire.opt_record(query) if query.edns else b""
    header = wire.HEADER.pack(query.id, wire.reply_flags(query.flags, rcode, authoritative=True),
                              1, len(answers), len(authority), 1 if opt else 0)
    return b"".join([header, query.question, *answers, *authority, opt])


class SpecialNamesStage:
    """The first stage of the forward chain: special-use names, local zones and CHAOS are
    answered here and never reach the cache or an upstream."""

    name = "special-names"

    def __init__(self, settings: ForwardSettings) -> None:
        self.settings = SpecialSettings.from_config(settings)

    def reconfigure(self, settings: ForwardSettings) -> None:
        self.settings = SpecialSettings.from_config(settings)

    def serve(self, request: Request, next: Next) -> Answer:
        reply = special_reply(request.query, self.settings)
        if reply is None:
            return next(request)
        request.note(self.name, "a special-use name, local zone or CHAOS question: answered "
                                "here, never forwarded")
        # Fixed until a reload, which makes new memos (resolver/daemon/lifecycle.py apply).
        return ForwardedReply(reply, reply[3] & 0xF, SOURCE_LOCAL, memo_until=math.inf)
