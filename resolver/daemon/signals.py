"""Signals: SIGTERM and SIGINT ask for a stop (a second SIGINT exits at once), SIGHUP reloads.
The handlers only set a flag or call back; the daemon's lifecycle does the work."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("dockdns")


class StopSignals:
    def __init__(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping
        self.received = 0

    def install(self, loop: asyncio.AbstractEventLoop, reload: Callable[[], None]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, reload)

    def on_stop(self, sig: signal.Signals) -> None:
        self.received += 1
        if self.received > 1 and sig == signal.SIGINT:
            log.warning("second interrupt: exiting at once")
            os._exit(1)
        log.info("received %s, shutting down", sig.name)
        self.stopping.set()
