"""DNS over TLS upstreams (RFC 7858): one long-lived connection per upstream, reused by every
question and pipelined (RFC 7766 6.2.1: many queries outstanding on one connection, replies in
any order, matched by ID and question).

The server's certificate must chain to the configured CAs (--upstream-ca, else the system's
store) and be valid for the upstream's name (``tls://ADDR#NAME``); anything else fails the
attempt like a network error, so the next upstream is asked. A connection that breaks fails what
waits on it; the next query opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from dataclasses import dataclass, field

from resolver.dns.addresses import HostPort
from resolver.dns.framing import frame, read_framed
from resolver.dns.upstream_message import reply_question, same_question

log = logging.getLogger("dockdns.upstream")

# IDs tried before giving up on a connection whose pending table is that full.
ID_TRIES = 64


def tls_context(cafile: str) -> ssl.SSLContext:
    """The client context: certificates verified (against ``cafile``, or the system's CAs when
    empty) and host names checked. Raises OSError/ssl.SSLError for a file it cannot use."""
    context = ssl.create_default_context(cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    # Outstanding queries by ID: (question, the future of its reply).
    pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return self.task is not None and not self.task.done() and \
            not self.writer.is_closing()

    async def read(self, server: HostPort, ignored: list[int]) -> None:
        error: BaseException = ConnectionResetError(f"{server} closed the connection")
        try:
            while True:
                data = await read_framed(self.reader)
                waiter = self.pending.get(int.from_bytes(data[:2], "big"))
                question = reply_question(data)
                if waiter is None or question is None or not same_question(question,
                                                                           waiter[0]):
                    ignored[0] += 1
                    continue
                del self.pending[int.from_bytes(data[:2], "big")]
                if not waiter[1].done():
                    waiter[1].set_result(data)
        except (OSError, asyncio.IncompleteReadError) as err:
            if isinstance(err, OSError):
                error = err
        finally:
            self.writer.close()
            for _, future in self.pending.values():
                if not future.done():
                    future.set_exception(OSError(str(error)))
            self.pending.clear()


class UpstreamTLS:
    """The connections to every DNS-over-TLS upstream, opened when first needed."""

    def __init__(self, cafile: str = "") -> None:
        self.context = tls_context(cafile)
        self._connections: dict[HostPort, _Connection] = {}
        self._opening: dict[HostPort, asyncio.Task[_Connection]] = {}
        self.connections_opened = 0
        self._ignored = [0]  # replies that matched no query (a list: the readers add to it)

    @property
    def ignored(self) -> int:
        return self._ignored[0]

    def reconfigure(self, cafile: str) -> None:
        """A new CA file: connections made with the old one are closed."""
        self.context = tls_context(cafile)
        for connection in self._connections.values():
            connection.writer.close()
        self._connections.clear()

    async def _open(self, server: HostPort) -> _Connection:
        reader, writer = await asyncio.open_connection(
            server.host, server.port, ssl=self.context, server_hostname=server.tls_name)
        self.connections_opened += 1
        connection = _Connection(reader, writer)
        connection.task = asyncio.get_running_loop().create_task(
            connection.read(server, self._ignored), name="upstream-tls-reader")
        return connection

    async def _connection(self, server: HostPort) -> _Connection:
        connection = self._connections.get(server)
        if connection is not None and connection.usable:
            return connection
        # Questions arriving together share the one handshake.
        opening = self._opening.get(server)
        if opening is None:
            opening = asyncio.get_running_loop().create_task(self._open(server),
                                                             name="upstream-tls-connect")
            self._opening[server] = opening
            opening.add_done_callback(lambda _: self._opening.pop(server, None))
        connection = await asyncio.shield(opening)
        self._connections[server] = connection
        return connection

    async def exchange(self, server: HostPort, message: bytes, question: bytes,
                       timeout: float) -> bytes:
        """One query on ``server``'s connection with a fresh random ID; the reply must carry
        that ID and the question. Raises OSError (ssl.SSLError for certificate failures),
        TimeoutError."""
        async with asyncio.timeout(timeout):
            reused = server in self._connections and self._connections[server].usable
            try:
                return await self._ask(await self._connection(server), server, message,
                                       question)
            except OSError:
                if not reused:
                    raise
                # The server may have closed the idle connection as we wrote (RFC 7766 6.2.3
                # lets it): once more on a fresh one.
                broken = self._connections.pop(server, None)
                if broken is not None:
                    broken.writer.close()
                return await self._ask(await self._connection(server), server, message,
                                       question)

    async def _ask(self, connection: _Connection, server: HostPort, message: bytes,
                   question: bytes) -> bytes:
        for _ in range(ID_TRIES):
            qid = secrets.randbelow(65536)
            if qid not in connection.pending:
                break
        else:
            raise OSError(f"no free query ID on the connection to {server}")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        connection.pending[qid] = (question, future)
        try:
            connection.writer.write(frame(qid.to_bytes(2, "big") + message[2:]))
            await connection.writer.drain()
            return await future
        finally:
            if connection.pending.get(qid, (b"", None))[1] is future:
                del connection.pending[qid]

    async def close(self) -> None:
        for task in list(self._opening.values()):
            task.cancel()
        connections = list(self._connections.values())
        self._connections.clear()
        for connection in connections:
            connection.writer.close()
        readers = [c.task for c in connections if c.task is not None]
        if readers:
            await asyncio.wait(readers)
