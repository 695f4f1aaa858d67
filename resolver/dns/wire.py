"""DNS wire format for the server side: parse one incoming query, build replies, fit them to size.

Everything here is pure (bytes in, bytes out) so the same code serves UDP, TCP, the tests and the
fuzzer. Parsing is written by hand rather than with dnslib because it must be exact about what the
client sent (the question is echoed byte for byte, case included) and cheap on the miss path;
dnslib is used where whole messages from upstream are handled (see ``resolver.forward.cache``).

Bad input is sorted in tiers, each in exactly one place (``parse_query``):
  * under 12 bytes, or the QR bit set        -> ``DropQuery``: nothing is sent (no reflection loops)
  * an opcode other than QUERY               -> NOTIMP
  * QDCOUNT != 1, or anything that won't parse -> FORMERR (with the client's OPT, once it was read)
  * a zone transfer (AXFR, IXFR)             -> REFUSED, for every name (as Unbound does)
  * a meta type as the question (OPT, TSIG, TKEY, MAILA, MAILB, 128-248)
                                             -> FORMERR (RFC 6895 3.1, as Unbound does)
  * an EDNS version other than 0             -> BADVERS (RFC 6891 6.1.3)

Bytes after the last record are ignored, as Unbound and dnsmasq ignore them: some middleboxes pad
queries, and refusing them would only make those clients fail.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
QUESTION_TAIL = struct.Struct("!HH")  # a question's type and class
SRV_FIXED = struct.Struct("!HHH")

# Header flag bits.
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
OPCODE_MASK = 0x7800

# Response codes.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16  # extended: upper 8 bits go into the OPT record

# Record types and classes dockdns answers itself.
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_TKEY = 249
TYPE_TSIG = 250
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_MAILB = 253
TYPE_MAILA = 254
TYPE_ANY = 255
CLASS_IN = 1
CLASS_CH = 3

# Zone transfers are multi-message TCP streams between servers; a stub resolver never serves them.
ZONE_TRANSFER_TYPES = frozenset({TYPE_AXFR, TYPE_IXFR})
# RFC 6895 3.1: types that only make sense inside a message, never as the thing asked for.
# 128-248 is the meta range reserved for future ones (Unbound refuses the same set).
META_QUESTION_TYPES = frozenset({TYPE_OPT, TYPE_TKEY, TYPE_TSIG, TYPE_MAILB, TYPE_MAILA,
                                 *range(128, 249)})

# Plain DNS over UDP without EDNS may not exceed 512 bytes (RFC 1035 4.2.1).
MIN_UDP_SIZE = 512
# The largest UDP payload honoured, whatever a client advertises: larger answers fragment, and
# fragments are lost or spoofable (DNS flag day 2020 recommends ~1232; 4096 is the common cap).
MAX_UDP_SIZE = 4096
# What dockdns advertises in its own OPT record.
OUR_UDP_SIZE = 4096
# A TCP message is framed with a 16-bit length.
MAX_TCP_SIZE = 65535
# RFC 1035 2.3.4: a name is at most 255 octets on the wire, a label at most 63.
MAX_NAME_WIRE = 255
MAX_LABEL = 63

# A compression pointer to the question name, which always starts right after the 12-byte header.
POINTER_TO_QNAME = b"\xc0\x0c"


class DropQuery(Exception):
    """The packet gets no reply at all."""


class QueryError(Exception):
    """The query is answered with an error rcode; ``query`` holds what could be parsed of it."""

    def __init__(self, rcode: int, reason: str, query: Query | None = None) -> None:
        super().__init__(reason)
        self.rcode = rcode
        self.query = query


@dataclass(slots=True)
class Query:
    """One parsed query: what a reply needs to echo and what the answer logic needs to decide.
    Never changed once made. (A slotted dataclass, a C struct in the compiled build: one is
    made for every query the memo cannot answer, a named tuple's constructor is a Python
    function even there, and a frozen dataclass's ``__init__`` costs an
    ``object.__setattr__`` per field, 3 µs of a miss.)"""

    id: int
    flags: int
    question: bytes  # the question section exactly as asked (name, type, class)
    labels: tuple[bytes, ...]  # the name's labels exactly as asked
    qtype: int
    qclass: int
    edns: bool  # the client sent an OPT record
    edns_version: int
    dnssec_ok: bool
    udp_payload: int  # the size the client's OPT advertised (0 without EDNS)
    edns_options: bool  # the OPT record carried options (cookies, padding, ...)
    extra_records: bool  # answer/authority/additional records other than one OPT
    # The name in lower case, without the trailing dot: the key for every lookup. (Fields made
    # once at parse, not properties: every query the memo misses reads them several times.)
    name: str
    # Whether no label holds a dot: only then can ``name`` stand for the wire name
    # (``host1\.lan``, one label, must not be taken for ``host1.lan``, two).
    plain_labels: bool

    # Written out, not generated: the dataclass decorator's ``__init__`` is interpreted Python
    # even in the compiled build (py-spy and perf: one per miss of each such class), and it
    # leaves one defined in the class alone. Keep it in step with the fields.
    def __init__(self, id: int, flags: int, question: bytes, labels: tuple[bytes, ...],
                 qtype: int, qclass: int, edns: bool, edns_version: int, dnssec_ok: bool,
                 udp_payload: int, edns_options: bool, extra_records: bool, name: str,
                 plain_labels: bool) -> None:
        self.id = id
        self.flags = flags
        self.question = question
        self.labels = labels
        self.qtype = qtype
        self.qclass = qclass
        self.edns = edns
        self.edns_version = edns_version
        self.dnssec_ok = dnssec_ok
        self.udp_payload = udp_payload
        self.edns_options = edns_options
        self.extra_records = extra_records
        self.name = name
        self.plain_labels = plain_labels

    @property
    def name_as_asked(self) -> str:
        return b".".join(self.labels).decode("latin-1")

    @property
    def presentation(self) -> str:
        """The name as asked, escaped for logs (RFC 1035 5.1, as dig and Unbound print it)."""
        return presentation(self.labels)

    @property
    def max_udp_size(self) -> int:
        """The largest UDP reply this client can take (RFC 6891 6.2.5, clamped to our cap)."""
        if not self.edns:
            return MIN_UDP_SIZE
        return max(MIN_UDP_SIZE, min(self.udp_payload, MAX_UDP_SIZE))

    @property
    def memoizable(self) -> bool:
        """Whether the reply depends on nothing but the bytes after the ID.

        Queries with EDNS options (a client cookie differs on every query) would only fill the
        memo with entries that are never hit again, so they take the build path each time.
        """
        return not self.edns_options and not self.extra_records


def read_name(packet: bytes, offset: int, allow_pointers: bool) -> tuple[tuple[bytes, ...], int]:
    """Read a domain name at ``offset``; return its labels and the offset just after it."""
    labels: list[bytes] = []
    wire_length = 1
    end = -1  # where parsing resumes, once a pointer was followed
    jumps = 0
    while True:
        if offset >= len(packet):
            raise ValueError("name runs past the end of the packet")
        length = packet[offset]
        if length == 0:
            offset += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if not allow_pointers:
                raise ValueError("compression pointer in the question")
            if offset + 1 >= len(packet):
                raise ValueError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | packet[offset + 1]
            # Only backward pointers are legal; a bound on jumps stops loops cheaply.
            jumps += 1
            if target >= offset or jumps > 64:
                raise ValueError("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = target
            continue
        if kind != 0:
            raise ValueError("unknown label type")
        label = packet[offset + 1 : offset + 1 + length]
        if len(label) != length:
            raise ValueError("label runs past the end of the packet")
        wire_length += length + 1
        if wire_length > MAX_NAME_WIRE:
            raise ValueError("name longer than 255 octets")
        labels.append(label)
        offset += length + 1
    return tuple(labels), (end if end >= 0 else offset)


def _name_of(labels: tuple[bytes, ...]) -> tuple[str, bool]:
    """``Query.name`` and ``Query.plain_labels`` for ``labels``."""
    joined = b".".join(labels)
    return joined.lower().decode("latin-1"), joined.count(b".") == max(len(labels) - 1, 0)


def parse_query(packet: bytes) -> Query:
    """Parse an incoming query or raise ``DropQuery`` / ``QueryError`` (with the rcode to send)."""
    if len(packet) < HEADER.size:
        raise DropQuery("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(packet)
    if flags & QR:
        raise DropQuery("QR bit set: a response, not a query")
    opcode = (flags & OPCODE_MASK) >> 11

    # The question, read with no Query made yet: the common case makes one Query, at the end.
    try:
        if qdcount < 1:
            raise ValueError("no question")
        labels, offset = read_name(packet, HEADER.size, allow_pointers=False)
        if offset + 4 > len(packet):
            raise ValueError("question runs past the end of the packet")
        qtype, qclass = QUESTION_TAIL.unpack_from(packet, offset)
        offset += 4
    except ValueError as err:
        if opcode != 0:
            raise QueryError(NOTIMP, f"opcode {opcode}") from err
        if qdcount < 1:
            raise QueryError(FORMERR, f"QDCOUNT is {qdcount}, not 1") from err
        raise QueryError(FORMERR, str(err)) from err
    question = packet[HEADER.size : offset]
    if opcode != 0 or qdcount != 1:
        partial = Query(qid, flags, question, labels, qtype, qclass,
                        False, 0, False, 0, False, False, *_name_of(labels))
        if opcode != 0:
            raise QueryError(NOTIMP, f"opcode {opcode}", partial if qdcount == 1 else None)
        raise QueryError(FORMERR, f"QDCOUNT is {qdcount}, not 1")

    edns = False
    version = 0
    dnssec_ok = False
    payload = 0
    options = False
    records = ancount + nscount + arcount
    if records:
        try:
            for index in range(records):
                _, offset = read_name(packet, offset, allow_pointers=True)
                if offset + RR_FIXED.size > len(packet):
                    raise ValueError("record runs past the end of the packet")
                rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(packet, offset)
                offset += RR_FIXED.size
                if offset + rdlength > len(packet):
                    raise ValueError("record data runs past the end of the packet")
                if rtype == TYPE_OPT:
                    if (index < ancount + nscount or edns
                            or packet[offset - RR_FIXED.size - 1] != 0):
                        raise ValueError("misplaced or repeated OPT record")
                    edns = True
                    payload = rclass
                    version = (ttl >> 16) & 0xFF
                    dnssec_ok = bool(ttl & 0x8000)
                    options = rdlength > 0
                offset += rdlength
        except ValueError as err:
            # A FORMERR for what follows an OPT still carries our OPT back (as Unbound does).
            raise QueryError(FORMERR, str(err), Query(
                qid, flags, question, labels, qtype, qclass, edns, version, dnssec_ok,
                payload, options, False, *_name_of(labels))) from err

    query = Query(qid, flags, question, labels, qtype, qclass, edns, version, dnssec_ok,
                  payload, options, records > (1 if edns else 0), *_name_of(labels))
    if qtype in ZONE_TRANSFER_TYPES:
        raise QueryError(REFUSED, "zone transfer", query)
    if qtype in META_QUESTION_TYPES:
        raise QueryError(FORMERR, f"meta type {qtype} as the question", query)
    if edns and version != 0:
        raise QueryError(BADVERS, f"EDNS version {version}", query)
    return query


# Characters dig and Unbound print with a backslash before them rather than as \DDD.
_SPECIAL = frozenset(b'.\\"();@$')


def escape_label(label: bytes) -> str:
    """One label in presentation form: printable ASCII as is, ``.`` ``\\`` and the like after a
    backslash, every other byte (space, control, non-ASCII) as ``\\DDD``. A name a client chose
    can then never forge a line or a field in a log."""
    out: list[str] = []
    for byte in label:
        if byte in _SPECIAL:
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def presentation(labels: tuple[bytes, ...]) -> str:
    """A whole name in presentation form, without the trailing dot (``.`` for the root)."""
    return ".".join(escape_label(label) for label in labels) or "."


# --- building replies ---------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a presentation-format name (no escapes: registry names only)."""
    out = bytearray()
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("latin-1")
            out.append(len(raw))
            out += raw
    out.append(0)
    return bytes(out)


def rr_to_qname(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """A record whose owner is the question name (compressed to a pointer at offset 12)."""
    return POINTER_TO_QNAME + RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def rr_named(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """A record with an explicit owner name in wire form."""
    return owner + RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def address_rdata(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def srv_rdata(priority: int, weight: int, port: int, target: str) -> bytes:
    return SRV_FIXED.pack(priority, weight, port) + encode_name(target)


def opt_record(query: Query, ext_rcode: int = 0) -> bytes:
    """Our OPT record for a client that sent one: our size, version 0, the client's DO bit."""
    ttl = (ext_rcode << 24) | (0x8000 if query.dnssec_ok else 0)
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, OUR_UDP_SIZE, ttl, 0)


def reply_flags(query_flags: int, rcode: int, authoritative: bool = False) -> int:
    """QR set, opcode/RD/CD copied from the query, RA set (we recurse for the client)."""
    flags = QR | RA | (query_flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)
    if authoritative:
        flags |= AA
    return flags


def build_reply(
    query: Query,
    rcode: int,
    answers: list[bytes],
    max_size: int,
    additional: list[bytes] | None = None,
) -> bytes:
    """A whole reply (ID included). Answers that do not fit ``max_size`` are dropped from the end
    and TC is set, as Docker's resolver does; the client then asks again over TCP."""
    opt = opt_record(query, rcode >> 4) if query.edns else b""
    extra = additional or []
    flags = reply_flags(query.flags, rcode)
    size = HEADER.size + len(query.question) + len(opt)
    kept_answers = 0
    for record in answers:
        if size + len(record) > max_size:
            break
        size += len(record)
        kept_answers += 1
    kept_extra = 0
    if kept_answers == len(answers):
        for record in extra:
            if size + len(record) > max_size:
                break
            size += len(record)
            kept_extra += 1
    if kept_answers < len(answers):
        # Additional records are optional (RFC 2181 9): only missing answers mean truncation.
        flags |= TC
    header = HEADER.pack(
        query.id, flags, 1, kept_answers, 0, kept_extra + (1 if opt else 0)
    )
    return b"".join(
        [header, query.question, *answers[:kept_answers], *extra[:kept_extra], opt]
    )


def error_reply(query: Query | None, packet: bytes, rcode: int) -> bytes:
    """An error reply: with the question (and OPT) when the question could be parsed, else the
    bare header with the client's ID, which is all RFC 1035 lets a server echo reliably."""
    if query is not None:
        return build_reply(query, rcode, [], MAX_TCP_SIZE)
    qid, flags = struct.unpack_from("!HH", packet)
    return HEADER.pack(qid, reply_flags(flags, rcode), 0, 0, 0, 0)


def reverse_pointer_address(labels: tuple[bytes, ...]) -> str | None:
    """The address a PTR question asks about (``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4``), or None."""
    lower = [label.lower() for label in labels]
    try:
        if len(lower) == 6 and lower[-2:] == [b"in-addr", b"arpa"]:
            octets = [int(label) for label in reversed(lower[:4])]
            if all(0 <= octet <= 255 and str(octet).encode() == label
                   for octet, label in zip(octets, reversed(lower[:4]), strict=True)):
                return ".".join(str(octet) for octet in octets)
            return None
        if len(lower) == 34 and lower[-2:] == [b"ip6", b"arpa"]:
            nibbles = b"".join(reversed(lower[:32])).decode("ascii")
            if len(nibbles) != 32:
                return None
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except (ValueError, UnicodeDecodeError):
        return None
    return None
