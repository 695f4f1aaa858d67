"""60,000 unique names flooded through the forwarder (dnsperf, at most 100 outstanding) to a
dnsmasq on loopback that answers every name under flood.test: the cache never holds more than
--cache-size answers (the oldest are evicted: asked again, they go upstream again), the daemon's
memory stays bounded, and local names keep answering correctly all along."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import dns.exception
import pytest

from tests.support.daemon import dockdns
from tests.support.net import addresses, ask
from tests.support.proc import vm_rss_kb
from tests.support.scrape import Samples, scrape, value
from tests.support.upstream import dnsmasq

NAMES = 60_000
CACHE_SIZE = 5_000


def upstream_requests(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "dockdns_upstream_requests_total")


def test_sixty_thousand_unique_names_keep_cache_and_memory_bounded(tmp_path: Path) -> None:
    if shutil.which("dnsperf") is None:
        pytest.skip("dnsperf is not installed (Debian package dnsperf)")
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 web1\n10.1.2.4 multi\n10.1.2.5 multi\n")
    queries = tmp_path / "queries.txt"
    queries.write_text("".join(f"n{i}.flood.test A\n" for i in range(NAMES)))
    with dnsmasq("--address=/flood.test/192.0.2.1", "--local-ttl=300") as upstream, \
            dockdns("--hosts-file", str(hosts), "--upstream", upstream.address,
                    "--cache-size", str(CACHE_SIZE)) as server:
        assert server.metrics_port is not None
        port = server.metrics_port
        assert addresses(ask(server.host, server.port, "n-warm.flood.test")) == {"192.0.2.1"}
        before = vm_rss_kb(server.process.pid)

        flood = subprocess.Popen(
            ["dnsperf", "-s", server.host, "-p", str(server.port), "-d", str(queries),
             "-n", "1", "-c", "1", "-T", "1", "-q", "100", "-t", "5", "-l", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output: list[str] = []
        finished = threading.Event()

        def collect() -> None:
            output.append(flood.communicate()[0])
            finished.set()

        reader = threading.Thread(target=collect)
        reader.start()
        local_answers = 0
        cache_sizes: list[float] = []
        try:
            # While it runs: local names answer right (UDP and TCP), the cache stays capped.
            while not finished.is_set() and local_answers < 5000:
                tcp = local_answers % 10 == 0
                try:
                    assert addresses(ask(server.host, server.port, "web1", tcp=tcp)) \
                        == {"10.1.2.3"}
                    assert addresses(ask(server.host, server.port, "multi")) \
                        == {"10.1.2.4", "10.1.2.5"}
                except dns.exception.Timeout:
                    raise AssertionError("a local name went unanswered during the flood") \
                        from None
                local_answers += 1
                if local_answers % 20 == 0:
                    cache_sizes.append(value(scrape(port), "dockdns_cache_entries"))
        finally:
            if not finished.wait(timeout=400):
                flood.kill()
            reader.join()
        report = output[0] if output else ""
        completed = re.search(r"Queries completed:\s+(\d+)", report)
        assert completed is not None, report
        assert int(completed.group(1)) >= NAMES * 0.99, report
        assert "NOERROR" in report and "SERVFAIL" not in report, report
        assert local_answers > 0

        after = scrape(port)
        cache_sizes.append(value(after, "dockdns_cache_entries"))
        assert max(cache_sizes) <= CACHE_SIZE
        assert cache_sizes[-1] == CACHE_SIZE  # full, and not one more
        assert upstream_requests(after) >= NAMES * 0.99
        grown = vm_rss_kb(server.process.pid) - before
        # Generous: the memo keeps up to 100,000 ready replies (~35 MB) and the cache 5,000;
        # without their caps, 60,000 answers with their replies and tasks would not fit.
        assert grown < 160 * 1024, f"RSS grew by {grown} kB"

        # The first names were evicted (least recently used): asked again, they go upstream
        # again; the last ones are still cached.
        requests = upstream_requests(after)
        for i in range(200):
            assert addresses(ask(server.host, server.port, f"n{i}.flood.test")) == {"192.0.2.1"}
        assert upstream_requests(scrape(port)) == requests + 200
        for i in range(NAMES - 200, NAMES):
            assert addresses(ask(server.host, server.port, f"n{i}.flood.test")) == {"192.0.2.1"}
        assert upstream_requests(scrape(port)) == requests + 200
        assert value(scrape(port), "dockdns_cache_entries") == CACHE_SIZE
        assert server.process.poll() is None
