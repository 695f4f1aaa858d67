"""The capacity benchmark's instruments on real sockets: a receive buffer that overflows shows as
drops of exactly that socket in /proc/net/udp and as RcvbufErrors in /proc/net/snmp, and the
watch over a process's sockets finds the process's own; the summary's target is lost == 0."""

from __future__ import annotations

import os
import socket

from benchmarks import capacity

SENT = 200


def test_an_overflowing_receive_buffer_is_seen_at_its_socket_and_in_snmp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's floor-ish
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        before = capacity.udp_counters()
        row = capacity.server_socket([os.getpid()], port)
        assert row is not None and row.drops == 0 and row.rx_queue == 0
        for number in range(SENT):  # nobody reads: the buffer fills, then the kernel drops
            client.sendto(number.to_bytes(2, "big") * 16, ("127.0.0.1", port))
        row = capacity.server_socket([os.getpid()], port)
        assert row is not None
        server.setblocking(False)
        queued = 0
        while True:
            try:
                server.recv(4096)
            except BlockingIOError:
                break
            queued += 1
        after = capacity.udp_counters()
    # Every datagram was either waiting in the socket or dropped at it, and counted there.
    assert 0 < queued < SENT and row.rx_queue > 0
    assert row.drops == SENT - queued
    # The machine-wide counters count other sockets too (the machine is shared): at least these.
    assert after["RcvbufErrors"] - before["RcvbufErrors"] >= row.drops
    assert after["InErrors"] - before["InErrors"] >= row.drops
    assert capacity.softnet_dropped() >= 0


def test_the_watch_reads_a_process_own_sockets() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mine:
        mine.bind(("127.0.0.1", 0))
        row = capacity.server_socket([os.getpid()], mine.getsockname()[1])
        assert row is not None and row.inode in capacity.socket_inodes(os.getpid())
        watch = capacity.ClientWatch(os.getpid(), row.inode)
        watch.sample()
        assert row.inode in watch.drops and watch.samples == 1
    # A process holds none of another's sockets.
    assert row.inode not in capacity.socket_inodes(1)


def test_the_target_is_nothing_lost() -> None:
    run = {"lost": 0, "sent": 10, "server_socket_drops": 0, "client_socket_drops": 0,
           "udp": {"RcvbufErrors": 0}, "softnet_dropped": 0}
    clean = capacity.summarize([run, run], {})
    assert clean["targets"]["lost"]["met"] and clean["lost_per_run"] == [0, 0]
    lossy = capacity.summarize([run, {**run, "lost": 3, "server_socket_drops": 3,
                                      "udp": {"RcvbufErrors": 3}}], {})
    assert not lossy["targets"]["lost"]["met"]
    assert (lossy["lost"], lossy["server_socket_drops"], lossy["udp"]["RcvbufErrors"]) == (3, 3, 3)
