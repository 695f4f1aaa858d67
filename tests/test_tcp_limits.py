"""TCP bounds hit on purpose over real sockets: the connection cap and the idle timeout."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dns.message
import dns.query

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask


def hosts_file(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text("10.1.2.3 web1\n")
    return str(path)


def query_on(sock: socket.socket) -> dns.message.Message:
    query = dns.message.make_query("web1", "A")
    dns.query.send_tcp(sock, query)
    return dns.query.receive_tcp(sock, expiration=time.time() + 5)[0]


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_beyond_the_cap_are_closed(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-max", "2") as server:
        first = socket.create_connection((server.host, server.port))
        second = socket.create_connection((server.host, server.port))
        try:
            assert addresses(query_on(first)) == {"10.1.2.3"}
            assert addresses(query_on(second)) == {"10.1.2.3"}
            with socket.create_connection((server.host, server.port)) as third:
                assert closed_by_peer(third, wait=5)
            # The open ones keep working, and UDP is unaffected.
            assert addresses(query_on(first)) == {"10.1.2.3"}
            assert addresses(ask(server.host, server.port, "web1")) == {"10.1.2.3"}
        finally:
            first.close()
            second.close()
        assert "TCP connection limit (2) reached" in server.log()


def test_idle_connections_are_closed(tmp_path: Path) -> None:
    with dockdns("--hosts-file", hosts_file(tmp_path), "--tcp-idle-timeout", "0.5") as server:
        with socket.create_connection((server.host, server.port)) as sock:
            assert addresses(query_on(sock)) == {"10.1.2.3"}
            assert closed_by_peer(sock, wait=10)
