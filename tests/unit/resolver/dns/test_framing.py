"""TCP's two-byte length framing, written and read through a real asyncio stream."""

from __future__ import annotations

import asyncio

import pytest

from resolver.dns.framing import MAX_FRAMED, frame, frame_length, read_framed


def test_frame() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame_length(frame(b"x" * 300)) == 300
    assert frame_length(b"\xff\xff") == MAX_FRAMED


def test_read_framed_splits_messages_and_reports_a_short_stream() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(b"first") + frame(b"") + frame(b"x" * 1000)[:500])
        reader.feed_eof()
        assert await read_framed(reader) == b"first"
        assert await read_framed(reader) == b""
        with pytest.raises(asyncio.IncompleteReadError):
            await read_framed(reader)

    asyncio.run(main())
