"""What keeps dockdns and resolved's stub from forming a loop once dockdns forwards to the stub.

Two rules. Names in the zones dockdns owns (the --domain zone, the reverse zones it registered)
are never forwarded: resolved routes them to dockdns, so forwarding them to the stub would send
them straight back. And every question dockdns sends upstream carries a marker, the case of its
name's letters chosen at random (DNS compares names without regard to case, RFC 4343, and
resolved and dnsmasq keep the case they were asked in); a query that arrives with exactly the
marked question of a resolution still in flight is dockdns's own query come back (resolved was
told to use dockdns for names dockdns does not own, for example as a global server), and is
dropped. EDNS options would not survive resolved, which builds its own upstream queries; the
question is all that it passes on. Pure: no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from resolver.dns import wire

HEADER_SIZE = 12


def _marked_name(question: bytes, bits: int) -> bytes:
    """``question`` with the case of each ASCII letter of its name set by one bit of ``bits``."""
    out = bytearray(question)
    at = 0
    while at < len(out) - 4 and out[at]:
        length = out[at]
        for index in range(at + 1, at + 1 + length):
            byte = out[index] | 0x20
            if 0x61 <= byte <= 0x7A:
                out[index] = byte if bits & 1 else byte & ~0x20
                bits >>= 1
        at += 1 + length
    return bytes(out)


class LoopGuard:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()
        self._zones: frozenset[tuple[bytes, ...]] = frozenset()
        self._depth = 0  # labels in the longest owned zone, so ``owner`` stops looking there
        # Marked questions in flight upstream -> how many resolutions sent exactly that.
        self._sent: dict[bytes, int] = {}
        self.loops = 0  # queries dropped as our own come back

    def set_zones(self, zones: Iterable[str]) -> None:
        self._zones = frozenset(tuple(label.encode("ascii") for label in zone.split(".") if label)
                                for zone in zones)
        self._depth = max((len(zone) for zone in self._zones), default=0)

    def owner(self, labels: tuple[bytes, ...]) -> tuple[bytes, ...] | None:
        """The owned zone ``labels`` is in (the longest), or None."""
        lowered = tuple(label.lower() for label in labels)
        for start in range(max(0, len(lowered) - self._depth), len(lowered)):
            if lowered[start:] in self._zones:
                return lowered[start:]
        return None

    def local_reply(self, query: wire.Query) -> bytes | None:
        """The reply to a name in an owned zone that the registry did not answer: NXDOMAIN below
        the zone's apex, NOERROR with no records at the apex itself; None: not owned."""
        zone = self.owner(query.labels)
        if zone is None:
            return None
        rcode = wire.NOERROR if len(zone) == len(query.labels) else wire.NXDOMAIN
        return wire.build_reply(query, rcode, [], wire.MAX_TCP_SIZE)

    def mark(self, message: bytes, question: bytes) -> tuple[bytes, bytes]:
        """``message`` (an upstream query whose question section, right after the header, is
        ``question``) with its name marked, and the marked question, which ``release`` takes
        back once the resolution is over."""
        end = HEADER_SIZE + len(question)
        marked = _marked_name(message[HEADER_SIZE:end], self._rng.getrandbits(255))
        self._sent[marked] = self._sent.get(marked, 0) + 1
        return message[:HEADER_SIZE] + marked + message[end:], marked

    def release(self, marked: bytes) -> None:
        left = self._sent.get(marked, 0) - 1
        if left > 0:
            self._sent[marked] = left
        else:
            self._sent.pop(marked, None)

    def returned(self, query: wire.Query) -> bool:
        """Whether ``query`` is one of ours come back (its question is one we sent, marked)."""
        if query.question in self._sent:
            self.loops += 1
            return True
        return False
