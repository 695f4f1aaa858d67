"""A counting proxy in front of the Docker engine's unix socket.

A dockdns pointed at it (``--docker-host unix://PATH``) talks to the real engine through it, and
the proxy records every HTTP request it passes on (method, path without the API version, query),
and how many bytes the engine sent back for each path. It can also take the engine away and give
it back (``stop``/``start``: every connection is cut, the socket disappears), and silence the
event streams while everything else keeps working (``mute_events``: events the engine sends
are dropped, as a stream whose peer is gone without a word), and hold back some requests
(``hold``: each is counted when it arrives and reaches the engine only on ``release``, as
calls to an engine that is slow to answer them).

Requests are parsed only as far as counting needs: the request line, the headers and a body of
``Content-Length`` bytes (what the Docker SDK sends), and passed on whole; a connection that
switches protocols (attach, exec) or sends a chunked body is relayed without further counting.
The asyncio loop runs in a thread of its own, so synchronous tests and benchmarks can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# /v1.41/tasks -> /tasks
_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")
CHUNK = 65536
# A request head longer than this is not HTTP from the SDK: stop counting that connection.
MAX_HEAD = 1 << 20


@dataclass(frozen=True, slots=True)
class Request:
    at: float  # time.monotonic() when the request was read
    method: str
    path: str  # without the API version: /tasks, /services, /events, /info, ...
    query: dict[str, list[str]]
    held: bool = False  # whether it waited for ``EngineProxy.release``

    @property
    def filters(self) -> dict[str, Any]:
        """The ``filters`` parameter, decoded ({} when there is none)."""
        raw = self.query.get("filters")
        if not raw:
            return {}
        decoded = json.loads(raw[0])
        return decoded if isinstance(decoded, dict) else {}


@dataclass(slots=True, eq=False)  # kept in a set: hashed by identity
class _Connection:
    client: asyncio.StreamWriter
    engine: asyncio.StreamWriter | None = None
    path: str = ""  # of the request the engine is answering
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class EngineProxy:
    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._bytes: Counter[str] = Counter()
        self._muted = False
        self._held: Callable[[Request], bool] | None = None  # which wait for ``release``
        self._released: asyncio.Event | None = None  # on the proxy's loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    # --- what passed ---------------------------------------------------------------------------

    def requests(self, since: float = 0.0) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if r.at >= since]

    def counts(self, since: float = 0.0) -> Counter[str]:
        """Requests by path since ``since`` (a time.monotonic() value)."""
        return Counter(r.path for r in self.requests(since))

    def response_bytes(self) -> Counter[str]:
        """Bytes the engine sent back, by path (the event stream's under /events)."""
        with self._lock:
            return Counter(self._bytes)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes.clear()

    # --- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on ``path``."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_unix_server(self._accept, path=str(self.path)))
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="engine-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start listening")

    def stop(self) -> None:
        """The engine vanishes: stop listening and cut every connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def mute_events(self, muted: bool = True) -> None:
        """Drop (or, with False, pass on again) what the engine sends on event streams that are
        open now or opened later. The stream stays open: its reader just hears nothing. (Data
        dropped mid-chunk leaves the stream unreadable once passed on again: its reader then
        sees it end.)"""
        self._muted = muted

    def hold(self, which: Callable[[Request], bool]) -> None:
        """From now on, requests that ``which`` accepts (it is called in the proxy's thread)
        wait before reaching the engine, until ``release``."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(self._hold(which), loop).result(10)

    async def _hold(self, which: Callable[[Request], bool]) -> None:
        self._released = asyncio.Event()
        self._held = which

    def release(self) -> None:
        """Let every held request, and any later one, through."""
        self._held = None
        loop, released = self._loop, self._released
        if loop is not None and released is not None:
            loop.call_soon_threadsafe(released.set)

    def held(self) -> list[Request]:
        """The requests that arrived while held back (whether released since or not)."""
        with self._lock:
            return [r for r in self._requests if r.held]

    def __enter__(self) -> EngineProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the relay -----------------------------------------------------------------------------

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            for writer in (connection.client, connection.engine):
                if writer is not None:
                    writer.close()
            for task in connection.tasks:
                task.cancel()
        self._connections.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._connections.add(connection)
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            self._connections.discard(connection)
            return
        connection.engine = engine_writer
        loop = asyncio.get_running_loop()
        connection.tasks = [loop.create_task(self._requests_from(reader, connection)),
                            loop.create_task(self._answers_to(engine_reader, connection))]
        try:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        finally:
            for closing in (writer, engine_writer):
                closing.close()
            self._connections.discard(connection)

    async def _requests_from(self, reader: asyncio.StreamReader,
                             connection: _Connection) -> None:
        """Client -> engine: each request counted as its head and body go by, then passed on
        (after a wait, if its path is held back)."""
        assert connection.engine is not None
        buffer = b""
        counting = True
        try:
            while data := await reader.read(CHUNK):
                if not counting:
                    connection.engine.write(data)
                    await connection.engine.drain()
                    continue
                buffer += data
                while True:
                    request, size, counting = self._count(buffer, connection)
                    if request is None:
                        break
                    if request.held and self._released is not None:
                        await self._released.wait()
                    connection.engine.write(buffer[:size])
                    await connection.engine.drain()
                    buffer = buffer[size:]
                    if not counting:
                        break
                if not counting or len(buffer) > MAX_HEAD:
                    counting = False
                    connection.engine.write(buffer)  # not HTTP as the SDK sends it: relay it
                    await connection.engine.drain()
                    buffer = b""
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                connection.engine.write_eof()

    def _count(self, buffer: bytes,
               connection: _Connection) -> tuple[Request | None, int, bool]:
        """The first complete request in ``buffer``: (it, how many bytes it takes, whether to
        go on counting after it); (None, 0, True) while it is incomplete."""
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None, 0, True
        head = buffer[:end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) < 2:
            return None, 0, False
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if end + 4 + length > len(buffer):
            return None, 0, True  # the body is still coming
        url = urllib.parse.urlsplit(parts[1])
        path = _VERSION.sub("", url.path)
        request = Request(time.monotonic(), parts[0], path, urllib.parse.parse_qs(url.query))
        if self._held is not None and self._held(request):
            request = dataclasses.replace(request, held=True)
        with self._lock:
            self._requests.append(request)
        connection.path = path
        chunked = "chunked" in headers.get("transfer-encoding", "") or "upgrade" in headers
        return request, end + 4 + length, not chunked

    async def _answers_to(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        """Engine -> client, counted under the request being answered."""
        try:
            while data := await reader.read(CHUNK):
                with self._lock:
                    self._bytes[connection.path or "?"] += len(data)
                if self._muted and connection.path == "/events":
                    continue
                connection.client.write(data)
                await connection.client.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                connection.client.close()


def per_minute(requests: Iterable[Request], seconds: float) -> dict[str, float]:
    """Requests by path, scaled to a minute of ``seconds`` observed."""
    counted = Counter(r.path for r in requests)
    return {path: round(count * 60.0 / seconds, 2) for path, count in sorted(counted.items())}
