"""A forwarded question leaves no reference cycle behind, through the real UDP listener, handler,
forward chain and upstream sockets.

Every object a question makes must be freed by reference counting the moment the reply is out.
Compiled (setup.py), a closure and its environment refer to each other: one closure on this path
was a cycle per question, which only the cyclic collector frees, and its collections then took
a tenth of a miss's CPU (resolver/answer/chain.py, ``_Then``). This holds in the pure build too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
from typing import Any

import dns.message
import dns.rcode

from discovery.registry.registry import Registry
from resolver.answer.handler import QueryHandler
from resolver.answer.settings import AnswerSettings
from resolver.config.settings import Config
from resolver.config.slices import forward_settings
from resolver.dns.addresses import HostPort
from resolver.forward.forwarder import UpstreamForwarder
from resolver.serve.sockets import bind_udp
from resolver.serve.udp import UDPSocketListener
from tests.support.net import free_port
from tests.support.upstream import FaultServer

ZONE = "cycles.test"
NAMES = 30


def query(name: str, qid: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = qid
    return message.to_wire()


def ours(thing: Any) -> bool:
    """Made by dockdns's own code (the test's asyncio client side is not under test here)."""
    module = getattr(type(thing), "__module__", "") or ""
    if type(thing).__name__ == "function":
        module = getattr(thing, "__module__", "") or ""
    return module.partition(".")[0] in ("resolver", "discovery")


def test_forwarded_misses_and_cache_hits_leave_no_reference_cycle() -> None:
    with FaultServer(zone=ZONE) as upstream:
        for index in range(NAMES):
            upstream.add(f"n{index}.{ZONE}", "A", 60, f"198.51.100.{index + 1}")
        config = Config(listen=(HostPort("127.0.0.1", free_port()),), resolv_conf=os.devnull,
                        upstreams=(HostPort(upstream.host, upstream.port),),
                        special_names=False)

        async def scenario() -> tuple[list[int], list[str]]:
            loop = asyncio.get_running_loop()
            forwarder = UpstreamForwarder(forward_settings(config))
            forwarder.start()
            handler = QueryHandler(Registry(), AnswerSettings(), forwarder=forwarder)
            listener = UDPSocketListener(handler, bind_udp(HostPort("127.0.0.1", 0)), loop)
            port = listener.sock.getsockname()[1]
            rcodes: list[int] = []

            async def ask(name: str, qid: int) -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.setblocking(False)
                    client.connect(("127.0.0.1", port))
                    await loop.sock_sendall(client, query(name, qid))
                    reply = await asyncio.wait_for(loop.sock_recv(client, 65535), 5)
                rcodes.append(dns.message.from_wire(reply).rcode())

            try:
                await ask(f"n0.{ZONE}", 1)  # the upstream sockets are opened: not measured
                gc.collect()
                gc.set_debug(gc.DEBUG_SAVEALL)
                try:
                    for index in range(1, NAMES):
                        await ask(f"n{index}.{ZONE}", 2)  # a miss, forwarded
                        await ask(f"N{index}.{ZONE}", 3)  # other bytes: the cache, not the memo
                        await ask(f"n{index}.{ZONE}", 4)  # the memo
                        await ask(f"gone{index}.{ZONE}", 5)  # a negative answer, forwarded
                    gc.collect()
                    left = sorted({f"{type(o).__module__}.{type(o).__qualname__}"
                                   for o in gc.garbage if ours(o)})
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
                return rcodes, left
            finally:
                listener.close()
                await forwarder.close()

        rcodes, left = asyncio.run(scenario())
    assert rcodes == [dns.rcode.NOERROR] + [dns.rcode.NOERROR, dns.rcode.NOERROR,
                                            dns.rcode.NOERROR, dns.rcode.NXDOMAIN] * (NAMES - 1)
    assert upstream.count(f"n5.{ZONE}") == 1  # the second and third came from cache and memo
    assert left == []
