"""Upstream health, an infrastructure cache as Unbound keeps one: per upstream a smoothed round
trip time and whether it is down. An upstream that is down is skipped without any wait and only
background probes ask it, less often the longer it stays silent; the first probe it answers
brings it back.

Pure bookkeeping (every method that depends on time takes ``now``); the forwarder reports every
attempt's result and the pool sends the probes. Only silence and ICMP errors (timeouts, network
errors) count against an upstream: SERVFAIL or REFUSED for one name is an answer from a live
server.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resolver.dns.addresses import HostPort

log = logging.getLogger("dockdns.health")

# Failed attempts in a row before an upstream is skipped. One lost datagram is not enough; two in
# a row with no answer in between costs the next clients a whole attempt timeout each.
FAILURES_TO_DOWN = 2
# Smoothing of the round-trip time, RFC 6298's alpha: each sample counts for 1/8.
RTT_WEIGHT = 0.125
# Upstreams whose smoothed RTTs are within this of the fastest one's are asked in configured
# order (Unbound's RTT band is 400 ms; loopback and LAN upstreams all fall in one band, so the
# operator's order holds). One slower than that goes behind them.
RTT_BAND = 0.4
# How often a slower upstream is put first anyway, so that its RTT is measured again and one that
# got faster is noticed (Unbound explores likewise, among the servers of its band).
EXPLORE = 0.02
# Probe backoff for an upstream that is down: first probe after PROBE_FIRST s, then each interval
# doubles while it stays silent, up to PROBE_MAX (a recovered upstream is noticed within that).
PROBE_FIRST = 1.0
PROBE_MAX = 8.0
# Orders are computed once and kept until health changes: an upstream going down or coming
# back, a loop mark, its first RTT, or its smoothed RTT moving this far from the value the order
# was made with (an eighth of the band: no order can change by less).
RTT_RESORT = RTT_BAND / 8


@dataclass(slots=True)
class _State:
    srtt: float | None = None  # smoothed RTT of its answers, seconds; None before the first
    failures: int = 0  # failed attempts since its last answer
    down: bool = False
    loop: bool = False  # it forwards back to dockdns (resolver/forward/loop.py): never asked
    probe_at: float = 0.0  # while down: when the next probe is due
    probe_interval: float = PROBE_FIRST
    ordered_srtt: float | None = None  # its srtt when the kept orders were last made


class UpstreamHealth:
    def __init__(self, failures_to_down: int = FAILURES_TO_DOWN,
                 chance: Callable[[], float] = random.random) -> None:
        self._failures_to_down = failures_to_down
        self._chance = chance
        self._states: dict[HostPort, _State] = {}
        # The order of each group of servers asked for, and the variant that explores the
        # fastest of the slower ones first (None when there is no slower one), until health
        # changes (``_changed``).
        self._orders: dict[tuple[HostPort, ...], tuple[list[HostPort], list[HostPort] | None]] = {}

    def _state(self, server: HostPort) -> _State:
        state = self._states.get(server)
        if state is None:  # (not setdefault: that would make a _State per call)
            state = self._states[server] = _State()
        return state

    def _changed(self) -> None:
        self._orders.clear()

    def is_down(self, server: HostPort) -> bool:
        state = self._states.get(server)
        return state is not None and state.down

    def is_loop(self, server: HostPort) -> bool:
        state = self._states.get(server)
        return state is not None and state.loop

    def mark_loop(self, server: HostPort) -> bool:
        """``server`` forwards back to dockdns; True if it was not known to yet."""
        state = self._state(server)
        newly = not state.loop
        state.loop = True
        self._changed()
        return newly

    def clear_loops(self) -> None:
        for state in self._states.values():
            state.loop = False
        self._changed()

    def srtt(self, server: HostPort) -> float | None:
        state = self._states.get(server)
        return None if state is None else state.srtt

    def order(self, servers: Sequence[HostPort]) -> list[HostPort]:
        """The order to ask ``servers`` in: the live ones, those within ``RTT_BAND`` of the
        fastest in configured order, slower ones after them (now and then one of those first).
        Those that are down are left out; when every one is, the list is empty and the question
        fails at once (stale or SERVFAIL) while the probes find out when one is back.
        The list is shared until health changes: callers must not change it."""
        key = servers if isinstance(servers, tuple) else tuple(servers)
        kept = self._orders.get(key)
        if kept is None:
            kept = self._orders[key] = self._compute(key)
        if kept[1] is not None and self._chance() < EXPLORE:
            return kept[1]
        return kept[0]

    def _compute(self, servers: tuple[HostPort, ...]) -> tuple[list[HostPort],
                                                                list[HostPort] | None]:
        live = [server for server in servers
                if not self.is_down(server) and not self.is_loop(server)]
        for server in live:
            state = self._states.get(server)
            if state is not None:
                state.ordered_srtt = state.srtt
        known = [rtt for rtt in map(self.srtt, live) if rtt is not None]
        if len(live) < 2 or not known:
            return live, None
        limit = min(known) + RTT_BAND
        near = [s for s in live if (self.srtt(s) or 0.0) <= limit]  # unmeasured ones too
        far = sorted((s for s in live if (self.srtt(s) or 0.0) > limit),
                     key=lambda s: self.srtt(s) or 0.0)
        return near + far, ([far[0], *near, *far[1:]] if far else None)

    def down(self) -> list[HostPort]:
        return [server for server, state in self._states.items() if state.down]

    def skipped(self) -> list[HostPort]:
        """The upstreams not asked now: down, or a forwarding loop."""
        return [server for server, state in self._states.items() if state.down or state.loop]

    def due(self, now: float) -> list[HostPort]:
        """The upstreams that are down and due for a probe."""
        return [server for server, state in self._states.items()
                if state.down and now >= state.probe_at]

    def succeeded(self, server: HostPort, rtt: float | None = None) -> None:
        """``server`` answered (``rtt``: seconds after the query went out, when known)."""
        state = self._state(server)
        if state.down:
            log.info("upstream %s answers again", server)
            state.down = False
            self._changed()
        state.failures = 0
        state.probe_interval = PROBE_FIRST
        if rtt is not None:
            srtt = state.srtt = rtt if state.srtt is None else (
                state.srtt + RTT_WEIGHT * (rtt - state.srtt))
            ordered = state.ordered_srtt
            if ordered is None or abs(srtt - ordered) > RTT_RESORT:
                state.ordered_srtt = srtt
                self._changed()

    def failed(self, server: HostPort, now: float, why: str = "timed out") -> None:
        """An attempt to ``server`` got no answer (``why``: timed out, unreachable, ...)."""
        state = self._state(server)
        state.failures += 1
        if not state.down and state.failures >= self._failures_to_down:
            state.down = True
            state.probe_interval = PROBE_FIRST
            state.probe_at = now + PROBE_FIRST
            self._changed()
            log.warning("upstream %s does not answer (%d attempts in a row %s); skipping "
                        "it until it answers a probe", server, state.failures, why)

    def probe_failed(self, server: HostPort, now: float) -> None:
        """A probe of ``server`` (down) got no answer: wait twice as long for the next."""
        state = self._states.get(server)
        if state is None or not state.down:
            return
        state.probe_interval = min(state.probe_interval * 2, PROBE_MAX)
        state.probe_at = now + state.probe_interval

    def forget_except(self, servers: set[HostPort]) -> None:
        """Drop the state of upstreams no longer configured (resolv.conf changed)."""
        for server in [s for s in self._states if s not in servers]:
            del self._states[server]
        self._changed()
