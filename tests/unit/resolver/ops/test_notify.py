"""sd_notify over a real unix datagram socket of the test's own: the datagram's KEY=VALUE lines,
abstract socket names, the watchdog settings read from the environment, and nothing at all
without NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from resolver.ops.notify import Notifier
from tests.support.notify_socket import NotifySocket


def test_send_lines(tmp_path: Path) -> None:
    listener = NotifySocket(tmp_path / "notify", timeout=10)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": listener.path})
        assert notifier.enabled
        notifier.send(READY="1", STATUS="serving 2 listeners")
        assert listener.until("READY=1") == ["READY=1\nSTATUS=serving 2 listeners"]
        notifier.close()
        assert not notifier.enabled
        notifier.send(STOPPING="1")  # closed: nothing sent, nothing raised
        assert listener.pending() == []
    finally:
        listener.sock.close()


def test_abstract_socket() -> None:
    name = f"dockdns-unittests-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier(f"@{name}")
        notifier.send(READY="1")
        assert sock.recv(100) == b"READY=1"
        notifier.close()


def test_without_or_with_an_unreachable_socket(tmp_path: Path) -> None:
    assert not Notifier.from_environment({}).enabled
    Notifier.from_environment({}).send(READY="1")
    assert not Notifier(str(tmp_path / "nobody-listens")).enabled


@pytest.mark.parametrize(("environ", "pid", "expected"), [
    ({"WATCHDOG_USEC": "4000000"}, 10, 4_000_000),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "10"}, 10, 4_000_000),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "11"}, 10, None),  # meant for another one
    ({"WATCHDOG_USEC": "0"}, 10, None),
    ({"WATCHDOG_USEC": "soon"}, 10, None),
])
def test_watchdog_from_environment(environ: dict[str, str], pid: int,
                                   expected: int | None) -> None:
    notifier = Notifier.from_environment(environ, main_pid=pid)
    assert notifier.watchdog_usec == expected and notifier.main_pid == pid


def test_watchdog_pings(tmp_path: Path) -> None:
    listener = NotifySocket(tmp_path / "notify", timeout=10)
    try:
        notifier = Notifier(listener.path, watchdog_usec=20_000)  # every 10 ms

        async def main() -> None:
            task = asyncio.ensure_future(notifier.watchdog())
            await asyncio.get_running_loop().run_in_executor(None, listener.until, "WATCHDOG=1")
            await asyncio.get_running_loop().run_in_executor(None, listener.until, "WATCHDOG=1")
            task.cancel()

        asyncio.run(main())
        notifier.close()
        # Without a watchdog interval it returns at once instead of pinging.
        quiet = Notifier(listener.path)
        asyncio.run(asyncio.wait_for(quiet.watchdog(), 5))
        quiet.close()
    finally:
        listener.sock.close()
