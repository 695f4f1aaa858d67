"""A minimal HTTP/1.1 server on the daemon's own event loop for /metrics, /healthz and /readyz.

Why on the loop and not prometheus-client's server thread: a scrape then reads the counters and
the registry from the thread that owns them (no locking, no torn reads), the endpoint shuts down
with the listeners, and /healthz answering at all proves the loop that answers DNS is turning,
which a separate thread could not show. A scrape costs the loop well under a millisecond.
Each request gets one response and the connection is closed: scrapers and probes need no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from resolver.ops.logs import RateLimitedLog

log = logging.getLogger("dockdns.http")
errors = RateLimitedLog(log)

# A request head larger than this is not a scraper or a probe; the connection is dropped.
MAX_REQUEST_HEAD = 8192
# A client that has not sent its request head by then is dropped (slow or idle connections).
REQUEST_TIMEOUT = 5.0

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


# A route gets the request's headers (lower-case names) and returns the response.
Route = Callable[[dict[str, str]], Response]


class HTTPServer:
    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port, reuse_address=True,
                                                 limit=MAX_REQUEST_HEAD)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response, head_only = await self._respond(reader)
            writer.write(_encode(response, head_only))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass  # the client went away or sent something too large or too slowly
        except Exception:
            errors.exception("HTTP request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response(400, b"bad request line\n"), False
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        route = self.routes.get(target.split("?", 1)[0])
        if route is None:
            return Response(404, b"not found; try /metrics, /healthz or /readyz\n"), False
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n"), False
        return route(headers), method == "HEAD"


def _encode(response: Response, head_only: bool) -> bytes:
    head = (f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"Connection: close\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body
