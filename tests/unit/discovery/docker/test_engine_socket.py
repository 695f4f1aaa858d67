"""The unix-socket probe made before any Docker client: a socket that accepts passes (and the
probe is closed again), a missing or refusing one raises OSError, other URLs are left alone."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket


def test_a_listening_socket_passes(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        check_unix_socket(f"unix://{path}", 5)
        server.settimeout(5)
        connection, _ = server.accept()
        with connection:
            # The probe hung up at once: the server reads the end of the stream.
            assert connection.recv(10) == b""


def test_missing_or_refusing_sockets_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_unix_socket(f"unix://{tmp_path}/missing.sock", 5)
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))  # bound but not listening: what a dead engine leaves behind
        with pytest.raises(OSError) as raised:
            check_unix_socket(f"unix://{path}", 5)
        assert raised.value.errno == errno.ECONNREFUSED


def test_other_urls_are_left_to_the_sdk() -> None:
    check_unix_socket("tcp://192.0.2.1:2375", 5)  # no connection attempted, nothing raised
    assert DEFAULT_ENGINE == "unix:///var/run/docker.sock"
