"""A NOTIFY_SOCKET of the test's own: what systemd would receive from a ``Type=notify`` service."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path


class NotifySocket:
    """A bound unix datagram socket; ``path`` goes into the daemon's NOTIFY_SOCKET."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen: list[str] = []  # every datagram received so far, as text

    def until(self, line: str) -> list[str]:
        """Datagrams received until one holds ``line`` (e.g. ``READY=1``); fails after the
        socket's timeout rather than hanging."""
        self.sock.settimeout(self.timeout)
        got: list[str] = []
        while True:
            message = self.sock.recv(4096).decode()
            got.append(message)
            self.seen.append(message)
            if line in message.split("\n"):
                return got

    def pending(self) -> list[str]:
        """Whatever has arrived and not been read yet, without waiting."""
        self.sock.setblocking(False)
        got: list[str] = []
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        self.seen.extend(got)
        return got

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def notify_socket(directory: Path) -> Iterator[NotifySocket]:
    made = NotifySocket(directory / "notify.sock")
    try:
        yield made
    finally:
        made.close()


def lines(messages: list[str]) -> list[str]:
    """Every ``KEY=VALUE`` line of ``messages``, in order."""
    return [line for message in messages for line in message.split("\n")]
