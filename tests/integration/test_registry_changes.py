"""A real daemon with a large hosts file: a change through a real source (static records,
reloaded on SIGHUP) is answered at once, and every memoized answer of an untouched name stays
a memo hit (dockdns_memo_hits_total over /metrics), since a change forgets only the names it
touches instead of the whole memo."""

from __future__ import annotations

import signal
from pathlib import Path

import dns.rcode

from tests.support.daemon import dockdns
from tests.support.engine import wait_for
from tests.support.net import addresses, ask
from tests.support.scrape import scrape, value
from tests.support.upstream import FaultServer

HOSTS_LINES = 50_000
ASKED = 40
RECORD = '[[records]]\nname = "web.static.test"\ntype = "A"\ndata = "{}"\n'


def test_a_change_keeps_the_memo_of_untouched_names(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255} h{i}.lan\n"
                             for i in range(HOSTS_LINES)))
    config = tmp_path / "dockdns.toml"
    config.write_text(RECORD.format("192.0.2.10"))
    names = [f"h{i * 997}.lan" for i in range(ASKED)]
    with FaultServer() as upstream, dockdns(
            "--config", str(config), "--hosts-file", str(hosts), "--upstream",
            upstream.address, start_timeout=60) as daemon:
        assert daemon.metrics_port is not None
        for name in [*names, "web.static.test"]:  # each answered once: now memoized
            assert ask(daemon.host, daemon.port, name).rcode() == dns.rcode.NOERROR
        assert addresses(ask(daemon.host, daemon.port, "web.static.test")) == {"192.0.2.10"}
        before = value(scrape(daemon.metrics_port), "dockdns_memo_hits_total")

        config.write_text(RECORD.format("192.0.2.11"))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in daemon.log(), message="the reload")
        # The changed name: its new address at once (its memoized answer is gone).
        assert addresses(ask(daemon.host, daemon.port, "web.static.test")) == {"192.0.2.11"}
        for index, name in enumerate(names):
            i = index * 997
            assert addresses(ask(daemon.host, daemon.port, name)) == {
                f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"}
        after = value(scrape(daemon.metrics_port), "dockdns_memo_hits_total")
        # Every untouched name was still memoized; the changed one took the full path.
        assert after - before == ASKED
