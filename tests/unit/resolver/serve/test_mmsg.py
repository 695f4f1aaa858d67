"""recvmmsg/sendmmsg through ctypes on a real loopback socket: several datagrams read in one
call with their senders, replies sent from the same slots to the addresses the kernel wrote
there, "nothing waiting" as 0, and the slots' replies read back for the queue."""

from __future__ import annotations

import select
import socket

import pytest

from resolver.dns.addresses import HostPort
from resolver.serve import mmsg
from resolver.serve.mmsg import LEN_WORD, WORDS_PER_MSG
from resolver.serve.sockets import bind_udp

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg in this libc")


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
        # A reply goes from a slot to that slot's sender; a run of slots goes in one call.
        senders = [peer for _, peer in got[-count:]]  # the last call's slots, in order
        for slot in range(count):
            batch.set_reply(slot, b"reply to slot %d" % slot)
        assert batch.outgoing_slot(count - 1) == (b"reply to slot %d" % (count - 1),
                                                  senders[-1])
        assert batch.send(0, count) == count
        for slot, peer in enumerate(senders):
            client = one if peer[:2] == one.getsockname()[:2] else two
            assert client.recvfrom(100) == (b"reply to slot %d" % slot, address)


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
