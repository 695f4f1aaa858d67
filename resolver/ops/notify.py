"""systemd's notify protocol (sd_notify), spoken directly over the NOTIFY_SOCKET datagram socket.

With ``Type=notify`` systemd starts dependants only after READY=1; with ``WatchdogSec=`` it
restarts a daemon that stops sending WATCHDOG=1. With ``--workers N`` the first worker (a child of
the process systemd started) speaks for the set, as it serves the health endpoints; the unit
needs ``NotifyAccess=all`` for systemd to hear it. The protocol is one datagram of ``KEY=VALUE``
lines to a Unix socket named in the environment, so no library is needed. Without NOTIFY_SOCKET
(not run by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("dockdns.notify")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None,
                 main_pid: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        # The service's main process, as systemd knows it: this one, or with --workers N the
        # supervisor whose first worker speaks for the set.
        self.main_pid = os.getpid() if main_pid is None else main_pid
        self._socket: socket.socket | None = None
        if address:
            # Connected now, before root is dropped: the socket file may be writable by root only.
            target = "\0" + address[1:] if address.startswith("@") else address
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(target)
            except OSError as err:
                sock.close()
                log.warning("cannot reach NOTIFY_SOCKET %s: %s", address, err.strerror or err)
            else:
                self._socket = sock

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None,
                         main_pid: int | None = None) -> Notifier:
        """``main_pid``: the process systemd started, when that is not this one (a worker)."""
        environ = os.environ if environ is None else environ
        main_pid = os.getpid() if main_pid is None else main_pid
        watchdog: int | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process meant to ping (not a child we started).
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(main_pid)):
            watchdog = int(usec)
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog, main_pid)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> None:
        """``send(READY="1", STATUS="serving")`` -> one datagram ``READY=1\\nSTATUS=serving``."""
        if self._socket is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.send(message.encode())
        except OSError as err:
            log.warning("sd_notify failed: %s", err.strerror or err)

    async def watchdog(self) -> None:
        """Ping at half the interval systemd expects, as sd_watchdog_enabled(3) advises."""
        if self._socket is None or not self.watchdog_usec:
            return
        interval = self.watchdog_usec / 2_000_000
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
