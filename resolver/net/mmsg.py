"""Batched UDP receive and send: recvmmsg(2) and sendmmsg(2) through ctypes.

Under dnsperf (benchmarks/), py-spy puts ~75% of dockdns's CPU per memo hit in the kernel's
recvfrom and sendto. A Python loop of one recvfrom and one sendto per query cost 4.2 µs of CPU a
query on the benchmark machine; the same loop over recvmmsg and sendmmsg, up to 64 datagrams a
call, 3.6 µs. Python's socket module has neither call, so they are reached in libc with ctypes.

Everything is allocated once per socket: ``SLOTS`` slots (datagram and sender address) and two
arrays of message headers pointing at them, one to receive into the slots and one to send from
them. The listener reads and writes them through memoryviews, so per datagram the hot path
touches no ctypes object. The reply to the query in slot ``i`` is written over the query, after
its ID (which is already where the reply needs it), and sent from slot ``i`` to the address the
kernel wrote into slot ``i``: on the way back nothing is copied but the reply's body, and no
address is converted or even pointed at anew.

The ctypes side (the header structures, the calls) is ``resolver.net.libc``; this module is
compiled (setup.py) and touches only buffers, memoryviews and the calls made once.
``Outbox`` sends datagrams to many addresses with one call (the upstream transport's queries,
the listener's replies from upstreams).
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Callable
from typing import Any

from resolver.net.libc import (
    CALLS,
    MSG_SIZE,
    buffer,
    failed,
    headers,
    pointer,
)

# Datagrams per system call (see resolver/serve/udp.py: BATCH, BATCHES_PER_WAKEUP).
SLOTS = 64
# The slot size. A query is a few hundred bytes; 4096 leaves room for any EDNS options or
# padding, and is also the largest UDP reply dockdns sends (wire.MAX_UDP_SIZE), which is written
# into the query's slot. A longer datagram is cut by the kernel and flagged MSG_TRUNC; the
# listener drops it.
SLOT_SIZE = 4096

# Plain ints: socket's own constants are enum flags, and an enum operation per datagram costs
# more than everything else done for it.
MSG_TRUNC = int(socket.MSG_TRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)

_SOCKADDR_SIZE: dict[int, int] = {socket.AF_INET: 16, socket.AF_INET6: 28}
# Where the address sits in each sockaddr, for the client address a view is looked up by.
_ADDRESS_SPAN: dict[int, tuple[int, int]] = {socket.AF_INET: (4, 8), socket.AF_INET6: (8, 24)}


def available() -> bool:
    return CALLS is not None


class BatchSocket:
    """The receive and send slots of one bound, non-blocking UDP socket."""

    def __init__(self, sock: socket.socket) -> None:
        if CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available")
        if sock.family not in _SOCKADDR_SIZE:
            raise OSError(errno.EAFNOSUPPORT, f"no batching for address family {sock.family}")
        self._recvmmsg: Any = CALLS[0]
        self._sendmmsg: Any = CALLS[1]
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.ipv4 = sock.family == socket.AF_INET
        self.name_size = _SOCKADDR_SIZE[sock.family]
        self.address_span = _ADDRESS_SPAN[sock.family]

        self.received, received_at = buffer(SLOTS * SLOT_SIZE)
        self.names, self.names_at = buffer(SLOTS * self.name_size)
        # Two header arrays over the same slots and addresses: one to receive into them, one
        # to send the replies written over the queries back to where they came from.
        _, receive_msgs, receive_msgs_at = layout = headers(
            SLOTS, received_at, SLOT_SIZE, self.names_at, self.name_size)
        send_iov, send_msgs, send_msgs_at = sending = headers(
            SLOTS, received_at, SLOT_SIZE, self.names_at, self.name_size)
        # Kept so the buffers the header pointers point into live as long as this object.
        self._keep = (layout, sending)
        # The calls' pointer arguments, made once: sending from slot ``i`` on starts at header i.
        self._receive_from = pointer(receive_msgs_at)
        self._send_from = tuple(pointer(send_msgs_at + slot * MSG_SIZE) for slot in range(SLOTS))
        # The views the listener's hot loop reads and writes.
        self.received_view = memoryview(self.received)
        self.names_view = memoryview(self.names)
        self.name_words = self.names_view.cast("I")
        self.receive_words = memoryview(receive_msgs).cast("I")
        self.send_lengths = memoryview(send_iov).cast("Q")  # slot i's reply length at 2 * i + 1

    def receive(self) -> int:
        """Read up to SLOTS datagrams without waiting: how many, 0 when none was waiting.
        Raises OSError for anything but "nothing to read"."""
        result: int = self._recvmmsg(self.fd, self._receive_from, SLOTS, _MSG_DONTWAIT, None)
        return result if result >= 0 else failed()

    def send(self, first: int, count: int) -> int:
        """Send the replies in slots ``first`` .. ``first + count - 1`` (``set_reply``): how many
        went, 0 when the send buffer is full. Raises OSError when the first of them cannot be
        sent."""
        result: int = self._sendmmsg(self.fd, self._send_from[first], count, 0)
        return result if result >= 0 else failed()

    def set_reply(self, slot: int, reply: bytes) -> None:
        """Put a whole reply (ID included) in slot ``slot``, as the listener's hot loop does
        inline (it writes only the body: the query's ID is already in place)."""
        start = slot * SLOT_SIZE
        self.received_view[start : start + len(reply)] = reply
        self.send_lengths[2 * slot + 1] = len(reply)

    def address_key(self, slot: int) -> bytes:
        """The sender's address in receive slot ``slot``, raw: what client lookups are cached
        under."""
        start = slot * self.name_size
        low, high = self.address_span
        return bytes(self.names[start + low : start + high])

    def client(self, key: bytes) -> str:
        """The address text for a raw address (what socket.recvfrom would have said)."""
        return socket.inet_ntop(self.family, key)

    def name(self, slot: int) -> bytes:
        """The sender of receive slot ``slot`` as the kernel wrote it (a packed socket address,
        what an ``Outbox`` sends to)."""
        start = slot * self.name_size
        return bytes(self.names[start : start + self.name_size])

    def address(self, slot: int) -> tuple[Any, ...]:
        """The sender of receive slot ``slot`` as socket.recvfrom gives it."""
        start = slot * self.name_size
        return unpack_sockaddr(self.family, self.names_view[start : start + self.name_size])

    def datagram(self, slot: int, length: int) -> bytes:
        start = slot * SLOT_SIZE
        return bytes(self.received[start : start + length])

    def outgoing_slot(self, slot: int) -> tuple[bytes, tuple[Any, ...]]:
        """The reply in slot ``slot`` as (reply, address), for the send queue when the
        kernel's buffer is full."""
        start = slot * SLOT_SIZE
        return bytes(self.received[start : start + self.send_lengths[2 * slot + 1]]), \
            self.address(slot)


# --- datagrams to many addresses (the upstream transport, the listener's full-path replies)

# Errors a UDP socket reports on a later call for an ICMP error about an earlier datagram (with
# IP_RECVERR: port, host or network unreachable): the call itself did nothing wrong, and is
# tried again once.
EARLIER_ERRORS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
_FAMILY_PREFIX: dict[int, bytes] = {family: family.to_bytes(2, sys.byteorder)
                                    for family in _SOCKADDR_SIZE}


def pack_sockaddr(family: int, address: tuple[Any, ...]) -> bytes:
    """A socket address as the kernel reads it (struct sockaddr_in or sockaddr_in6), from the
    tuple socket.recvfrom gives or getaddrinfo returns: numeric addresses only."""
    if family == socket.AF_INET:
        return _FAMILY_PREFIX[family] + int(address[1]).to_bytes(2, "big") \
            + socket.inet_pton(family, address[0]) + bytes(8)
    if family != socket.AF_INET6:
        raise OSError(errno.EAFNOSUPPORT, f"no socket address for address family {family}")
    host = str(address[0]).split("%", 1)[0]
    flowinfo = int(address[2]) if len(address) > 2 else 0
    scope = int(address[3]) if len(address) > 3 else 0
    return _FAMILY_PREFIX[family] + int(address[1]).to_bytes(2, "big") \
        + flowinfo.to_bytes(4, "big") + socket.inet_pton(family, host) \
        + scope.to_bytes(4, sys.byteorder)


def unpack_sockaddr(family: int, name: bytes | memoryview) -> tuple[Any, ...]:
    """The tuple socket.recvfrom would give for a packed socket address."""
    port = int.from_bytes(name[2:4], "big")
    low, high = _ADDRESS_SPAN[family]
    host = socket.inet_ntop(family, bytes(name[low:high]))
    if family == socket.AF_INET:
        return host, port
    return host, port, int.from_bytes(name[4:8], "big"), int.from_bytes(name[24:28],
                                                                          sys.byteorder)


class _Slots:
    """``count`` slots of ``size`` bytes, each with a socket address and a message header whose
    one iovec points at the slot: the memory both directions use."""

    def __init__(self, family: int, count: int, size: int) -> None:
        if family not in _SOCKADDR_SIZE:
            raise OSError(errno.EAFNOSUPPORT, f"no batching for address family {family}")
        self.family = family
        self.count = count
        self.size = size
        self.name_size = _SOCKADDR_SIZE[family]
        self.data, data_at = buffer(count * size)
        self.names, names_at = buffer(count * self.name_size)
        iov, msgs, self.msgs_at = headers(count, data_at, size, names_at, self.name_size)
        self._keep = (iov, msgs)
        self.data_view = memoryview(self.data)
        self.names_view = memoryview(self.names)
        self.words = memoryview(msgs).cast("I")
        self.lengths = memoryview(iov).cast("Q")  # slot i's iovec length at 2 * i + 1


class Flushed:
    """What became of an outbox's datagrams, by their tags. (A plain class: one is made per
    flush, and a dataclass's generated ``__init__`` is interpreted Python even compiled.)"""

    def __init__(self) -> None:
        self.failed: list[tuple[Any, OSError]] = []  # with why
        # Those the kernel had no room for (its send buffer full): the caller's to queue, read
        # with ``Outbox.datagram`` until the next ``put``.
        self.blocked: list[Any] = []
        # An error about an earlier datagram may have been met (and the send it stopped
        # retried): its report waits in the socket's error queue.
        self.earlier = False


class Outbox:
    """Datagrams to many addresses, collected and then sent with one sendmmsg(2) per ``SLOTS``
    (or, without it, one sendto each). Each carries a tag, handed back with what became of it.
    One outbox serves every socket of its address family: it is filled and flushed for one
    socket at a time."""

    def __init__(self, family: int, slots: int = SLOTS, size: int = SLOT_SIZE,
                 batched: bool = True) -> None:
        self.slots = _Slots(family, slots, size)
        self.family = family
        self.batched = batched and CALLS is not None
        self.tags: list[Any] = []
        self._blocked_from = 0
        self._sendmmsg: Any = CALLS[1] if CALLS is not None else None
        self._send_from = tuple(pointer(self.slots.msgs_at + slot * MSG_SIZE)
                                for slot in range(slots))

    @property
    def full(self) -> bool:
        return len(self.tags) >= self.slots.count

    def put(self, data: bytes, name: bytes, tag: Any) -> bool:
        """Add a datagram to ``name`` (a packed socket address); False when there is no room
        (``full``, or longer than a slot)."""
        slots = self.slots
        slot = len(self.tags)
        if slot >= slots.count or len(data) > slots.size:
            return False
        start = slot * slots.size
        slots.data_view[start : start + len(data)] = data
        slots.lengths[2 * slot + 1] = len(data)
        where = slot * slots.name_size
        slots.names_view[where : where + slots.name_size] = name
        self.tags.append(tag)
        return True

    def flush(self, fd: int, sendto: Callable[[bytes, tuple[Any, ...]], object]) -> Flushed:
        """Send everything put since the last flush to ``fd``, and empty the outbox; without
        sendmmsg, one ``sendto`` each (the socket's or a transport's: one raising
        BlockingIOError stops there). An error the kernel reports for an earlier datagram
        (``EARLIER_ERRORS``) retries the datagram it stopped, once."""
        tags = self.tags
        count = len(tags)
        flushed = Flushed()
        first = 0
        retried = -1
        while first < count:
            try:
                sent = self._send(fd, sendto, first, count - first)
            except OSError as err:
                if err.errno in EARLIER_ERRORS and retried != first:
                    flushed.earlier = True
                    retried = first
                    continue
                flushed.failed.append((tags[first], err))
                first += 1
                continue
            if sent == 0:
                flushed.blocked = tags[first:]
                self._blocked_from = first
                break
            if sent < count - first and self.batched:
                # sendmmsg stops at a datagram that fails and, having sent some, says nothing
                # of why: with IP_RECVERR that is an ICMP error about an earlier datagram (the
                # kernel clears the socket's pending error as it reports it), whose report is
                # still queued. The caller must read that queue: a socket whose error queue
                # holds a report while no error is pending makes uvloop's libuv hand the
                # report to the datagram callback as data, and the process crashes.
                flushed.earlier = True
            first += sent
        self.tags = []
        return flushed

    def datagram(self, index: int) -> tuple[bytes, tuple[Any, ...]]:
        """The ``index``-th of the ``blocked`` datagrams the last flush returned: its bytes and
        its address as a tuple."""
        return self._slot(self._blocked_from + index)

    def _send(self, fd: int, sendto: Callable[[bytes, tuple[Any, ...]], object], first: int,
              count: int) -> int:
        if self.batched:
            result: int = self._sendmmsg(fd, self._send_from[first], count, 0)
            return result if result >= 0 else failed()
        data, address = self._slot(first)
        try:
            sendto(data, address)
        except (BlockingIOError, InterruptedError):
            return 0
        return 1

    def _slot(self, slot: int) -> tuple[bytes, tuple[Any, ...]]:
        slots = self.slots
        start = slot * slots.size
        where = slot * slots.name_size
        return (bytes(slots.data[start : start + slots.lengths[2 * slot + 1]]),
                unpack_sockaddr(self.family, slots.names_view[where : where + slots.name_size]))
