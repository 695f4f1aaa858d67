"""The ctypes side of batched datagrams (resolver/net/libc.py): the header layout the kernel
reads, checked through a real recvmmsg on loopback, and how a failed call's errno is read."""

from __future__ import annotations

import ctypes
import errno
import socket

import pytest

from resolver.net import libc

pytestmark = pytest.mark.skipif(libc.CALLS is None, reason="no recvmmsg in this libc")


def test_headers_point_each_message_at_its_slot_and_address() -> None:
    slots, size, name_size = 4, 64, 16
    data, data_at = libc.buffer(slots * size)
    names, names_at = libc.buffer(slots * name_size)
    iov, msgs, msgs_at = libc.headers(slots, data_at, size, names_at, name_size)
    vectors = memoryview(iov).cast("Q")
    assert [vectors[2 * slot] for slot in range(slots)] == [data_at + slot * size
                                                           for slot in range(slots)]
    assert [vectors[2 * slot + 1] for slot in range(slots)] == [size] * slots
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        client.bind(("127.0.0.1", 0))
        for text in (b"one", b"two!", b"three"):
            client.sendto(text, server.getsockname())
        assert libc.CALLS is not None
        count = libc.CALLS[0](server.fileno(), libc.pointer(msgs_at), slots,
                              int(socket.MSG_DONTWAIT), None)
        words = memoryview(msgs).cast("I")
        lengths = [words[slot * libc.WORDS_PER_MSG + libc.LEN_WORD] for slot in range(count)]
        port = client.getsockname()[1]
    assert count == 3
    assert [bytes(data[slot * size : slot * size + length])
            for slot, length in enumerate(lengths)] == [b"one", b"two!", b"three"]
    # Each sender's address was written into its own slot of the names.
    assert all(int.from_bytes(names[slot * name_size + 2 : slot * name_size + 4], "big") == port
               for slot in range(count))


def test_a_failed_call_is_try_again_or_the_error_it_was() -> None:
    ctypes.set_errno(errno.EAGAIN)
    assert libc.failed() == 0
    ctypes.set_errno(errno.EBADF)
    with pytest.raises(OSError) as raised:
        libc.failed()
    assert raised.value.errno == errno.EBADF
