"""DNS over TCP's 2-byte length framing (RFC 1035 4.2.2, RFC 7766 8): written in one place for
the TCP listener and the upstream TCP transport."""

from __future__ import annotations

import asyncio

# A framed message is at most this long: the length prefix is 16 bits.
MAX_FRAMED = 65_535


def frame(message: bytes) -> bytes:
    """``message`` with its length prefix, ready to write."""
    return len(message).to_bytes(2, "big") + message


def frame_length(prefix: bytes) -> int:
    """The message length a 2-byte prefix announces."""
    return int.from_bytes(prefix[:2], "big")


async def read_framed(reader: asyncio.StreamReader) -> bytes:
    """The next framed message. Raises asyncio.IncompleteReadError if the stream ends first."""
    length = frame_length(await reader.readexactly(2))
    return await reader.readexactly(length)
