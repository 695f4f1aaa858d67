"""The private-reverse stage (``--bogus-priv``): reverse names of private and special-use
addresses that the registry does not hold are answered NXDOMAIN here instead of being forwarded,
since nobody upstream can know them and asking would only leak them. A ``--forward-zone`` that
covers one (a corporate 10.in-addr.arpa server) still gets it."""

from __future__ import annotations

import math

from resolver.answer.chain import Answer, ForwardedReply, Next, Request
from resolver.dns import wire
from resolver.dns.reverse import is_private_reverse
from resolver.forward.counters import ForwarderStats
from resolver.forward.upstreams import UpstreamSource
from resolver.ops.stats import SOURCE_LOCAL


class PrivateReverseStage:
    name = "private-reverse"

    def __init__(self, enabled: bool, upstreams: UpstreamSource, stats: ForwarderStats) -> None:
        self.enabled = enabled
        self.upstreams = upstreams
        self.stats = stats

    def serve(self, request: Request, next: Next) -> Answer:
        labels = request.query.labels
        # (Only names under arpa are reverse names: the common case decided by one label.)
        if not (self.enabled and labels and labels[-1].lower() == b"arpa"
                and is_private_reverse(labels)):
            return next(request)
        if self.upstreams.table.routed(labels):
            request.note(self.name, "a private reverse name, but a --forward-zone covers it: "
                                    "forwarded")
            return next(request)
        self.stats.private_reverse += 1
        request.note(self.name, "a private or special-use reverse name (--bogus-priv): NXDOMAIN "
                                "here, never forwarded")
        return ForwardedReply(wire.error_reply(request.query, request.packet, wire.NXDOMAIN),
                              wire.NXDOMAIN, SOURCE_LOCAL, memo_until=math.inf)
