"""The daemon's life: start the sources and listeners, serve until told to stop, then drain.
The components themselves are made in resolver/daemon/build.py, signals are resolver/daemon/
signals.py.

Phases as in uvicorn: ``startup()`` binds everything (a failure there is reported and nothing is
left half-open), ``serve()`` waits for a signal, ``shutdown()`` stops taking queries first, gives
in-flight queries up to ``--drain-timeout`` to finish, then answers what is left SERVFAIL.
SIGHUP re-reads the config and applies what can change without a restart
(``resolver/config/reload.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from resolver.config import reload, slices
from resolver.config.settings import Config, ConfigError
from resolver.daemon.build import build
from resolver.daemon.signals import StopSignals
from resolver.daemon.sources import static_conflict
from resolver.ops import buildinfo
from resolver.ops.endpoints import routes
from resolver.ops.http import HTTPServer
from resolver.ops.logs import configure
from resolver.ops.privileges import PrivilegeError, drop_to, unreadable
from resolver.ops.querylog import log_query
from resolver.resolved.integration import ResolvedIntegration, ResolvedUnavailable
from resolver.serve.sockets import bind_problem, bind_tcp, bind_udp
from resolver.serve.udp import UDPSocketListener

log = logging.getLogger("dockdns")

# How long background tasks may take to end once cancelled (the drain of queries in flight is
# --drain-timeout).
DRAIN_SECONDS = 2.0
# How long startup waits for the Docker engines' first listing before it serves anyway, so that
# container names answer from the first query when the engine is there, and an unreachable or
# slow engine delays nothing much.
FIRST_SYNC_SECONDS = 5.0

# Called with the new config after SIGHUP; the forwarder registers one to take new upstreams,
# zones and cache settings.
ReconfigureHook = Callable[[Config], None]


class StartupError(Exception):
    """The daemon cannot start; the message is the one line the operator sees."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: a setting cannot be honoured (--resolved on)


class Daemon:
    def __init__(self, config: Config, reread: Callable[[], Config] | None = None,
                 worker: int = 0) -> None:
        """``reread`` builds the config again from the same file, environment and flags."""
        self.config = config
        self.reread = reread
        # Which of --workers N this process is (0 when alone): what there must be only one of,
        # such as the metrics listener, belongs to worker 0.
        self.worker = worker
        parts = build(config, worker)
        self.registry = parts.registry
        self.forwarder = parts.forwarder
        self.handler = parts.handler
        self.sources = parts.sources
        self.limiter = parts.limiter
        self.tcp_state = parts.tcp_state
        self.health = parts.health
        self.metrics = parts.metrics
        self.notifier = parts.notifier
        self.supervisor = parts.supervisor
        self.udp_listeners: list[UDPSocketListener] = []
        self.tcp_servers: list[asyncio.Server] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()
        self.signals = StopSignals(self.stopping)
        self.http: HTTPServer | None = None
        # Called with the whole new config after SIGHUP, once every component took its slice.
        self.reconfigure_hooks: list[ReconfigureHook] = []
        # --- systemd-resolved (resolver/resolved/): worker 0 registers for all of them --------
        self.resolved = ResolvedIntegration(config, self.registry, [self.handler, self.forwarder],
                                            self.forwarder.source, register=worker == 0)
        # --- end systemd-resolved ---------------------------------------------------------------

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
        for source in self.sources:
            await source.start()
        self.forwarder.start()
        self.spawn(self.forwarder.run(), "forwarder")
        for source in self.sources:
            self.spawn(self.supervisor.run(source), f"source-{source.name}")
        await self._first_sync()
        # What exists now is either there for good (modules) or acyclic (the registry, possibly
        # 100,000 names, freed by reference counting once replaced): the cyclic collector need
        # never scan it again, which spares the loop pauses of ~80 ms.
        gc.freeze()
        try:
            conflict = static_conflict(self.sources)
            if conflict is not None:
                raise ConfigError("records", conflict)
            await self._bind()
            await self._serve_http()
            await self.resolved.start()  # systemd-resolved: before root is dropped
            if self.config.user is not None:
                user = drop_to(self.config.user)
                log.info("running as user %s (uid %d)", user.pw_name, user.pw_uid)
                for path in unreadable(self.config.hosts_files):
                    log.warning("hosts file %s cannot be read by user %s: changes to it will "
                                "not be seen (its records as read at start are kept)", path,
                                user.pw_name)
        except (StartupError, PrivilegeError, ConfigError, ResolvedUnavailable) as err:
            await self.resolved.stop()  # systemd-resolved
            await self._close_listeners()
            for source in self.sources:
                source.close()
            for task in list(self.tasks):
                task.cancel()
            await self.forwarder.close()
            if isinstance(err, ConfigError):
                raise  # exit 2, as any other invalid setting
            raise StartupError(str(err), getattr(err, "exit_code", 1)) from None
        self.health.listening = True
        self.forwarder.source.describe()
        names = ", ".join(str(a) for a in self.config.listen)
        build = buildinfo.current()
        log.info("dockdns serving on %s (UDP and TCP), %d names in the registry; %s", names,
                 self.registry.snapshot.name_count(), build.describe())
        if build.stale:
            log.warning("changed since they were compiled, so not what runs: %s (rebuild: "
                        "pip install -e .)", ", ".join(build.stale))
        if self.notifier.enabled:
            self.spawn(self._notify_ready(), "notify-ready")
            self.spawn(self.notifier.watchdog(), "watchdog")

    async def _notify_ready(self) -> None:
        # After the first Docker sync when there is a Docker source: that is what readiness waits
        # for, so systemd starts dependants only once container names resolve.
        await self.health.wait_ready()
        self.notifier.send(READY="1", STATUS="serving", MAINPID=str(self.notifier.main_pid))

    async def _first_sync(self) -> None:
        """Give remote sources (Docker engines, Swarm managers) a bounded wait for their first
        sync, all at once, so that the first queries are answered from a full registry; an
        unreachable engine does not keep the daemon from serving."""
        waits = [source.first_sync() for source in self.sources]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), FIRST_SYNC_SECONDS)

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        # With --workers N every worker binds the same addresses, and the kernel spreads queries
        # and connections over them.
        reuse_port = self.config.workers > 1
        for address in self.config.listen:
            try:
                udp_socket = bind_udp(address, reuse_port, self.config.udp_buffer,
                                      insist="udp_buffer" in self.config.origins)
                tcp_socket = bind_tcp(address, reuse_port)
            except OSError as err:
                raise StartupError(bind_problem(address, err)) from None
            self.udp_listeners.append(
                UDPSocketListener(self.handler, udp_socket, loop, self.limiter))
            server = await loop.create_server(self.tcp_state.protocol, sock=tcp_socket)
            self.tcp_servers.append(server)

    async def _serve_http(self) -> None:
        # With --workers N only the first worker serves metrics and health (one port, one
        # listener); its counters are its own share of the queries.
        if not self.config.metrics or self.worker != 0:
            return
        self.http = HTTPServer(routes(self.metrics, self.health))
        address = self.config.metrics_listen
        try:
            await self.http.start(address.host, address.port)
        except OSError as err:
            raise StartupError(bind_problem(address, err, "metrics")) from None

    def install_signal_handlers(self) -> None:
        self.signals.install(asyncio.get_running_loop(), self.reload)

    def reload(self) -> None:
        """SIGHUP: re-read the config; apply it unless it is invalid (then keep the old one)."""
        if self.reread is None:
            log.warning("received SIGHUP, but this daemon has no config to re-read")
            return
        try:
            new = self.reread()
        except ConfigError as err:
            log.error("received SIGHUP; config not reloaded, still running the old one: %s", err)
            return
        self.notifier.send(RELOADING="1")
        self.apply(new)
        self.notifier.send(READY="1", STATUS="serving")

    def apply(self, new: Config) -> None:
        """Switch the running daemon to ``new``, as far as it can change without a restart: each
        component whose area of the settings table changed gets its new slice."""
        merged, applied, kept = reload.merge(self.config, new)
        self.config = merged
        if kept:
            log.warning("config reloaded; %s changed but only a restart applies that",
                        ", ".join(kept))
        changed = reload.areas(applied)
        if "logs" in changed:
            configure(merged.log_level, merged.log_format == "json")
            self.handler.query_log = log_query if merged.log_queries else None
        if reload.drops_memo(applied):
            # Swaps the views in one assignment: queries keep being answered, from new memos.
            self.handler.reconfigure(slices.answer_settings(merged))
        if "tcp" in changed:
            self.tcp_state.reconfigure(slices.tcp_settings(merged))
        if "discovery" in changed:
            for source in self.sources:
                source.reconfigure(slices.discovery_settings(merged))
        if "forward" in changed:
            self.forwarder.reconfigure(slices.forward_settings(merged))
        for hook in self.reconfigure_hooks:
            hook(merged)
        log.info("config reloaded%s", f"; changed: {', '.join(applied)}" if applied else
                 ", nothing changed")

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
        if self.http is not None:
            await self.http.close()

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The TCP queries being answered (each a task; UDP ones wait in their listener)."""
        pending: set[asyncio.Task[None]] = set()
        for connection in self.tcp_state.connections:
            pending |= connection.pending
        return pending

    async def shutdown(self) -> None:
        self.health.stopping = True
        self.notifier.send(STOPPING="1", STATUS="draining")
        # Stop taking queries first, so nothing new arrives while in-flight queries finish; the
        # sockets stay open so that those can still send their replies.
        for server in self.tcp_servers:
            server.close()
        for listener in self.udp_listeners:
            listener.stop_reading()
        for connection in list(self.tcp_state.connections):
            connection.stop_reading()
        drain = self.config.drain_timeout
        waiting = sum(len(listener.waiting) for listener in self.udp_listeners)
        in_flight = self.in_flight()
        if in_flight or waiting:
            started = time.monotonic()
            left: set[asyncio.Task[None]] = set()
            if in_flight:
                _, left = await asyncio.wait(in_flight, timeout=drain) if drain > 0 else (
                    set(), in_flight)
            # Cancelled, each query answers SERVFAIL on its way out (the TCP connections'
            # tasks; the UDP listeners answer theirs in ``drain``), while the sockets are open.
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
            remaining = max(0.0, drain - (time.monotonic() - started))
            # All listeners at once: each waits out the same remainder, not one after another.
            given_up = len(left) + sum(await asyncio.gather(
                *(listener.drain(remaining) for listener in self.udp_listeners)))
            log.info("drained in-flight queries: %d cancelled after %g s (answered SERVFAIL)",
                     given_up, drain)
        else:
            log.info("drained in-flight queries: 0 cancelled (none were in flight)")
        for listener in self.udp_listeners:
            listener.close()
        for connection in list(self.tcp_state.connections):
            if connection.transport is not None:
                connection.transport.close()
        if self.http is not None:
            await self.http.close()
        await self.resolved.stop()  # systemd-resolved: revert the link
        for source in self.sources:
            source.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=DRAIN_SECONDS)
        await self.forwarder.close()
        self.notifier.close()
        stats = self.handler.stats
        log.info("dockdns stopped; answered %d queries (%d from the memo), dropped %d",
                 stats.answered(), stats.memo_hits(), stats.dropped)
