"""The daemon in-process on loopback (no subprocess): startup binds UDP, TCP and the metrics
listener and answers from the hosts file and the upstream; /healthz and /readyz follow its
phases; a config applied live changes answers while restart-only settings are kept; shutdown
closes every listener; a bind failure is one StartupError line and leaves nothing bound."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from resolver.config.settings import Config, build
from resolver.daemon.lifecycle import Daemon, StartupError
from resolver.dns.addresses import HostPort
from tests.support.net import free_port
from tests.support.upstream import FaultServer


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


def make_config(tmp_path: Path, upstream: FaultServer, **extra: object) -> Config:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 web1\n")
    flags: dict[str, object] = {
        "listen": [f"127.0.0.1:{free_port()}"], "hosts_files": [str(hosts)],
        "upstreams": [f"{upstream.host}:{upstream.port}"], "docker": "false",
        "swarm": "false", "metrics_listen": f"127.0.0.1:{free_port()}",
        # The upstream's names are under .test, which dockdns otherwise answers itself.
        "special_names": "false", **extra}
    return build(flags, environ={})


async def http_get(address: HostPort, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def ask(address: HostPort, name: str, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return await dns.asyncquery.tcp(query, address.host, port=address.port, timeout=5)
    return await dns.asyncquery.udp(query, address.host, port=address.port, timeout=5)


def running(config: Config, body: Callable[[Daemon], Awaitable[None]]) -> None:
    async def main() -> None:
        daemon = Daemon(config, reread=None)
        await daemon.startup()
        try:
            await body(daemon)
        finally:
            if not daemon.health.stopping:
                await daemon.shutdown()

    asyncio.run(main())


def test_serves_reloads_and_shuts_down(tmp_path: Path) -> None:
    with FaultServer() as upstream:
        upstream.add("www.up.test", "A", 300, "192.0.2.40")
        config = make_config(tmp_path, upstream)
        (listen,) = config.listen

        async def body(daemon: Daemon) -> None:
            assert daemon.health.listening
            assert (await http_get(config.metrics_listen, "/healthz")).endswith(b"\r\n\r\nok\n")
            assert (await http_get(config.metrics_listen, "/readyz")).endswith(b"ready\n")
            udp = await ask(listen, "web1")
            assert [r.to_text() for r in udp.answer[0]] == ["10.1.2.3"] and udp.answer[0].ttl == 600
            tcp = await ask(listen, "www.up.test", tcp=True)
            assert [r.to_text() for r in tcp.answer[0]] == ["192.0.2.40"]
            metrics = await http_get(config.metrics_listen, "/metrics")
            assert b'dockdns_queries_total{qtype="A",rcode="NOERROR",source="local"} 1.0' \
                in metrics
            # A live change (ttl) applies at once; a restart-only one (listen) is kept.
            other = HostPort("127.0.0.1", free_port())
            daemon.apply(make_config(tmp_path, upstream, ttl="30",
                                     listen=[str(other)],
                                     metrics_listen=str(config.metrics_listen)))
            assert daemon.config.listen == (listen,) and daemon.config.ttl == 30
            assert (await ask(listen, "web1")).answer[0].ttl == 30
            await daemon.shutdown()
            assert daemon.health.stopping and not daemon.tasks
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(listen.host, listen.port)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(config.metrics_listen.host,
                                              config.metrics_listen.port)

        running(config, body)
        assert upstream.count("www.up.test") == 1


def test_a_bind_failure_is_one_line_and_leaves_nothing_bound(tmp_path: Path) -> None:
    with FaultServer() as upstream, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        first = free_port()
        config = make_config(tmp_path, upstream,
                             listen=[f"127.0.0.1:{first}", f"127.0.0.1:{port}"])

        async def main() -> None:
            daemon = Daemon(config)
            with pytest.raises(StartupError) as raised:
                await daemon.startup()
            assert str(raised.value) == (
                f"cannot listen on 127.0.0.1:{port}: the address is already in use; stop the "
                "other server or choose another with --listen")
            assert not daemon.health.listening
            # Its background tasks (the sources' and the forwarder's upkeep) were cancelled,
            # and those not yet ended end so.
            tasks = list(daemon.tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            assert all(task.cancelled() for task in tasks)

        asyncio.run(main())
        # The first address was bound, then let go again.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(("127.0.0.1", first))


def test_reload_keeps_the_old_config_when_the_new_one_is_invalid(tmp_path: Path) -> None:
    with FaultServer() as upstream:
        config = make_config(tmp_path, upstream, metrics="false")
        reads: list[str] = []

        def reread() -> Config:
            reads.append("read")
            return build({"ttl": "-5"}, environ={})

        async def main() -> None:
            daemon = Daemon(config, reread=reread)
            daemon.reload()
            assert reads == ["read"] and daemon.config is config
            await daemon.forwarder.close()

        asyncio.run(main())
