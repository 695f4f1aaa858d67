"""Readiness and systemd notification: a daemon in this process with a readiness check shaped as
the Docker source's will be, and a real daemon subprocess reporting to a socket the test owns."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from discovery.registry.model import Client, Network, Record, SourcePart
from resolver.config import settings as config_module
from resolver.daemon.lifecycle import Daemon
from tests.support.daemon import dockdns
from tests.support.net import addresses, ask, free_port


@dataclass
class EngineCheck:
    """What the Docker source exposes: not ready until its first sync, with a reason."""

    name: str = "docker unix:///run/test.sock"
    ready: bool = False
    reason: str = "waiting for the first sync"


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    return sock, path


def _messages(sock: socket.socket, until: str) -> list[str]:
    """Datagrams received until one contains the line ``until`` (each datagram as text)."""
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if until in message.split("\n"):
            return seen


def test_readyz_follows_the_readiness_checks(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    notify, notify_path = _notify_socket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    metrics_port = free_port()
    config = config_module.build({"listen": [f"127.0.0.1:{free_port()}"], "docker": False,
                                  "metrics_listen": f"127.0.0.1:{metrics_port}"}, environ={})

    async def main() -> list[tuple[int, str]]:
        daemon = Daemon(config)
        check = EngineCheck()
        daemon.health.add_check(check)
        await daemon.startup()
        seen = [await _get(metrics_port, "/readyz"), await _get(metrics_port, "/healthz")]
        check.reason = "engine unreachable: connection refused"
        seen.append(await _get(metrics_port, "/readyz"))
        notify.setblocking(False)
        with pytest.raises(BlockingIOError):
            notify.recv(4096)  # not ready: systemd has not been told READY=1
        check.ready = True
        seen.append(await _get(metrics_port, "/readyz"))
        loop = asyncio.get_running_loop()
        notify.setblocking(True)
        notify.settimeout(10)
        ready = await loop.run_in_executor(None, _messages, notify, "READY=1")
        seen.append((0, ready[-1]))
        await daemon.shutdown()
        return seen

    seen = asyncio.run(main())
    notify.close()
    assert seen[0] == (503, "docker unix:///run/test.sock: waiting for the first sync\n")
    assert seen[1] == (200, "ok\n")  # alive all along
    assert seen[2] == (503, "docker unix:///run/test.sock: engine unreachable: "
                            "connection refused\n")
    assert seen[3] == (200, "ready\n")
    assert "READY=1" in seen[4][1].split("\n")


def test_systemd_notify_ready_watchdog_stopping(tmp_path: Path, hosts_file: str) -> None:
    notify, notify_path = _notify_socket(tmp_path)
    # 200 ms: the daemon pings every 100 ms, so a few pings arrive at once.
    env = {"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"}
    with dockdns("--hosts-file", hosts_file, env=env) as daemon:
        ready = _messages(notify, "READY=1")
        assert any(f"MAINPID={daemon.process.pid}" in m.split("\n") for m in ready)
        _messages(notify, "WATCHDOG=1")
        _messages(notify, "WATCHDOG=1")
        daemon.signal(signal.SIGHUP)  # no config changes, but the reload is announced
        _messages(notify, "RELOADING=1")
        _messages(notify, "READY=1")
        daemon.signal(signal.SIGTERM)
        _messages(notify, "STOPPING=1")
        assert daemon.process.wait(timeout=10) == 0
    notify.close()


def test_watchdog_for_another_pid_is_not_ours(tmp_path: Path) -> None:
    from resolver.ops.notify import Notifier

    notify, notify_path = _notify_socket(tmp_path)
    other = Notifier.from_environment({"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000",
                                       "WATCHDOG_PID": str(os.getpid() + 1)})
    ours = Notifier.from_environment({"NOTIFY_SOCKET": "@" + "dockdns-absent-" + str(os.getpid()),
                                      "WATCHDOG_USEC": "1000"})
    assert other.enabled and other.watchdog_usec is None
    assert not ours.enabled  # nobody listens on that abstract name: warned, then silent
    ours.send(READY="1")
    other.close()
    notify.close()


def test_sidecar_is_ready_and_scoped_once_its_container_is_known(hosts_file: str) -> None:
    """--as-container through the real UDP listener, with the registry filled as the Docker
    source will fill it (a Client entry naming the container)."""
    metrics_port, dns_port = free_port(), free_port()
    config = config_module.build({"listen": [f"127.0.0.1:{dns_port}"], "docker": False,
                                  "metrics_listen": f"127.0.0.1:{metrics_port}",
                                  "as_container": "app"}, environ={})

    async def main() -> list[tuple[int, str] | set[str]]:
        daemon = Daemon(config)
        await daemon.startup()
        loop = asyncio.get_running_loop()
        seen: list[tuple[int, str] | set[str]] = [await _get(metrics_port, "/readyz")]
        seen.append(await loop.run_in_executor(None, _addresses, dns_port, "db"))
        daemon.registry.update("docker", SourcePart(
            networks=(Network("back"), Network("front")),
            records=(Record(("db",), ipv4=("10.20.0.2",), network="back", source="docker"),
                     Record(("web",), ipv4=("10.10.0.2",), network="front", source="docker")),
            clients=(Client("10.20.0.3", ("back",), "app"),)))
        seen.append(await _get(metrics_port, "/readyz"))
        seen.append(await loop.run_in_executor(None, _addresses, dns_port, "db"))
        seen.append(await loop.run_in_executor(None, _addresses, dns_port, "web"))
        await daemon.shutdown()
        return seen

    seen = asyncio.run(main())
    assert seen[0] == (503, "sidecar: container app is not in the registry (yet): loopback "
                            "clients see no network until it is\n")
    assert seen[1] == set()  # no network seen yet: db is unknown (SERVFAIL, no upstream)
    assert seen[2] == (200, "ready\n")
    assert seen[3] == {"10.20.0.2"}  # app is on back: db resolves from loopback
    assert seen[4] == set()  # web is on front, which app is not attached to


def _addresses(port: int, name: str) -> set[str]:
    return addresses(ask("127.0.0.1", port, name))
