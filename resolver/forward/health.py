"""Upstream health: an upstream that stops answering is skipped until a probe shows it is back.

Pure bookkeeping; the forwarder reports every attempt's result and sends the probes. Only silence
(timeouts, network errors) counts against an upstream: SERVFAIL or REFUSED for one name is an
answer from a live server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from resolver.dns.addresses import HostPort

log = logging.getLogger("dockdns.health")

# Timeouts in a row before an upstream is skipped. One lost datagram is not enough; two in a row
# with no answer in between costs the next clients a whole attempt timeout each.
FAILURES_TO_DOWN = 2


@dataclass(slots=True)
class _State:
    failures: int = 0
    down: bool = False


class UpstreamHealth:
    def __init__(self, failures_to_down: int = FAILURES_TO_DOWN) -> None:
        self._failures_to_down = failures_to_down
        self._states: dict[HostPort, _State] = {}

    def is_down(self, server: HostPort) -> bool:
        state = self._states.get(server)
        return state is not None and state.down

    def order(self, servers: Sequence[HostPort]) -> list[HostPort]:
        """The order to ask ``servers`` in: the live ones as configured, the ones that are down
        left out. When all are down they are all asked anyway: the client should get the
        answer if one has come back, and the time budget bounds what that costs."""
        live = [server for server in servers if not self.is_down(server)]
        return live or list(servers)

    def down(self) -> list[HostPort]:
        return [server for server, state in self._states.items() if state.down]

    def succeeded(self, server: HostPort) -> None:
        state = self._states.get(server)
        if state is None:
            return
        if state.down:
            log.info("upstream %s answers again", server)
        del self._states[server]

    def failed(self, server: HostPort) -> None:
        state = self._states.setdefault(server, _State())
        state.failures += 1
        if not state.down and state.failures >= self._failures_to_down:
            state.down = True
            log.warning("upstream %s does not answer (%d attempts in a row timed out); skipping "
                        "it until it answers a probe", server, state.failures)

    def forget_except(self, servers: set[HostPort]) -> None:
        """Drop the state of upstreams no longer configured (resolv.conf changed)."""
        for server in [s for s in self._states if s not in servers]:
            del self._states[server]
