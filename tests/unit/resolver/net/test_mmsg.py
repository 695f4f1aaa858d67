"""recvmmsg/sendmmsg through ctypes on a real loopback socket: several datagrams read in one
call with their senders, replies sent from the same slots to the addresses the kernel wrote
there, "nothing waiting" as 0, and the slots' replies read back for the queue."""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator

import pytest

from resolver.dns.addresses import HostPort
from resolver.net import mmsg
from resolver.net.libc import LEN_WORD, WORDS_PER_MSG
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


@pytest.mark.parametrize("address", [("127.0.0.1", 5353), ("::1", 53, 0, 0),
                                     ("fe80::1", 853, 7, 2)])
def test_socket_addresses_pack_as_the_kernel_writes_them_and_back(
        address: tuple[object, ...]) -> None:
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    name = mmsg.pack_sockaddr(family, address)
    assert len(name) == (28 if family == socket.AF_INET6 else 16)
    assert mmsg.unpack_sockaddr(family, name) == address


@pytest.mark.parametrize("batched", [True, False], ids=["sendmmsg", "sendto"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_an_outbox_sends_to_many_addresses_in_one_flush(host: str, batched: bool) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    receivers = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        sender.bind((host, 0))
        sender.setblocking(False)
        outbox = mmsg.Outbox(family, batched=batched)
        for index, receiver in enumerate(receivers):
            receiver.bind((host, 0))
            receiver.settimeout(5)
            name = mmsg.pack_sockaddr(family, receiver.getsockname())
            assert outbox.put(f"datagram {index}".encode(), name, index)
        # A second datagram to the first receiver, and one too long for a slot, refused.
        assert outbox.put(b"again", mmsg.pack_sockaddr(family, receivers[0].getsockname()), 3)
        assert not outbox.put(bytes(mmsg.SLOT_SIZE + 1), b"", 4)
        flushed = outbox.flush(sender.fileno(), sender.sendto)
        assert (flushed.failed, flushed.blocked, flushed.earlier) == ([], [], False)
        assert outbox.tags == []  # emptied: the next flush sends nothing
        assert outbox.flush(sender.fileno(), sender.sendto).failed == []
        got = [receiver.recvfrom(100) for receiver in receivers]
        again = receivers[0].recv(100)
        port = sender.getsockname()[1]
    for receiver in receivers:
        receiver.close()
    assert [data for data, _ in got] == [b"datagram 0", b"datagram 1", b"datagram 2"]
    assert again == b"again"
    assert {source[1] for _, source in got} == {port}


def test_an_outbox_fills_up_at_its_slots() -> None:
    outbox = mmsg.Outbox(socket.AF_INET, slots=2)
    name = mmsg.pack_sockaddr(socket.AF_INET, ("127.0.0.1", 9))
    assert outbox.put(b"a", name, 0) and outbox.put(b"b", name, 1)
    assert outbox.full and not outbox.put(b"c", name, 2)


@contextlib.contextmanager
def icmp_reporting() -> Iterator[tuple[bytes, socket.socket, socket.socket, bytes]]:
    """A closed port's address, a sender that gets ICMP reports (IP_RECVERR), and a receiver
    with its address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        closed_name = mmsg.pack_sockaddr(socket.AF_INET, closed.getsockname())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        sender.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
        sender.bind(("127.0.0.1", 0))
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        yield closed_name, sender, receiver, mmsg.pack_sockaddr(socket.AF_INET,
                                                                receiver.getsockname())


def test_an_error_about_an_earlier_datagram_retries_the_send_and_says_so() -> None:
    # A datagram to a closed port makes the kernel queue port unreachable on the sending
    # socket (IP_RECVERR): the next send reports ECONNREFUSED about that one, not about itself.
    with icmp_reporting() as (closed_name, sender, receiver, receiver_name):
        outbox = mmsg.Outbox(socket.AF_INET)
        outbox.put(b"to nobody", closed_name, "nobody")
        assert outbox.flush(sender.fileno(), sender.sendto).failed == []
        select.select([], [], [sender], 5)  # the ICMP error is in
        outbox.put(b"to somebody", receiver_name, "somebody")
        flushed = outbox.flush(sender.fileno(), sender.sendto)
        assert flushed.earlier and flushed.failed == []
        assert receiver.recv(100) == b"to somebody"


def test_a_send_cut_short_by_an_icmp_error_in_the_same_call_says_so() -> None:
    # On loopback the port unreachable for the first datagram is queued while the call runs:
    # sendmmsg then stops at the second, reporting only the one sent. The flush sends the rest
    # and says an error report waits (uvloop crashes on a socket left with one queued).
    with icmp_reporting() as (closed_name, sender, receiver, receiver_name):
        outbox = mmsg.Outbox(socket.AF_INET)
        outbox.put(b"to nobody", closed_name, "nobody")
        outbox.put(b"to somebody", receiver_name, "somebody")
        flushed = outbox.flush(sender.fileno(), sender.sendto)
        assert flushed.earlier and flushed.failed == []
        assert receiver.recv(100) == b"to somebody"
        report = sender.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        assert report[0] == b"to nobody"  # the report is there for the caller to read
