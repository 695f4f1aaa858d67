"""The daemon's life: start the sources and listeners, serve until told to stop, then drain.

Phases as in uvicorn: ``startup()`` binds everything (a failure there is reported and nothing is
left half-open), ``serve()`` waits for a signal, ``shutdown()`` closes the listeners first, gives
in-flight queries up to ``DRAIN_SECONDS`` to finish, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any

from discovery.hosts import HostsSource
from discovery.registry import Registry
from resolver.config import Config, HostPort
from resolver.handler import AnswerSettings, QueryHandler
from resolver.sockets import bind_tcp, bind_udp
from resolver.tcp import TCPServerState
from resolver.udp_socket import UDPSocketListener

log = logging.getLogger("dockdns")

# How long in-flight queries may take to finish once a stop was asked for.
DRAIN_SECONDS = 2.0


class StartupError(Exception):
    """The daemon cannot start; the message is the one line the operator sees."""


def answer_settings(config: Config) -> AnswerSettings:
    return AnswerSettings(ttl=config.ttl, domain=config.domain, allow=config.allow)


def bind_problem(address: HostPort, err: OSError) -> str:
    if err.errno == errno.EACCES:
        return (f"cannot listen on {address}: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE); choose another address, e.g. --listen 127.0.0.1:5353")
    if err.errno == errno.EADDRINUSE:
        return (f"cannot listen on {address}: the address is already in use; stop the other "
                f"server or choose another with --listen")
    if err.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {address}: no interface has that address; choose another "
                f"with --listen")
    return f"cannot listen on {address}: {err.strerror or err}"


class Daemon:
    def __init__(self, config: Config, worker: int = 0) -> None:
        self.config = config
        # Which of --workers N this process is (0 when alone): what there must be only one of,
        # such as a metrics listener, belongs to worker 0.
        self.worker = worker
        self.registry = Registry()
        self.handler = QueryHandler(self.registry, answer_settings(config))
        self.hosts = HostsSource(self.registry, list(config.hosts_files))
        self.udp_listeners: list[UDPSocketListener] = []
        self.tcp_servers: list[asyncio.Server] = []
        self.tcp_state = TCPServerState(self.handler, config.tcp_idle_timeout, config.tcp_max)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self._signals = 0

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a background task; every one is kept so that shutdown can cancel and await it."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def startup(self) -> None:
        self.hosts.load()
        # What exists now is either there for good (modules) or acyclic (the registry from the
        # hosts files, possibly 100,000 names, freed by reference counting once replaced): the
        # cyclic collector need never scan it again, which spares the loop pauses of ~80 ms.
        gc.freeze()
        if self.config.hosts_files:
            self.spawn(self.hosts.watch(), "hosts-watch")
        try:
            await self._bind()
        except StartupError:
            await self._close_listeners()
            raise
        names = ", ".join(str(a) for a in self.config.listen)
        log.info("dockdns serving on %s (UDP and TCP), %d names in the registry", names,
                 self.registry.snapshot.name_count())

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        # With --workers N every worker binds the same addresses, and the kernel spreads queries
        # and connections over them.
        reuse_port = self.config.workers > 1
        for address in self.config.listen:
            try:
                udp_socket = bind_udp(address, reuse_port)
                tcp_socket = bind_tcp(address, reuse_port)
            except OSError as err:
                raise StartupError(bind_problem(address, err)) from None
            self.udp_listeners.append(UDPSocketListener(self.handler, udp_socket, loop))
            server = await loop.create_server(self.tcp_state.protocol, sock=tcp_socket)
            self.tcp_servers.append(server)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1 and sig == signal.SIGINT:
            log.warning("second interrupt: exiting at once")
            os._exit(1)
        log.info("received %s, shutting down", sig.name)
        self.stopping.set()

    async def serve(self) -> None:
        await self.startup()
        self.install_signal_handlers()
        await self.stopping.wait()
        await self.shutdown()

    async def _close_listeners(self) -> None:
        for server in self.tcp_servers:
            server.close()
        for listener in self.udp_listeners:
            listener.close()
        for server in self.tcp_servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def in_flight(self) -> set[asyncio.Task[None]]:
        pending: set[asyncio.Task[None]] = set()
        for listener in self.udp_listeners:
            pending |= listener.pending
        for connection in self.tcp_state.connections:
            pending |= connection.pending
        return pending

    async def shutdown(self) -> None:
        # Stop accepting first, so nothing new arrives while in-flight queries finish.
        for server in self.tcp_servers:
            server.close()
        in_flight = self.in_flight()
        if in_flight:
            await asyncio.wait(in_flight, timeout=DRAIN_SECONDS)
        for listener in self.udp_listeners:
            listener.close()
        for connection in list(self.tcp_state.connections):
            if connection.transport is not None:
                connection.transport.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=DRAIN_SECONDS)
        log.info("dockdns stopped")
