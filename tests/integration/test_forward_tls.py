"""DNS over TLS upstreams (``--upstream tls://ADDR:PORT#NAME``) against a real Unbound serving
DoT on loopback with a self-signed certificate: answers, certificate and name checks, fallback
to the next upstream, one connection reused for many pipelined questions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.forward.tls import UpstreamTLS
from tests.support.daemon import dockdns
from tests.support.net import addresses, ask
from tests.support.unbound import dot_unbound, self_signed

NAME = "dot.dockdns-infra.internal"
RECORDS = {f"n{n}.dot.infra": f"198.51.100.{80 + n}" for n in range(20)}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("dot"), NAME)


@pytest.fixture(scope="module")
def dot(certificate: tuple[Path, Path]) -> Iterator[int]:
    key, pem = certificate
    with dot_unbound(key, pem, RECORDS) as port:
        yield port


def test_names_are_answered_over_tls_with_the_certificate_checked(
        dot: int, certificate: tuple[Path, Path]) -> None:
    with dockdns("--upstream", f"tls://127.0.0.1:{dot}#{NAME}", "--upstream-ca",
                 str(certificate[1])) as daemon:
        udp = ask(daemon.host, daemon.port, "n0.dot.infra")
        tcp = ask(daemon.host, daemon.port, "n1.dot.infra", tcp=True)
    assert addresses(udp) == {"198.51.100.80"}
    assert addresses(tcp) == {"198.51.100.81"}


@pytest.mark.parametrize("wrong", ["name", "ca"])
def test_a_wrong_name_or_an_untrusted_certificate_fails(
        dot: int, certificate: tuple[Path, Path], wrong: str) -> None:
    name = "other.dockdns-infra.internal" if wrong == "name" else NAME
    ca = ["--upstream-ca", str(certificate[1])] if wrong == "name" else []
    with dockdns("--upstream", f"tls://127.0.0.1:{dot}#{name}", *ca) as daemon:
        reply = ask(daemon.host, daemon.port, "n2.dot.infra", timeout=5)
        log = daemon.log()
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert "certificate" in log.lower()


def test_a_failing_tls_upstream_falls_back_to_the_next(
        dot: int, certificate: tuple[Path, Path]) -> None:
    with dockdns("--upstream", f"tls://127.0.0.1:{dot}#wrong.dockdns-infra.internal",
                 "--upstream", f"tls://127.0.0.1:{dot}#{NAME}",
                 "--upstream-ca", str(certificate[1])) as daemon:
        reply = ask(daemon.host, daemon.port, "n3.dot.infra", timeout=5)
    assert addresses(reply) == {"198.51.100.83"}


def test_one_connection_carries_many_pipelined_questions(
        dot: int, certificate: tuple[Path, Path]) -> None:
    server = HostPort("127.0.0.1", dot, NAME)

    async def scenario() -> tuple[list[set[str]], int]:
        tls = UpstreamTLS(str(certificate[1]))
        try:
            queries = [dns.message.make_query(name, "A").to_wire() for name in RECORDS]
            replies = await asyncio.gather(*(
                tls.exchange(server, query, query[wire.HEADER.size:], 5) for query in queries))
            again = await tls.exchange(server, queries[0], queries[0][wire.HEADER.size:], 5)
            return [addresses(dns.message.from_wire(r)) for r in [*replies, again]], \
                tls.connections_opened
        finally:
            await tls.close()

    answers, opened = asyncio.run(scenario())
    assert answers == [{address} for address in RECORDS.values()] + [{"198.51.100.80"}]
    assert opened == 1


def test_a_connection_the_server_closed_is_replaced(
        dot: int, certificate: tuple[Path, Path]) -> None:
    server = HostPort("127.0.0.1", dot, NAME)

    async def scenario() -> tuple[list[set[str]], int]:
        tls = UpstreamTLS(str(certificate[1]))
        try:
            answers = []
            for name in ("n4.dot.infra", "n5.dot.infra"):
                query = dns.message.make_query(name, "A").to_wire()
                reply = await tls.exchange(server, query, query[wire.HEADER.size:], 5)
                answers.append(addresses(dns.message.from_wire(reply)))
                await asyncio.sleep(1.5)  # past Unbound's tcp-idle-timeout (1 s): it closes
            return answers, tls.connections_opened
        finally:
            await tls.close()

    answers, opened = asyncio.run(scenario())
    assert answers == [{"198.51.100.84"}, {"198.51.100.85"}]
    assert opened == 2
