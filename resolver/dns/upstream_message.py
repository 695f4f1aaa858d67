"""DNS wire format towards upstreams: the query we send, checking that a reply belongs to it, and
turning one upstream reply into the reply each client gets.

Pure (bytes in, bytes out), like ``resolver.dns.wire``. An upstream reply is scanned once into an
``UpstreamReply``: its records after the question, without the OPT record, plus where each TTL sits.
Every client's reply is then that same body behind the client's own header and question (same
length: the names differ only in case, so every compression pointer still lands where it did, and
names compressed against the question read in that client's case, which RFC 4343 allows),
with the TTLs counted down, the client's own OPT (or none), cut to the client's size with TC=1.
No dnslib objects on that path; dnslib only normalizes the rare reply the scanner declines
(see ``normalize``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import dnslib

from resolver.dns import wire

TTL = struct.Struct("!I")
QUESTION_FLAGS = struct.Struct("!HH")  # a header's flags and QDCOUNT

# The UDP size we advertise upstream (DNS flag day 2020): answers larger than this come back with
# TC=1 and are fetched over TCP rather than as fragmented datagrams.
UPSTREAM_UDP_SIZE = 1232

# rdata layouts of the types whose rdata holds domain names that may be compressed (RFC 1035,
# RFC 3597 4): bytes before the first name, then how many names follow back to back. The scanner
# checks their pointers, because a body is cut by dropping records from its end.
NAMES_IN_RDATA: dict[int, tuple[int, int]] = {
    2: (0, 1),  # NS
    3: (0, 1),  # MD
    4: (0, 1),  # MF
    5: (0, 1),  # CNAME
    6: (0, 2),  # SOA
    7: (0, 1),  # MB
    8: (0, 1),  # MG
    9: (0, 1),  # MR
    12: (0, 1),  # PTR
    14: (0, 2),  # MINFO
    15: (2, 1),  # MX
    17: (0, 2),  # RP
    18: (2, 1),  # AFSDB
    21: (2, 1),  # RT
    26: (2, 2),  # PX
    33: (6, 1),  # SRV
    36: (2, 1),  # KX
    39: (0, 1),  # DNAME
}

TYPE_DNAME = 39
TYPE_RRSIG = 46
# CNAMEs followed when scrubbing an answer section: far more than any real chain (resolvers
# give up at 8-16), and a bound on the work a hostile reply can cause.
MAX_CHAIN = 32

# Response codes an upstream may send that mean "ask another one" rather than an answer.
RETRY_RCODES = frozenset({wire.SERVFAIL, wire.REFUSED, wire.FORMERR, wire.NOTIMP})


class BadReply(Exception):
    """An upstream reply that cannot be used (it is never cached nor relayed)."""


def cache_key(query: wire.Query) -> bytes:
    """What makes two queries share an upstream answer: the name in lower case, type, class, and
    the bits that change what an upstream answers (RD, CD, DO). AD is not among them: it is
    always asked for upstream, and ``render`` gives it to the clients that asked. Only the name
    is lowered: the type and class bytes could look like ASCII letters too."""
    question = query.question
    bits = ((query.flags & (wire.RD | wire.CD)) >> 4) | (1 if query.dnssec_ok else 0)
    return question[:-4].lower() + question[-4:] + bytes([bits])


def upstream_query(query: wire.Query, qid: int) -> bytes:
    """The query as the client asked it (question, RD, CD, DO) under our own ID, with our OPT.

    The answer is shared by every client asking the same (cache, coalescing), so it is fetched
    whole with our own UDP size, with AD asked for (RFC 6840 5.7; each client's reply keeps it
    only if that client asked), and without the client's EDNS options (cookies, padding and
    client-subnet belong to one client, not to the shared answer).
    """
    flags = (query.flags & (wire.RD | wire.CD)) | wire.AD
    opt = b"\x00" + wire.RR_FIXED.pack(wire.TYPE_OPT, UPSTREAM_UDP_SIZE,
                                       0x8000 if query.dnssec_ok else 0, 0)
    return wire.HEADER.pack(qid, flags, 1, 0, 0, 1) + query.question + opt


def probe_query(qid: int) -> bytes:
    """``. IN NS`` without recursion: any answer at all shows the server is alive."""
    return wire.HEADER.pack(qid, 0, 1, 0, 0, 0) + b"\x00" + struct.pack("!HH", wire.TYPE_NS,
                                                                      wire.CLASS_IN)


def same_question(a: bytes, b: bytes) -> bool:
    """Equal questions, the name compared without regard to ASCII case (RFC 4343)."""
    return len(a) == len(b) and a[-4:] == b[-4:] and a[:-4].lower() == b[:-4].lower()


def reply_question(reply: bytes) -> bytes | None:
    """The question section of a reply to one of our queries, or None if it is not one.

    Checks what a reply must have to be matched at all: QR set, opcode QUERY, exactly one
    question with no compression in it.
    """
    if len(reply) < wire.HEADER.size:
        return None
    flags, qdcount = QUESTION_FLAGS.unpack_from(reply, 2)
    if not flags & wire.QR or flags & wire.OPCODE_MASK or qdcount != 1:
        return None
    # The name's end, found by its label lengths alone (no labels made: this runs per reply).
    end = wire.HEADER.size
    size = len(reply)
    limit = wire.HEADER.size + wire.MAX_NAME_WIRE
    while True:
        if end >= size:
            return None
        length = reply[end]
        if length == 0:
            end += 1
            break
        if length & 0xC0:
            return None  # a pointer (or an unknown label type) in the question
        end += length + 1
    if end > limit or end + 4 > size:
        return None
    return reply[wire.HEADER.size : end + 4]


@dataclass(slots=True)
class UpstreamReply:
    """One upstream reply, scanned: everything a client's copy of it needs. Never changed once
    made. (A slotted dataclass, a C struct in the compiled build: one is made per upstream
    reply, and a named tuple's constructor is a Python function even there, a twentieth of a
    forwarded miss's CPU by py-spy; a frozen dataclass's ``__init__`` costs an
    ``object.__setattr__`` per field.)"""

    flags: int
    rcode: int  # the whole rcode, extended bits from the OPT record included
    question: bytes
    body: bytes  # the records after the question, OPT removed, exactly as received
    ttl_offsets: tuple[int, ...]  # where each record's TTL sits in ``body``
    ttls: tuple[int, ...]  # each record's TTL as received
    ends: tuple[int, ...]  # where each record ends in ``body``
    answer_count: int
    authority_count: int
    additional_count: int  # without the OPT record
    negative_ttl: int | None  # min(SOA TTL, SOA MINIMUM) of an SOA in authority (RFC 2308 5)

    # Written out, not generated: the dataclass decorator's ``__init__`` is interpreted Python
    # even in the compiled build (py-spy and perf: one per miss of each such class), and it
    # leaves one defined in the class alone. Keep it in step with the fields.
    def __init__(self, flags: int, rcode: int, question: bytes, body: bytes,
                 ttl_offsets: tuple[int, ...], ttls: tuple[int, ...], ends: tuple[int, ...],
                 answer_count: int, authority_count: int, additional_count: int,
                 negative_ttl: int | None) -> None:
        self.flags = flags
        self.rcode = rcode
        self.question = question
        self.body = body
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        self.ends = ends
        self.answer_count = answer_count
        self.authority_count = authority_count
        self.additional_count = additional_count
        self.negative_ttl = negative_ttl

    @property
    def truncated(self) -> bool:
        return bool(self.flags & wire.TC)

    @property
    def retry_elsewhere(self) -> bool:
        return self.rcode in RETRY_RCODES


def _check_pointers(packet: bytes, offset: int, limit: int) -> int:
    """Walk a name at ``offset``; raise unless it is well formed and every pointer on its way
    goes backward to the question or later (never into the header, which each client's copy
    replaces). Return the offset just after the name, which must be before ``limit``."""
    after = -1
    wire_length = 1
    jumps = 0
    position = offset
    while True:
        if position >= (limit if after < 0 else len(packet)):
            raise BadReply("name runs past its record")
        length = packet[position]
        if length == 0:
            position += 1
            break
        if length & 0xC0 == 0xC0:
            if position + 1 >= len(packet):
                raise BadReply("truncated pointer")
            target = ((length & 0x3F) << 8) | packet[position + 1]
            jumps += 1
            if target < wire.HEADER.size or target >= position or jumps > 64:
                raise BadReply("pointer forward or into the header")
            if after < 0:
                after = position + 2
            position = target
            continue
        if length & 0xC0:
            raise BadReply("unknown label type")
        wire_length += length + 1
        if wire_length > wire.MAX_NAME_WIRE:
            raise BadReply("name longer than 255 octets")
        position += length + 1
    end = after if after >= 0 else position
    if end > limit:
        raise BadReply("name runs past its record")
    return end


def _lowered_name(packet: bytes, offset: int) -> tuple[bytes, ...]:
    """The labels of the (checked, possibly compressed) name at ``offset``, in lower case."""
    try:
        labels, _ = wire.read_name(packet, offset, allow_pointers=True)
    except ValueError as err:
        raise BadReply(str(err)) from None
    return tuple(bytes(label).lower() for label in labels)


def _ttl_value(ttl: int) -> int:
    """RFC 2181 8: a TTL with the top bit set is treated as zero."""
    return 0 if ttl & 0x80000000 else ttl


def _out_of_chain(question: bytes, answers: list[tuple[tuple[bytes, ...], int,
                                                       tuple[bytes, ...] | None]]) -> set[int]:
    """Which answer records (by index) are not part of the question's CNAME chain.

    The answer section answers one question: the name asked, the CNAMEs (and DNAMEs) it leads
    through and the records of their targets. Anything else there (``victim.other A 6.6.6.6``
    added by a poisoning upstream) is removed before any client sees it, as Unbound's scrubber
    does.
    """
    labels, _ = wire.read_name(question, 0, allow_pointers=False)
    chain = {tuple(bytes(label).lower() for label in labels)}
    follow = struct.unpack_from("!H", question, len(question) - 4)[0] != wire.TYPE_CNAME
    for _ in range(MAX_CHAIN if follow else 0):
        grown = {target for owner, rtype, target in answers
                 if rtype == wire.TYPE_CNAME and owner in chain and target is not None}
        if grown <= chain:
            break
        chain |= grown
    drop: set[int] = set()
    for index, (owner, rtype, _target) in enumerate(answers):
        if owner in chain:
            continue
        if rtype in (TYPE_DNAME, TYPE_RRSIG) and any(
                name[len(name) - len(owner):] == owner for name in chain if len(name) > len(owner)):
            continue  # a DNAME above a name of the chain (and its signature)
        drop.add(index)
    return drop


def _without_answers(reply: bytes, drop: set[int]) -> bytes:
    """The reply re-encoded by dnslib without the answer records ``drop``: the records after
    them may have pointed into them, so they cannot just be cut out of the bytes."""
    return normalize(reply, drop)


def scan(reply: bytes, scrubbed: bool = False) -> UpstreamReply:
    """Scan one reply (already matched to our query) or raise ``BadReply``.

    Declines, rather than misreads, what the per-client reuse could not handle: pointers that go
    forward and an OPT record that is not the last record. ``normalize`` fixes those. Answer
    records outside the question's chain are scrubbed (``_out_of_chain``).
    """
    question = reply_question(reply)
    if question is None:
        raise BadReply("not a reply with one question")
    _, flags, _, ancount, nscount, arcount = wire.HEADER.unpack_from(reply)
    offset = wire.HEADER.size + len(question)
    body_start = offset
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    ends: list[int] = []
    ext_rcode = 0
    opt_at: int | None = None
    negative_ttl: int | None = None
    # Answer records by (owner, type, CNAME target); an owner of None is the question's own name
    # (a pointer to it), read only when the chain must be checked.
    answers: list[tuple[tuple[bytes, ...] | None, int, tuple[bytes, ...] | None]] = []
    # Every answer owned by the question's name itself, no CNAME among them: all in the chain.
    plain = True
    total = ancount + nscount + arcount
    for index in range(total):
        record_start = offset
        # A pointer to the question's name, as nearly every answer's owner is: the question is
        # checked already (reply_question), and its name is read once.
        to_qname = (offset + 1 < len(reply) and reply[offset] == 0xC0
                    and reply[offset + 1] == wire.HEADER.size)
        offset = offset + 2 if to_qname else _check_pointers(reply, offset, len(reply))
        if index < ancount:
            owner = None if to_qname else _lowered_name(reply, record_start)
        if offset + wire.RR_FIXED.size > len(reply):
            raise BadReply("record runs past the end")
        rtype, _, ttl, rdlength = wire.RR_FIXED.unpack_from(reply, offset)
        fixed_at = offset
        offset += wire.RR_FIXED.size
        rdata_end = offset + rdlength
        if rdata_end > len(reply):
            raise BadReply("record data runs past the end")
        if rtype == wire.TYPE_OPT:
            if index < ancount + nscount or opt_at is not None:
                raise BadReply("misplaced or repeated OPT record")
            if index != total - 1:
                raise BadReply("OPT record is not the last record")
            opt_at = record_start
            ext_rcode = ttl >> 24
            offset = rdata_end
            continue
        layout = NAMES_IN_RDATA.get(rtype)
        if layout is not None:
            at = offset + layout[0]
            for _ in range(layout[1]):
                at = _check_pointers(reply, at, rdata_end)
        if index < ancount:
            if rtype == wire.TYPE_CNAME:
                plain = False
                answers.append((owner, rtype,
                                _lowered_name(reply, fixed_at + wire.RR_FIXED.size)))
            else:
                if owner is not None:
                    plain = False
                answers.append((owner, rtype, None))
        if rtype == wire.TYPE_SOA and ancount <= index < ancount + nscount:
            if rdlength < 20:
                raise BadReply("SOA record too short")
            (minimum,) = TTL.unpack_from(reply, rdata_end - 4)
            soa_ttl = min(ttl, minimum) & 0x7FFFFFFF
            negative_ttl = soa_ttl if negative_ttl is None else min(negative_ttl, soa_ttl)
        # RFC 2181 8: a TTL with the top bit set is treated as zero.
        ttl_offsets.append(fixed_at + 4 - body_start)
        ttls.append(0 if ttl & 0x80000000 else ttl)
        offset = rdata_end
        ends.append(offset - body_start)
    if offset != len(reply):
        raise BadReply("trailing bytes after the message")
    drop: set[int] = set()
    if not plain:
        qname = _lowered_name(reply, wire.HEADER.size)
        drop = _out_of_chain(question, [(qname if owner is None else owner, rtype, target)
                                        for owner, rtype, target in answers])
    if drop:
        if scrubbed:
            raise BadReply("answer section still outside the question's chain")
        return scan(_without_answers(reply, drop), scrubbed=True)
    body_end = opt_at if opt_at is not None else offset
    # Positional: keywords would cost a dict per reply. The fields in order: flags, rcode,
    # question, body, ttl_offsets, ttls, ends, answer/authority/additional counts, negative TTL.
    return UpstreamReply(flags, (ext_rcode << 4) | (flags & 0xF), question,
                         reply[body_start:body_end], tuple(ttl_offsets), tuple(ttls), tuple(ends),
                         ancount, nscount, arcount - (1 if opt_at is not None else 0),
                         negative_ttl)


def normalize(reply: bytes, drop: frozenset[int] | set[int] = frozenset()) -> bytes:
    """Re-encode a reply with dnslib (its compression only points backward, its OPT goes last),
    leaving out the answer records at the indexes ``drop``. Raises ``BadReply`` when dnslib
    cannot read it either."""
    try:
        record = dnslib.DNSRecord.parse(reply)
        if drop:
            record.rr = [rr for index, rr in enumerate(record.rr) if index not in drop]
        opt = [rr for rr in record.ar if rr.rtype == wire.TYPE_OPT]
        record.ar = [rr for rr in record.ar if rr.rtype != wire.TYPE_OPT] + opt[:1]
        # dnslib packs into a bytearray; the compiled build checks that a bytes is one.
        packed = bytes(record.pack())
    except Exception as err:  # dnslib raises many kinds on bad input
        raise BadReply(f"unreadable reply: {err}") from None
    return packed


def scan_any(reply: bytes) -> UpstreamReply:
    """``scan``, falling back to ``normalize`` for the replies it declines."""
    try:
        return scan(reply)
    except BadReply:
        return scan(normalize(reply))


def render(reply: UpstreamReply, query: wire.Query, ttls: Sequence[int], age: int,
           max_size: int, fixed_ttl: int | None = None) -> bytes:
    """The reply for one client: its ID and question, ``reply``'s records with each TTL at
    ``ttls[i] - age`` (or ``fixed_ttl``), its OPT if it sent one, cut to ``max_size``."""
    body = bytearray(reply.body)
    for offset, ttl in zip(reply.ttl_offsets, ttls, strict=True):
        TTL.pack_into(body, offset, fixed_ttl if fixed_ttl is not None else max(0, ttl - age))
    opt = wire.opt_record(query, reply.rcode >> 4) if query.edns else b""
    counts = [reply.answer_count, reply.authority_count, reply.additional_count]
    flags = wire.reply_flags(query.flags, reply.rcode)
    # RFC 6840 5.8: AD only to a client that asked for it (AD or DO in its query).
    if reply.flags & wire.AD and (query.dnssec_ok or query.flags & wire.AD):
        flags |= wire.AD
    fixed = wire.HEADER.size + len(query.question) + len(opt)
    kept = len(reply.ends)
    if fixed + len(body) > max_size:
        # Pointers only go backward, so any prefix of the records stands on its own.
        kept = 0
        while kept < len(reply.ends) and fixed + reply.ends[kept] <= max_size:
            kept += 1
        del body[reply.ends[kept - 1] if kept else 0 :]
        if kept < reply.answer_count + reply.authority_count:
            # Missing additional records are no truncation (RFC 2181 9); anything else is.
            flags |= wire.TC
        counts = [min(counts[0], kept), min(counts[1], max(0, kept - counts[0])),
                  max(0, kept - counts[0] - counts[1])]
    header = wire.HEADER.pack(query.id, flags, 1, counts[0], counts[1],
                              counts[2] + (1 if opt else 0))
    return b"".join((header, query.question, body, opt))
