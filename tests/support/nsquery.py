"""Ask DNS questions and print the raw replies; run inside a network namespace by
``tests.support.engine.Lab.ask`` (``nsenter -t PID -n python3 nsquery.py``).

Reads a JSON list of {server, port, name, type, tcp, timeout} on stdin and prints a JSON list with
one hex-encoded wire reply per question (null when none came). The bytes are passed on untouched,
so the test sees exactly what the server sent (case, flags, order).
"""

from __future__ import annotations

import json
import socket
import struct
import sys

import dns.message


def _exchange(server: str, port: int, payload: bytes, tcp: bool, timeout: float) -> bytes | None:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        try:
            if not tcp:
                sock.sendto(payload, (server, port))
                while True:
                    reply = sock.recv(65535)
                    if reply[:2] == payload[:2]:
                        return reply
            sock.connect((server, port))
            sock.sendall(struct.pack("!H", len(payload)) + payload)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = sock.recv(65535)
                if not chunk:
                    return None
                data += chunk
            return data[2:]
        except OSError:
            return None


def main() -> None:
    replies: list[str | None] = []
    for item in json.load(sys.stdin):
        query = dns.message.make_query(item["name"], item["type"]).to_wire()
        reply = _exchange(item["server"], item["port"], query, item["tcp"], item["timeout"])
        replies.append(reply.hex() if reply is not None else None)
    json.dump(replies, sys.stdout)


if __name__ == "__main__":
    main()
