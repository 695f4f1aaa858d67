"""Metrics and health over real HTTP from a real daemon; the collector's hooks in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from discovery.registry.model import Record, Snapshot, SourcePart
from resolver.ops.http import HTTPServer, Response
from resolver.ops.metrics import Metrics, names_per_source
from resolver.ops.stats import SOURCE_LOCAL, DurationHistogram, QueryStats
from tests.support.daemon import REPO, command, dockdns, http_get
from tests.support.net import addresses, ask, free_port
from tests.support.scrape import scrape, value
from tests.support.standins import Cache, Upstreams
from tests.support.upstream import FaultServer
from tests.support.wait import wait_for


def test_counters_change_as_queries_arrive(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file) as daemon:
        assert daemon.metrics_port is not None
        before = scrape(daemon.metrics_port)
        assert value(before, "dockdns_queries_total", qtype="A", rcode="NOERROR",
                     source="local") == 0
        assert value(before, "dockdns_registry_names", source="hosts") == 3

        # No EDNS options: the second and third identical questions are memo hits.
        for _ in range(3):
            assert ask(daemon.host, daemon.port, "web1").answer
        ask(daemon.host, daemon.port, "web1", "AAAA")
        after = scrape(daemon.metrics_port)

    assert value(after, "dockdns_queries_total", qtype="A", rcode="NOERROR",
                 source="local") == 3
    assert value(after, "dockdns_queries_total", qtype="AAAA", rcode="NOERROR",
                 source="local") == 1
    assert value(after, "dockdns_memo_hits_total") == 2
    # Four answered: two built on the full path and timed, two memo hits in the lowest bucket.
    assert value(after, "dockdns_query_duration_seconds_count") == 4
    assert value(after, "dockdns_query_duration_seconds_bucket", le="0.0001") >= 2
    assert value(after, "dockdns_query_duration_seconds_bucket", le="+Inf") == 4
    assert value(after, "dockdns_query_duration_seconds_sum") > 0


def test_memo_bytes_are_those_of_the_entries_a_change_left(tmp_path: Path) -> None:
    """A hosts change forgets the memo entries of the names it took away, and their bytes with
    them: a memo that kept counting them would believe itself fuller than it is after each change
    and start again (forget every answer) long before its bound."""
    hosts = tmp_path / "hosts"
    # Names of one length with one address each: every entry the same size.
    lines = [f"10.7.0.{i} m{i}.memo.test\n" for i in range(10)]
    hosts.write_text("".join(lines))
    with FaultServer() as upstream, dockdns("--hosts-file", str(hosts), "--upstream",
                                           upstream.address) as daemon:
        assert daemon.metrics_port is not None
        for i in range(10):
            assert addresses(ask(daemon.host, daemon.port, f"m{i}.memo.test")) == {f"10.7.0.{i}"}
        full = scrape(daemon.metrics_port)
        assert value(full, "dockdns_memo_entries") == 10
        entry = value(full, "dockdns_memo_bytes") / 10
        assert entry > 0
        fresh = hosts.with_suffix(".new")
        fresh.write_text("".join(lines[5:]))  # m0-m4 go
        os.replace(fresh, hosts)
        wait_for(lambda: value(scrape(daemon.metrics_port or 0), "dockdns_registry_names",
                               source="hosts") == 5, what="the hosts change applied")
        left = scrape(daemon.metrics_port)
        assert value(left, "dockdns_memo_entries") == 5
        assert value(left, "dockdns_memo_bytes") == 5 * entry
        # Still answered from the memo: the entries of the names the change did not touch.
        hits = value(left, "dockdns_memo_hits_total")
        assert addresses(ask(daemon.host, daemon.port, "m9.memo.test")) == {"10.7.0.9"}
        assert value(scrape(daemon.metrics_port), "dockdns_memo_hits_total") == hits + 1


def test_health_endpoints_and_errors(hosts_file: str) -> None:
    with dockdns("--hosts-file", hosts_file) as daemon:
        port = daemon.metrics_port
        assert port is not None
        assert http_get(port, "/healthz")[0::2] == (200, "ok\n")
        # No Docker source: ready as soon as it listens.
        assert http_get(port, "/readyz")[0::2] == (200, "ready\n")
        assert http_get(port, "/nothing")[0] == 404
        status, content_type, body = http_get(
            port, "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert status == 200 and content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith("# EOF")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 405 ")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"HEAD /healthz HTTP/1.1\r\n\r\n")
            head = sock.recv(1000)
            assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")


def test_no_metrics_binds_no_http_port(hosts_file: str) -> None:
    metrics_port = free_port()
    with dockdns("--hosts-file", hosts_file, "--metrics-listen", f"127.0.0.1:{metrics_port}",
                 metrics=False) as daemon:
        assert daemon.metrics_port is None
        assert ask(daemon.host, daemon.port, "web1").answer
        with socket.socket() as sock:
            # --no-metrics comes after the address: the address is known, but nothing binds it.
            assert sock.connect_ex(("127.0.0.1", metrics_port)) != 0


# --- the hook points, with objects shaped as the forwarder and the Docker source will be -----


@dataclass
class Engine:
    engine: str = "unix:///var/run/docker.sock"
    events: int = 0
    connected: bool = False
    last_sync: float | None = None


def _collect(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.exposition("")
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def test_attached_parts_are_read_at_every_scrape() -> None:
    stats = QueryStats()
    metrics = Metrics(stats, DurationHistogram(), Snapshot.empty)
    names = {name for name, _ in _collect(metrics)}
    # Nothing attached yet: those metrics are absent, not zero.
    assert not {"dockdns_upstream_inflight", "dockdns_cache_entries",
                "dockdns_docker_connected"} & names

    upstreams, cache, engine = Upstreams(), Cache(), Engine()
    metrics.collector.attach_upstreams(upstreams)
    metrics.collector.attach_cache(cache)
    metrics.collector.attach_docker(engine)
    first = _collect(metrics)
    assert value(first, "dockdns_docker_connected", engine=engine.engine) == 0
    assert ("dockdns_last_sync_timestamp_seconds",
            frozenset({("engine", engine.engine)})) not in first

    upstreams.requests[("127.0.0.1:53", "ok")] = 7
    upstreams.inflight = 2
    upstreams.events["jostled"] = 3
    upstreams.down = 1
    cache.entries, cache.hits, cache.misses = 10, 5, 3
    engine.events, engine.connected, engine.last_sync = 4, True, 1_700_000_000.0
    stats.counts[stats.slot(1, 0, SOURCE_LOCAL)] += 9
    second = _collect(metrics)
    assert value(second, "dockdns_upstream_requests_total", upstream="127.0.0.1:53",
                 outcome="ok") == 7
    assert value(second, "dockdns_upstream_inflight") == 2
    assert value(second, "dockdns_forward_events_total", event="jostled") == 3
    assert value(second, "dockdns_upstream_down") == 1
    assert value(second, "dockdns_cache_entries") == 10
    assert value(second, "dockdns_cache_hits_total") == 5
    assert value(second, "dockdns_cache_misses_total") == 3
    assert value(second, "dockdns_docker_events_total", engine=engine.engine) == 4
    assert value(second, "dockdns_docker_connected", engine=engine.engine) == 1
    assert value(second, "dockdns_last_sync_timestamp_seconds",
                 engine=engine.engine) == 1_700_000_000.0
    assert value(second, "dockdns_queries_total", qtype="A", rcode="NOERROR",
                 source="local") == 9


def test_memo_hits_of_forwarded_answers_count_as_cache() -> None:
    stats = QueryStats()
    forwarded = stats.slot(1, 0, "forward")
    stats.counts[forwarded] += 1
    stats.counts[stats.memo_slot(forwarded)] += 5
    assert stats.totals() == {(1, 0, "forward"): 1, (1, 0, "cache"): 5}
    assert stats.memo_hits() == 5 and stats.answered() == 6


def test_registry_names_per_source() -> None:
    snapshot = Snapshot.build(1, [SourcePart(records=(
        Record(("web", "web1"), ipv4=("10.0.0.2",), network="net", source="docker"),
        Record(("web",), ipv4=("10.0.0.3",), network="net", source="docker"),
        Record(("web",), ipv4=("10.0.1.3",), network="other", source="docker"),
        Record(("files",), ipv4=("10.9.0.1",), source="hosts"),
    ))])
    # web and web1 on net, web on other: 3 docker names; one hosts name.
    assert names_per_source(snapshot) == {"docker": 3, "hosts": 1}


def test_histogram_buckets_are_cumulative_with_memo_hits_first() -> None:
    stats, durations = QueryStats(), DurationHistogram()
    durations.observe(0.003)
    durations.observe(10.0)
    stats.counts[stats.memo_slot(stats.slot(1, 0, SOURCE_LOCAL))] += 4
    samples = _collect(Metrics(stats, durations, Snapshot.empty))
    assert value(samples, "dockdns_query_duration_seconds_bucket", le="0.0001") == 4
    assert value(samples, "dockdns_query_duration_seconds_bucket", le="0.0025") == 4
    assert value(samples, "dockdns_query_duration_seconds_bucket", le="0.005") == 5
    assert value(samples, "dockdns_query_duration_seconds_bucket", le="5.0") == 5
    assert value(samples, "dockdns_query_duration_seconds_bucket", le="+Inf") == 6
    assert value(samples, "dockdns_query_duration_seconds_sum") == pytest.approx(10.003)


def test_http_serves_others_while_one_client_stalls() -> None:
    """The HTTP server shares the loop with DNS: a slow client must not hold anything up."""
    async def main() -> tuple[bytes, bytes]:
        server = HTTPServer({"/x": lambda headers: Response(200, b"fine\n")})
        port = free_port()
        await server.start("127.0.0.1", port)
        try:
            # A client that sends half a request and stalls...
            _, stalled = await asyncio.open_connection("127.0.0.1", port)
            stalled.write(b"GET /x HTT")
            # ...while another one is served at once.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /x HTTP/1.1\r\n\r\n")
            reply = await asyncio.wait_for(reader.read(), 5)
            reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)
            writer2.write(b"GARBAGE\r\n\r\n")
            bad = await asyncio.wait_for(reader2.read(), 5)
            for w in (stalled, writer, writer2):
                w.close()
            return reply, bad
        finally:
            await server.close()

    reply, bad = asyncio.run(main())
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"\r\n\r\nfine\n")
    assert bad.startswith(b"HTTP/1.1 400 ")


def test_metrics_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            command("serve", "--no-docker", "--listen", f"127.0.0.1:{free_port()}",
                    "--metrics-listen", f"127.0.0.1:{port}"),
            capture_output=True, text=True, cwd=REPO, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"dockdns: cannot listen on 127.0.0.1:{port}: the address is already in use; stop the "
        f"other server or choose another with --metrics-listen (or --no-metrics)"]


def test_forwarder_and_cache_metrics_over_http() -> None:
    with FaultServer() as upstream:
        upstream.add("ext.test", "A", 300, "198.51.100.7")
        with dockdns("--upstream", upstream.address) as daemon:
            for _ in range(3):
                assert addresses(ask(daemon.host, daemon.port, "ext.test")) == {"198.51.100.7"}
            samples = scrape(daemon.metrics_port)
    assert value(samples, "dockdns_upstream_requests_total", upstream=upstream.address,
                 outcome="ok") == 1
    assert value(samples, "dockdns_upstream_inflight") == 0
    assert value(samples, "dockdns_cache_entries") == 1
    assert value(samples, "dockdns_cache_misses_total") == 1
    assert value(samples, "dockdns_cache_hits_total") == 2
