"""recvmmsg(2) and sendmmsg(2) in libc, and the message headers they read, through ctypes.

Apart from ``resolver.net.mmsg`` because ctypes structures cannot be compiled (setup.py): this
module lays the headers out once per socket, and the compiled module reads and writes them
through memoryviews and makes the calls.

The calls go through ctypes without argument types, every argument an int or a ctypes object
made once: measured here, converting arguments through ``argtypes`` cost ~500 ns per call,
about a third of an empty recvmmsg's cost.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Any


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


MSG_SIZE = ctypes.sizeof(_MMsgHdr)
IOVEC_SIZE = ctypes.sizeof(_IOVec)
# Indexes into a uint32 view of a header array (message i at i * WORDS_PER_MSG + ...).
WORDS_PER_MSG = MSG_SIZE // 4
LEN_WORD = _MMsgHdr.len.offset // 4
FLAGS_WORD = (_MMsgHdr.hdr.offset + _MsgHdr.flags.offset) // 4


def _calls() -> tuple[Any, Any] | None:
    """libc's recvmmsg and sendmmsg, or None where they (or 64-bit pointers) are missing.
    Without ``argtypes`` (see the module's docstring): callers pass ints and c_void_p only."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.restype = ctypes.c_int
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


CALLS = _calls()


def buffer(size: int) -> tuple[bytearray, int]:
    """A zeroed buffer and its address."""
    data = bytearray(size)
    return data, ctypes.addressof(ctypes.c_char.from_buffer(data))


def pointer(address: int) -> Any:
    """An address as a call argument (a c_void_p, made once and kept)."""
    return ctypes.c_void_p(address)


def headers(count: int, data_at: int, slot_size: int, names_at: int,
            name_size: int) -> tuple[bytearray, bytearray, int]:
    """``count`` message headers, header ``i`` with one iovec over slot ``i`` of the data at
    ``data_at`` and the socket address ``i`` at ``names_at``: the iovec array, the header array
    and the headers' address. The kernel writes a sender's address into its slot and writes
    back its length, which for a socket of one family is always the sockaddr's size: nothing
    needs resetting between calls."""
    iov, iov_at = buffer(count * IOVEC_SIZE)
    msgs, msgs_at = buffer(count * MSG_SIZE)
    vectors = (_IOVec * count).from_buffer(iov)
    messages = (_MMsgHdr * count).from_buffer(msgs)
    for slot in range(count):
        vectors[slot].base = data_at + slot * slot_size
        vectors[slot].len = slot_size
        header = messages[slot].hdr
        header.name = names_at + slot * name_size
        header.namelen = name_size
        header.iov = iov_at + slot * IOVEC_SIZE
        header.iovlen = 1
    return iov, msgs, msgs_at


def failed() -> int:
    """After a recvmmsg/sendmmsg result below 0: 0 for "try again later", else OSError."""
    code = ctypes.get_errno()
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
        return 0
    raise OSError(code, os.strerror(code))
