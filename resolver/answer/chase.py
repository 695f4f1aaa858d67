"""The forwarded end of a static CNAME chain: the query for the target, and the upstream's answer
records as wire bytes that can follow the chain in a reply. Off the hot path (such replies are
memoized as long as their forwarded part is valid), so dnslib does the parsing."""

from __future__ import annotations

from dnslib import DNSBuffer, DNSError, DNSRecord

from resolver.dns import wire

_ID_UNUSED = 0  # the forwarder gives each upstream query its own ID


class _Uncompressed(DNSBuffer):  # type: ignore[misc]
    """Names written whole: the records are spliced into a reply of ours, where a compression
    pointer into this buffer would point at the wrong bytes."""

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)


def chase_query(target: str, qtype: int) -> bytes:
    """A recursive query for ``target`` (no EDNS: the reply is re-fitted to the client anyway)."""
    header = wire.HEADER.pack(_ID_UNUSED, wire.RD, 1, 0, 0, 0)
    return header + wire.encode_name(target) + qtype.to_bytes(2, "big") + \
        wire.CLASS_IN.to_bytes(2, "big")


def chased_answers(reply: bytes) -> tuple[int, list[bytes]]:
    """The upstream reply's rcode and answer records; SERVFAIL and none if it does not parse."""
    try:
        parsed = DNSRecord.parse(reply)
        records = []
        for rr in parsed.rr:
            buffer = _Uncompressed()
            rr.pack(buffer)
            records.append(bytes(buffer.data))
    except (DNSError, ValueError, IndexError):
        return wire.SERVFAIL, []
    return int(parsed.header.rcode), records
