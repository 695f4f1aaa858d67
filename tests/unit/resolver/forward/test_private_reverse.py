"""--bogus-priv: reverse names of private addresses are answered NXDOMAIN here (never
forwarded) unless a --forward-zone covers them; everything else is handed on."""

from __future__ import annotations

import math

import dns.message
import dns.rcode

from resolver.answer.chain import ForwardedReply, Pending, Request, Trace
from resolver.answer.views import View
from resolver.dns import wire
from resolver.dns.addresses import HostPort
from resolver.dns.upstream_message import cache_key
from resolver.forward.counters import ForwarderStats
from resolver.forward.private_reverse import PrivateReverseStage
from resolver.forward.settings import ForwardSettings, parse_forward_zone
from resolver.forward.upstreams import UpstreamSource

HANDED_ON = b"handed on"


def rest(request: Request) -> ForwardedReply:
    return ForwardedReply(HANDED_ON, 0, "forward")


def stage(enabled: bool = True, zones: tuple[str, ...] = ()) -> PrivateReverseStage:
    source = UpstreamSource(ForwardSettings(
        upstreams=(HostPort("127.0.0.1", 5301),),
        forward_zones=tuple(parse_forward_zone(z) for z in zones)))
    source.load(quiet=True)
    return PrivateReverseStage(enabled, source, ForwarderStats())


def ask(private: PrivateReverseStage, name: str) -> tuple[ForwardedReply, Trace]:
    packet = dns.message.make_query(name, "PTR").to_wire()
    query = wire.parse_query(packet)
    trace = Trace()
    request = Request(query, packet, False, View(networks=(), forward=True), 512,
                      cache_key(query), trace)
    answer = private.serve(request, rest)
    assert not isinstance(answer, Pending)  # answered here or handed on: both at once
    return answer, trace


def test_private_reverse_is_nxdomain_here() -> None:
    private = stage()
    for name in ("5.0.0.10.in-addr.arpa", "1.1.168.192.in-addr.arpa",
                 "1.0.0.127.in-addr.arpa"):
        reply, trace = ask(private, name)
        assert reply.rcode == wire.NXDOMAIN and reply.memo_until == math.inf
        message = dns.message.from_wire(reply.reply)
        assert message.rcode() == dns.rcode.NXDOMAIN and message.question[0].name.to_text() \
            == name + "."
        assert trace.steps[0][0] == "private-reverse" and "--bogus-priv" in trace.steps[0][1]
    assert private.stats.private_reverse == 3


def test_public_reverse_and_forward_names_are_handed_on() -> None:
    private = stage()
    for name in ("8.8.8.8.in-addr.arpa", "www.example.test"):
        assert ask(private, name)[0].reply == HANDED_ON
    assert private.stats.private_reverse == 0


def test_off_or_covered_by_a_forward_zone_is_handed_on() -> None:
    assert ask(stage(enabled=False), "5.0.0.10.in-addr.arpa")[0].reply == HANDED_ON
    covered = stage(zones=("10.in-addr.arpa=127.0.0.1:5302",))
    reply, trace = ask(covered, "5.0.0.10.in-addr.arpa")
    assert reply.reply == HANDED_ON and "--forward-zone" in trace.steps[0][1]
    # The zone covers 10/8 only: 192.168/16 is still answered here.
    assert ask(covered, "1.1.168.192.in-addr.arpa")[0].rcode == wire.NXDOMAIN
