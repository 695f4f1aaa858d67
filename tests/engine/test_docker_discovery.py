"""What dockdns does beyond Docker's resolver, against the real engine: scoping by the client's
networks, the default bridge switch, health-aware answers, labels, SRV, the --domain suffix,
propagation of engine events (answers polled, never timed), and what the source reports.

Questions come from inside client containers (their own source address) or from the host (the
gateway's address, which is no container's: it sees every user-defined network). Names that are
not local go to a dnsmasq on loopback that answers REFUSED for everything: nothing leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from discovery.docker.source import DockerSource, default_hosts
from discovery.registry.registry import Registry
from resolver.answer.views import ViewTable
from tests.support.daemon import RunningDaemon, dockdns
from tests.support.engine import Box, Lab, Question, lab, wait_for
from tests.support.net import addresses, ask, free_port

pytestmark = pytest.mark.docker

# A name dockdns does not hold: the loopback upstream refuses it (or, without a forwarder,
# dockdns answers SERVFAIL itself).
NOT_LOCAL = {dns.rcode.REFUSED, dns.rcode.SERVFAIL}
HEALTH_CHECK = {"test": ["CMD-SHELL", "test -f /tmp/healthy"], "interval": 500_000_000,
                "timeout": 2_000_000_000, "retries": 1}
# A first check only after an hour: the container stays "starting".
SLOW_HEALTH_CHECK = {**HEALTH_CHECK, "interval": 3_600_000_000_000}


@pytest.fixture(scope="module")
def made() -> Iterator[Lab]:
    with lab("dd-d") as created:
        created.network("dd-da")
        created.network("dd-db")
        created.container("dd-dweb", "dd-da", ports=[80, (53, "udp")])
        created.container("dd-dother", "dd-db")
        created.container("dd-dclient", "dd-da")
        yield created


@dataclass
class Served:
    """A dockdns listening on a gateway address (on a free port: tests may run side by side)."""

    daemon: RunningDaemon
    host: str
    port: int


@contextlib.contextmanager
def serving(gateway: str, upstream: str, *args: str) -> Iterator[Served]:
    port = free_port(gateway)
    with dockdns("--upstream", upstream, *args, host=gateway, port=port, docker=True) as daemon:
        yield Served(daemon, gateway, port)


def from_box(made: Lab, box: Box, served: Served, name: str,
             rdtype: str = "A") -> dns.message.Message:
    reply = made.ask(box, served.host, [Question(name, rdtype)], port=served.port)[0]
    assert reply is not None, f"no reply to {name} from {box.name}"
    return reply


def from_host(served: Served, name: str, rdtype: str = "A") -> dns.message.Message:
    return ask(served.host, served.port, name, rdtype)


def answered(reply: dns.message.Message) -> set[str]:
    assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())
    return addresses(reply)


def not_local(reply: dns.message.Message) -> bool:
    return not reply.answer and reply.rcode() in NOT_LOCAL


def test_client_sees_only_its_networks(made: Lab, upstream: str) -> None:
    web, other, client = made.boxes["dd-dweb"], made.boxes["dd-dother"], made.boxes["dd-dclient"]
    with serving(made.networks["dd-da"].gateway, upstream) as served:
        assert answered(from_box(made, client, served, "dd-dweb")) == {web.ip("dd-da")}
        # dd-dother is only on dd-db, which dd-dclient is not attached to.
        assert not_local(from_box(made, client, served, "dd-dother"))
        assert not_local(from_box(made, client, served, "dd-dother.dd-db"))
        assert not_local(from_box(made, client, served, other.short_id))
        # The host is no container: it sees every user-defined network.
        assert answered(from_host(served, "dd-dother")) == {other.ip("dd-db")}
        assert answered(from_host(served, "dd-dweb.dd-da")) == {web.ip("dd-da")}


def test_network_names_match_in_any_case(made: Lab, upstream: str) -> None:
    """DNS names are case-insensitive (RFC 4343); Docker matches the network part of
    ``name.network`` only in the network's own case, dockdns in any."""
    web, client = made.boxes["dd-dweb"], made.boxes["dd-dclient"]
    with serving(made.networks["dd-da"].gateway, upstream) as served:
        reply = from_box(made, client, served, "DD-DWeb.DD-DA")
        assert answered(reply) == {web.ip("dd-da")}
        assert reply.answer[0].name.to_text() == "DD-DWeb.DD-DA."


def test_default_bridge_switch(made: Lab, upstream: str) -> None:
    plain = made.container("dd-dbridged", None)
    peer = made.container("dd-dbridgepeer", None)
    web = made.boxes["dd-dweb"]
    gateway = plain.inspect()["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    address = plain.ip("bridge")
    try:
        with serving(gateway, upstream) as served:
            # Docker's rule: no names on the default bridge, for its members or anyone else.
            assert not_local(from_box(made, peer, served, "dd-dbridged"))
            assert not_local(from_host(served, "dd-dbridged"))
            # A default-bridge container sees no user-defined network either.
            assert not_local(from_box(made, peer, served, "dd-dweb"))
        with serving(gateway, upstream, "--default-bridge-names") as served:
            assert answered(from_box(made, peer, served, "dd-dbridged")) == {address}
            assert answered(from_box(made, peer, served, plain.short_id)) == {address}
            assert answered(from_host(served, "dd-dbridged")) == {address}
            assert answered(from_host(served, "dd-dbridged.bridge")) == {address}
            # Still scoped: a container on dd-da does not see the default bridge.
            client = made.boxes["dd-dclient"]
            on_da = Served(served.daemon, made.networks["dd-da"].gateway, served.port)
            with dockdns("--upstream", upstream, "--default-bridge-names", host=on_da.host,
                         port=free_port(on_da.host), docker=True) as daemon:
                on_da = Served(daemon, on_da.host, daemon.port)
                assert not_local(from_box(made, client, on_da, "dd-dbridged"))
                assert answered(from_box(made, client, on_da, "dd-dweb")) == {web.ip("dd-da")}
    finally:
        made.remove(plain)
        made.remove(peer)


def _health(box: Box) -> str:
    return str(box.inspect()["State"].get("Health", {}).get("Status", ""))


def test_unhealthy_and_starting_containers_left_out(made: Lab, upstream: str) -> None:
    healthy = made.container("dd-dhealthy", "dd-da", aliases=["dd-dsvc"],
                             command=["sh", "-c", "echo > /tmp/healthy; exec sleep 3600"],
                             healthcheck=HEALTH_CHECK)
    sick = made.container("dd-dsick", "dd-da", aliases=["dd-dsvc"], healthcheck=HEALTH_CHECK)
    starting = made.container("dd-dstarting", "dd-da", aliases=["dd-dsvc"],
                              command=["sh", "-c", "echo > /tmp/healthy; exec sleep 3600"],
                              healthcheck=SLOW_HEALTH_CHECK)
    client = made.boxes["dd-dclient"]
    try:
        wait_for(lambda: _health(healthy) == "healthy" and _health(sick) == "unhealthy",
                 message="health checks settling")
        assert _health(starting) == "starting"
        with serving(made.networks["dd-da"].gateway, upstream) as served:
            assert answered(from_box(made, client, served, "dd-dsvc")) == {healthy.ip("dd-da")}
            assert answered(from_box(made, client, served, "dd-dhealthy")) == {
                healthy.ip("dd-da")}
            assert not_local(from_box(made, client, served, "dd-dsick"))
            assert not_local(from_box(made, client, served, "dd-dstarting"))
            # Its address still has its PTR: only name answers are health-aware.
            ptr = dns.reversename.from_address(sick.ip("dd-da")).to_text()
            reply = from_box(made, client, served, ptr, "PTR")
            assert [r.to_text() for r in reply.answer[0]] == ["dd-dsick.dd-da."]
            # The sick one recovers: the health_status event brings it back.
            sick.exec("sh", "-c", "echo > /tmp/healthy")
            wanted = {healthy.ip("dd-da"), sick.ip("dd-da")}
            wait_for(lambda: addresses(from_host(served, "dd-dsvc")) == wanted,
                     message="dd-dsick answered once healthy")
            assert answered(from_box(made, client, served, "dd-dsick")) == {sick.ip("dd-da")}
        with serving(made.networks["dd-da"].gateway, upstream, "--include-unhealthy") as served:
            every = {box.ip("dd-da") for box in (healthy, sick, starting)}
            assert answered(from_box(made, client, served, "dd-dsvc")) == every
            assert answered(from_box(made, client, served, "dd-dstarting")) == {
                starting.ip("dd-da")}
    finally:
        for box in (healthy, sick, starting):
            made.remove(box)


def test_labels_add_and_hide_names(made: Lab, upstream: str) -> None:
    labelled = made.container("dd-dlabelled", "dd-da",
                              labels={"dockdns.alias": "dd-dx, dd-dy.extra"})
    hidden = made.container("dd-dhidden", "dd-da", aliases=["dd-dhiddenalias"],
                            labels={"dockdns.ignore": "true"})
    client = made.boxes["dd-dclient"]
    try:
        with serving(made.networks["dd-da"].gateway, upstream) as served:
            address = {labelled.ip("dd-da")}
            assert answered(from_box(made, client, served, "dd-dx")) == address
            assert answered(from_box(made, client, served, "dd-dy.extra")) == address
            assert answered(from_box(made, client, served, "dd-dx.dd-da")) == address
            assert answered(from_box(made, client, served, "dd-dlabelled")) == address
            for name in ("dd-dhidden", "dd-dhiddenalias", hidden.short_id):
                assert not_local(from_box(made, client, served, name)), name
            # Its private address's reverse name is not in the registry either: --bogus-priv
            # (the default) answers NXDOMAIN for it rather than asking upstream.
            ptr = dns.reversename.from_address(hidden.ip("dd-da")).to_text()
            reply = from_box(made, client, served, ptr, "PTR")
            assert (reply.rcode(), reply.answer) == (dns.rcode.NXDOMAIN, [])
    finally:
        made.remove(labelled)
        made.remove(hidden)


def test_srv_for_exposed_ports(made: Lab, upstream: str) -> None:
    web, client = made.boxes["dd-dweb"], made.boxes["dd-dclient"]
    with serving(made.networks["dd-da"].gateway, upstream) as served:
        for name, port in (("_80._tcp.dd-dweb", 80), ("_53._udp.dd-dweb", 53),
                           ("_80._tcp.dd-dweb.dd-da", 80)):
            reply = from_box(made, client, served, name, "SRV")
            assert reply.rcode() == dns.rcode.NOERROR
            assert [r.to_text() for r in reply.answer[0]] == [f"0 0 {port} dd-dweb.dd-da."]
            glue = {(rrset.name.to_text(), rdata.to_text())
                    for rrset in reply.additional if rrset.rdtype == dns.rdatatype.A
                    for rdata in rrset}
            assert glue == {("dd-dweb.dd-da.", web.ip("dd-da"))}
        # A port it does not expose: the name exists, so NOERROR with no answer.
        reply = from_box(made, client, served, "_8080._tcp.dd-dweb", "SRV")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        # SRV is scoped like everything else.
        assert not_local(from_box(made, client, served, "_80._tcp.dd-dother", "SRV"))


def test_domain_suffix(made: Lab, upstream: str) -> None:
    web, client = made.boxes["dd-dweb"], made.boxes["dd-dclient"]
    with serving(made.networks["dd-da"].gateway, upstream, "--domain", "docker") as served:
        address = {web.ip("dd-da")}
        assert answered(from_box(made, client, served, "dd-dweb.docker")) == address
        assert answered(from_box(made, client, served, "dd-dweb.dd-da.docker")) == address
        assert answered(from_box(made, client, served, "dd-dweb")) == address
        assert not_local(from_box(made, client, served, "dd-dother.docker"))


def test_events_propagate(made: Lab, upstream: str) -> None:
    """Start, rename, connect, disconnect, stop and remove each show in answers; every answer is
    asked twice first so that a memoized reply would have to be invalidated."""
    with serving(made.networks["dd-da"].gateway, upstream) as served:
        def sees(name: str) -> set[str]:
            reply = from_host(served, name)
            return addresses(reply) if reply.rcode() == dns.rcode.NOERROR else set()

        for _ in range(2):
            assert sees("dd-dnew") == set()
        box = made.container("dd-dnew", "dd-da")
        address = box.ip("dd-da")
        wait_for(lambda: sees("dd-dnew") == {address}, message="started container answered")
        sees("dd-dnew")
        made.client.api.rename(box.id, "dd-dnewer")
        box.name = "dd-dnewer"
        wait_for(lambda: sees("dd-dnewer") == {address} and not sees("dd-dnew"),
                 message="renamed container under its new name only")
        made.connect(box, "dd-db")
        wait_for(lambda: sees("dd-dnewer.dd-db") == {box.ip("dd-db")},
                 message="connected network answered")
        made.client.api.disconnect_container_from_network(box.id, "dd-db")
        wait_for(lambda: not sees("dd-dnewer.dd-db"), message="disconnected network gone")
        made.client.api.pause(box.id)
        made.client.api.unpause(box.id)
        made.client.api.stop(box.id, timeout=0)
        wait_for(lambda: not sees("dd-dnewer"), message="stopped container gone")
        made.client.api.start(box.id)
        wait_for(lambda: sees("dd-dnewer") == {box.ip("dd-da")}, message="restarted answered")
        made.remove(box)
        wait_for(lambda: not sees("dd-dnewer"), message="removed container gone")


async def _source_view(made: Lab) -> None:
    registry = Registry()
    source = DockerSource(registry, default_hosts()[0])
    task = asyncio.get_running_loop().create_task(source.run())
    try:
        await asyncio.wait_for(source.settled.wait(), 30)
        assert source.ready and source.connected and source.error is None
        assert source.last_sync is not None
        snapshot = registry.snapshot
        views = ViewTable(snapshot)
        client = made.boxes["dd-dclient"]
        view = views.for_client(client.ip("dd-da"))
        assert view.networks == ("dd-da",) and view.forward
        assert view.container == "dd-dclient"
        # Docker's CVE-2024-29018 rule: only internal networks, no forwarding.
        internal_only = made.boxes["dd-dinternal"]
        both = made.boxes["dd-dinternalboth"]
        view = views.for_client(internal_only.ip("dd-dint"))
        assert view.networks == ("dd-dint",) and not view.forward
        view = views.for_client(both.ip("dd-dint"))
        assert view.networks == ("dd-da", "dd-dint") and view.forward
        # A non-container (the host) sees user-defined networks, not the default bridge.
        host = views.for_client("127.0.0.1")
        assert {"dd-da", "dd-db", "dd-dint"} <= set(host.networks)
        assert "bridge" not in host.networks and host.forward
        assert snapshot.networks["bridge"].default_bridge
        assert snapshot.networks["dd-dint"].internal
        assert "host" not in snapshot.networks and "none" not in snapshot.networks
        before = source.events_total
        await asyncio.to_thread(made.container, "dd-devents", "dd-da")
        for _ in range(400):  # bounded: 20 s
            if source.events_total > before and "dd-devents" in (
                    registry.snapshot.by_network.get("dd-da") or {}):
                break
            await asyncio.sleep(0.05)
        assert source.events_total > before
        assert "dd-devents" in registry.snapshot.by_network["dd-da"]
    finally:
        source.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_source_views_and_state(made: Lab) -> None:
    made.network("dd-dint", internal=True)
    made.container("dd-dinternal", "dd-dint")
    both = made.container("dd-dinternalboth", "dd-dint")
    made.connect(both, "dd-da")
    asyncio.run(_source_view(made))


async def _unreachable(path: str) -> None:
    registry = Registry()
    source = DockerSource(registry, f"unix://{path}")
    task = asyncio.get_running_loop().create_task(source.run())
    try:
        await asyncio.wait_for(source.settled.wait(), 30)
        assert not source.ready and not source.connected
        assert source.error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_unreachable_engine_still_serves(tmp_path: object, hosts_file: str) -> None:
    missing = f"/tmp/dd-no-engine-{free_port()}.sock"
    asyncio.run(_unreachable(missing))
    with dockdns("--docker-host", f"unix://{missing}", "--hosts-file", hosts_file,
                 "--upstream", f"127.0.0.1:{free_port()}", docker=True) as daemon:
        assert addresses(ask(daemon.host, daemon.port, "web1")) == {"10.1.2.3"}
        assert "unreachable" in daemon.log()
