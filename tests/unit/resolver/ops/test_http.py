"""The metrics endpoint's HTTP server on a loopback port in-process: routes, HEAD, 404, 405, a
bad request line, and a request head too large is dropped without an answer."""

from __future__ import annotations

import asyncio

from resolver.ops.http import MAX_REQUEST_HEAD, HTTPServer, Response


def routes() -> dict[str, object]:
    def hello(headers: dict[str, str]) -> Response:
        return Response(200, f"hello {headers.get('x-who', 'nobody')}\n".encode())

    def down(headers: dict[str, str]) -> Response:
        return Response(503, b"not ready\n")

    return {"/hello": hello, "/down": down}


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return data


def run(requests: list[bytes]) -> list[bytes]:
    async def main() -> list[bytes]:
        server = HTTPServer(routes())  # type: ignore[arg-type]
        await server.start("127.0.0.1", 0)
        assert server.server is not None
        port = server.server.sockets[0].getsockname()[1]
        try:
            return [await exchange(port, request) for request in requests]
        finally:
            await server.close()

    return asyncio.run(main())


def test_responses() -> None:
    ok, head, down, missing, post, bad = run([
        b"GET /hello?x=1 HTTP/1.1\r\nX-Who: Tester\r\nHost: x\r\n\r\n",
        b"HEAD /hello HTTP/1.1\r\n\r\n",
        b"GET /down HTTP/1.0\r\n\r\n",
        b"GET /nope HTTP/1.1\r\n\r\n",
        b"POST /hello HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ])
    assert ok == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Length: 13\r\nConnection: close\r\n\r\nhello Tester\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13" in head
    assert down.startswith(b"HTTP/1.1 503 Service Unavailable") and down.endswith(b"not ready\n")
    assert missing.startswith(b"HTTP/1.1 404 ") and b"/metrics" in missing
    assert post.startswith(b"HTTP/1.1 405 ")
    assert bad.startswith(b"HTTP/1.1 400 ")


def test_an_oversized_head_is_dropped() -> None:
    (reply,) = run([b"GET /hello HTTP/1.1\r\nX-Pad: " + b"a" * (2 * MAX_REQUEST_HEAD)
                    + b"\r\n\r\n"])
    assert reply == b""
