"""recvmmsg/sendmmsg through ctypes on a real loopback socket: several datagrams read in one
call with their senders, replies sent from the send slots to the addresses the kernel wrote,
"nothing waiting" as 0, and the send slots read back for the queue."""

from __future__ import annotations

import select
import socket

import pytest

from resolver.dns.addresses import HostPort
from resolver.serve import mmsg
from resolver.serve.mmsg import LEN_WORD, NAME_QWORD, QWORDS_PER_MSG, SLOT_SIZE, WORDS_PER_MSG
from resolver.serve.sockets import bind_udp

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg in this libc")


def fill_send_slot(batch: mmsg.BatchSocket, index: int, reply: bytes, from_slot: int) -> None:
    """What the listener does for a memo hit: the reply in send slot ``index``, addressed to
    the sender of receive slot ``from_slot``."""
    batch.outgoing_view[index * SLOT_SIZE : index * SLOT_SIZE + len(reply)] = reply
    batch.send_lengths[2 * index + 1] = len(reply)
    batch.send_qwords[index * QWORDS_PER_MSG + NAME_QWORD] = \
        batch.names_at + from_slot * batch.name_size


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_receive_and_send_batches(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with bind_udp(HostPort(host, 0)) as server, \
            socket.socket(family, socket.SOCK_DGRAM) as one, \
            socket.socket(family, socket.SOCK_DGRAM) as two:
        batch = mmsg.BatchSocket(server)
        assert batch.receive() == 0  # nothing waiting: 0, not an error
        address = server.getsockname()
        for client in (one, two):
            client.settimeout(5)
            client.bind((host, 0))
        one.sendto(b"first", address)
        two.sendto(b"second!", address)
        one.sendto(b"third", address)
        # Loopback delivers at once; read until all three are in (one call almost always).
        got: list[tuple[bytes, tuple[object, ...]]] = []
        count = 0
        for _ in range(1000):
            select.select([server], [], [], 5)
            count = batch.receive()
            for slot in range(count):
                length = batch.receive_words[slot * WORDS_PER_MSG + LEN_WORD]
                got.append((batch.datagram(slot, length), batch.address(slot)))
            if len(got) == 3:
                break
        assert [data for data, _ in got] == [b"first", b"second!", b"third"]
        assert [peer[:2] for _, peer in got] == [one.getsockname()[:2], two.getsockname()[:2],
                                                 one.getsockname()[:2]]
        assert batch.client(batch.address_key(1)) == host
        # Replies go from the send slots to senders of the last call's receive slots.
        last = count - 1
        fill_send_slot(batch, 0, b"reply to three", from_slot=last)
        fill_send_slot(batch, 1, b"again", from_slot=last)
        assert batch.outgoing_slot(0) == (b"reply to three", got[2][1])
        assert batch.send(0, 2) == 2
        assert one.recvfrom(100) == (b"reply to three", address)
        assert one.recvfrom(100) == (b"again", address)


def test_only_ip_sockets() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix, \
            pytest.raises(OSError, match="no batching"):
        mmsg.BatchSocket(unix)


def test_a_closed_socket_is_an_error() -> None:
    server = bind_udp(HostPort("127.0.0.1", 0))
    batch = mmsg.BatchSocket(server)
    server.close()
    with pytest.raises(OSError):
        batch.receive()
