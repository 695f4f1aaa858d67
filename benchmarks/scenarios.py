"""The scenarios of issue 6 and the pieces every scenario uses (Context, Contender, alternate,
expect). Each starts its servers, checks they give the expected answers, then measures them with
dnsperf, alternating the servers round by round so that machine noise falls on all of them alike,
and returns a JSON-ready summary. benchmarks/catalog.py lists them all by name."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dnslib

from benchmarks import cpus, dnsperf, engine, goals, reference, servers, workload
from benchmarks.servers import Server

LOOPBACK = "127.0.0.1"
SCALING_SIZES = (10, 10_000, 100_000)
LOCAL_REGISTRY = 10_000
CONTAINERS = 20  # names in the container scenario (each also asked as name.network)
PROPAGATION_TIMEOUT = 5.0  # a start not answering by then counts as a failure to propagate
POLL_INTERVAL = 0.001


# A run shorter than this a measurement (``--smoke``): scenarios that size themselves (a million
# hosts lines, 200 Swarm tasks) take a small size, enough to prove the harness, not to measure.
SMOKE_SECONDS = 2.0


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


@dataclass
class Context:
    """What every scenario gets: where to put files, how long to measure, the shared upstream."""

    work: Path
    seconds: float
    rounds: int
    propagation_starts: int
    # Where dnsperf and the measured server run (see benchmarks/cpus.py); None: unpinned.
    pinning: cpus.Plan | None = None
    upstream_port: int = 0
    log_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        # dnsmasq reads its files after dropping root for "nobody": they must be readable.
        self.work.chmod(0o755)
        self.log_dir = self.work / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def smoke(self) -> bool:
        return self.seconds < SMOKE_SECONDS

    @property
    def upstream(self) -> list[str]:
        """The flag every dockdns gets: its only upstream is the harness's dnsmasq on loopback."""
        return ["--upstream", f"{LOOPBACK}:{self.upstream_port}"]


@dataclass
class Contender:
    """One server in a comparison and the runs measured against it."""

    label: str
    server: Server
    queries: Path
    runs: list[dnsperf.PerfResult] = field(default_factory=list)
    # Queries in flight at most (dnsperf's -q); None: dnsperf's default, the usual load.
    outstanding: int | None = None
    # A new query file for each measured run (given the run's number), used once and removed:
    # for mixes that must never repeat a name (forwarded misses). The warm-up pass uses
    # ``queries``. With it, a run also ends when the file is used up (dnsperf -n 1).
    fresh: Callable[[int], Path] | None = None

    def measure(self, seconds: float, plan: cpus.Plan | None) -> None:
        queries = self.fresh(len(self.runs)) if self.fresh else self.queries
        with cpus.pinned(self.server.pids, plan.servers if plan else None):
            before = self.server.cpu_seconds()
            result = dnsperf.run(self.server.host, self.server.port, queries, seconds,
                                 passes=1 if self.fresh else None,
                                 netns_pid=self.server.netns_pid,
                                 cpus=plan.client if plan else None,
                                 outstanding=self.outstanding)
            used = self.server.cpu_seconds() - before
        if self.fresh:
            queries.unlink()
        if result.completed:
            result.cpu_us_per_query = round(used * 1e6 / result.completed, 3)
        result.rss_mb = round(self.server.rss_mb(), 1)
        self.runs.append(result)

    def summary(self) -> dict[str, Any]:
        runs = self.runs
        rcodes: dict[str, int] = {}
        for run in runs:
            for code, count in run.rcodes.items():
                rcodes[code] = rcodes.get(code, 0) + count
        cpu = [r.cpu_us_per_query for r in runs if r.cpu_us_per_query is not None]
        client = [r.client_cores for r in runs if r.client_cores is not None]
        return {
            "qps": round(statistics.median(r.qps for r in runs)),
            "avg_ms": round(statistics.median(r.avg_ms for r in runs), 3),
            "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
            "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
            "sent": sum(r.sent for r in runs),
            "lost": sum(r.lost for r in runs),
            "rcodes": rcodes,
            "cpu_us_per_query": round(statistics.median(cpu), 2) if cpu else None,
            "dnsperf_cores": round(statistics.median(client), 2) if client else None,
            "rss_mb": max((r.rss_mb or 0.0) for r in runs),
            "startup_s": (round(self.server.startup_s, 2)
                          if self.server.startup_s is not None else None),
            "runs": [asdict(r) for r in runs],
        }


def alternate(contenders: list[Contender], ctx: Context) -> dict[str, dict[str, Any]]:
    """Measure every contender once per round, the order reversed every other round, after one
    unmeasured pass through its mix (steady state: memos and caches filled)."""
    for contender in contenders:
        server = contender.server
        dnsperf.run(server.host, server.port, contender.queries, None, passes=1,
                    netns_pid=server.netns_pid, outstanding=contender.outstanding)
    for number in range(ctx.rounds):
        order = contenders if number % 2 == 0 else contenders[::-1]
        for contender in order:
            contender.measure(ctx.seconds, ctx.pinning)
    return {c.label: c.summary() for c in contenders}


def ratio(results: dict[str, dict[str, Any]], over: str, under: str) -> float:
    """QPS of ``over`` divided by QPS of ``under``: the median of the per-round ratios."""
    pairs = zip(results[over]["runs"], results[under]["runs"], strict=True)
    return round(statistics.median(a["qps"] / b["qps"] if b["qps"] else 0.0 for a, b in pairs),
                 3)


def cpu_ratio(results: dict[str, dict[str, Any]], over: str, under: str) -> float | None:
    """CPU per query of ``under`` divided by that of ``over`` (above 1: ``over`` is cheaper),
    the median over rounds. While dnsperf, not the server, sets the pace, this is the fairer
    comparison of the servers' own cost."""
    pairs = [(a["cpu_us_per_query"], b["cpu_us_per_query"])
             for a, b in zip(results[over]["runs"], results[under]["runs"], strict=True)]
    usable = [b / a for a, b in pairs if a and b]
    return round(statistics.median(usable), 3) if usable else None


def compare(results: dict[str, dict[str, Any]], over: str, under: str) -> dict[str, Any]:
    key = f"{over}/{under}"
    return {"ratios": {key: ratio(results, over, under)},
            "cpu_ratios": {key: cpu_ratio(results, over, under)}}


def expect(server: Server, answers: dict[str, str]) -> None:
    """Each name must get exactly its address from ``server`` before it is measured, asked from
    where dnsperf will ask."""
    for name, wanted in answers.items():
        if server.netns_pid is not None:
            found = servers.addresses_in_netns(server.netns_pid, server.host, server.port, name)
            if found != [wanted]:
                raise RuntimeError(f"{server.name} answered {name} with {found} in the "
                                   f"client's namespace, expected [{wanted}]")
            continue
        reply = servers.query(server.host, server.port, name, timeout=2.0)
        if reply is None:
            raise RuntimeError(f"{server.name} did not answer {name}")
        got = sorted(str(rr.rdata) for rr in reply.rr)
        if got != [wanted]:
            rcode = rcode_name(reply.header.rcode)
            raise RuntimeError(f"{server.name} answered {name} with {rcode} {got}, "
                               f"expected [{wanted}]")


def samples(count: int, name: Callable[[int], str], addr: Callable[[int], str],
            how_many: int = 3) -> dict[str, str]:
    picks = {0, count - 1, count // 2}
    return {name(i): addr(i) for i in sorted(picks)[:how_many]}


# --- the shared upstream ---------------------------------------------------------------------

@contextlib.contextmanager
def upstream(ctx: Context) -> Iterator[Server]:
    """A dnsmasq on loopback that holds the forwarded names (long TTL, so caches keep them for
    the whole run). It is every dockdns's only upstream, so nothing ever leaves the machine."""
    hosts = workload.write_hosts(ctx.work / "upstream-hosts", workload.MIX_SIZE,
                                 workload.forward_name, workload.forward_address)
    port = servers.free_port()
    with servers.dnsmasq("upstream", LOOPBACK, port,
                         [f"--addn-hosts={hosts}", "--local-ttl=86400"],
                         workload.forward_name(0), ctx.log_dir) as server:
        ctx.upstream_port = port
        yield server


# --- 1. local names ----------------------------------------------------------------------------

def local_names(ctx: Context) -> dict[str, Any]:
    """dockdns, dnsmasq, Knot DNS and Unbound serving the same 10,000 names (a hosts file, a zone,
    local-data), the same 1,000-name mix. The targets are against dnsmasq; Knot (the cheapest C
    server measured here) and Unbound are reported beside it."""
    hosts = workload.write_hosts(ctx.work / "hosts-10000", LOCAL_REGISTRY)
    names = [workload.local_name(i) for i in workload.mix_indexes(LOCAL_REGISTRY)]
    queries = workload.write_queries(ctx.work / "local-queries", names)
    probe = workload.local_name(0)
    check = samples(LOCAL_REGISTRY, workload.local_name, workload.address)
    records = [(workload.local_name(i), workload.address(i)) for i in range(LOCAL_REGISTRY)]
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        contenders = [
            Contender("dockdns", stack.enter_context(servers.dockdns(
                "dockdns", LOOPBACK, servers.free_port(),
                ["--hosts-file", str(hosts), *ctx.upstream], probe, ctx.log_dir)), queries),
            Contender("dnsmasq", stack.enter_context(servers.dnsmasq(
                "dnsmasq", LOOPBACK, servers.free_port(),
                [f"--addn-hosts={hosts}", "--local-ttl=600"], probe, ctx.log_dir)), queries),
        ]
        if reference.installed(reference.KNOTD):
            zone = reference.write_zone(
                ctx.work / f"{workload.LOCAL_ZONE}.zone", workload.LOCAL_ZONE,
                [(reference.relative(n, workload.LOCAL_ZONE), a) for n, a in records])
            contenders.append(Contender("knot", stack.enter_context(reference.knot(
                "knot", LOOPBACK, servers.free_port(), {workload.LOCAL_ZONE: zone}, probe,
                ctx.log_dir)), queries))
        else:
            notes.append("Knot DNS is not installed (Debian package knot): not measured")
        if reference.installed(reference.UNBOUND):
            contenders.append(Contender("unbound", stack.enter_context(reference.unbound(
                "unbound", LOOPBACK, servers.free_port(), (LOOPBACK, ctx.upstream_port),
                [f'local-zone: "{workload.LOCAL_ZONE}." static', *reference.local_data(records)],
                probe, ctx.log_dir)), queries))
        else:
            notes.append("Unbound is not installed (Debian package unbound): not measured")
        for contender in contenders:
            expect(contender.server, check)
        results = alternate(contenders, ctx)
    ratios: dict[str, float] = {}
    cpu_ratios: dict[str, float | None] = {}
    for other in [c.label for c in contenders[1:]]:
        compared = compare(results, "dockdns", other)
        ratios.update(compared["ratios"])
        cpu_ratios.update(compared["cpu_ratios"])
    figures = [goals.figure(f"CPU per query vs {other} ({other}'s / dockdns's; 1 = as cheap)",
                            cpu_ratios.get(f"dockdns/{other}"),
                            "toward Knot: the cheapest C server measured" if other == "knot"
                            else "")
               for other in ("knot", "unbound") if f"dockdns/{other}" in cpu_ratios]
    return {"status": "ok", "registry_names": LOCAL_REGISTRY, "mix_names": len(set(names)),
            "servers": results, "ratios": ratios, "cpu_ratios": cpu_ratios,
            "figures": figures, "notes": notes}


# --- 2. cache hits on forwarded names ---------------------------------------------------------

def cache_hits(ctx: Context) -> dict[str, Any]:
    """dockdns and dnsmasq forwarding to the same upstream, measured once both caches are warm."""
    names = [workload.forward_name(i) for i in workload.mix_indexes(workload.MIX_SIZE)]
    queries = workload.write_queries(ctx.work / "forward-queries", names)
    probe = workload.forward_name(0)
    check = samples(workload.MIX_SIZE, workload.forward_name, workload.forward_address)
    with servers.dockdns("dockdns", LOOPBACK, servers.free_port(), ctx.upstream, probe,
                         ctx.log_dir) as dockdns:
        reply = servers.query(dockdns.host, dockdns.port, probe, timeout=3.0)
        if reply is None or not reply.rr:
            rcode = "no reply" if reply is None else rcode_name(reply.header.rcode)
            raise Skip(f"no forwarder: dockdns answered a forwarded name with {rcode} "
                       "(forwarding is not in this tree)")
        with servers.dnsmasq("dnsmasq", LOOPBACK, servers.free_port(),
                             [f"--server={LOOPBACK}#{ctx.upstream_port}", "--cache-size=10000"],
                             probe, ctx.log_dir) as dnsmasq:
            for server in (dockdns, dnsmasq):
                expect(server, check)
            # alternate() passes through the mix once before measuring: only hits are measured.
            results = alternate([Contender("dockdns", dockdns, queries),
                                 Contender("dnsmasq", dnsmasq, queries)], ctx)
    return {"status": "ok", "mix_names": len(set(names)), "servers": results,
            **compare(results, "dockdns", "dnsmasq")}


def rcode_name(code: int) -> str:
    return {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}.get(code, str(code))


# --- 3. container names from inside a container ------------------------------------------------

def _docker_source_answers(server: Server, name: str, timeout: float) -> bool:
    assert server.netns_pid is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if servers.addresses_in_netns(server.netns_pid, server.host, server.port, name):
            return True
        time.sleep(0.1)
    return False


def container_names(ctx: Context) -> dict[str, Any]:
    """From a client container's network namespace: dockdns (on the network's gateway) against
    Docker's 127.0.0.11, the same container names."""
    reason = engine.unavailable()
    if reason:
        raise Skip(reason)
    docker = engine.client()
    notes: list[str] = []
    with engine.bench_network(docker):
        targets = [engine.start(docker, f"{engine.PREFIX}{i}") for i in range(CONTAINERS)]
        client = engine.start(docker, f"{engine.PREFIX}client")
        answers: dict[str, str] = {}
        for container in targets:
            answers[container.name] = engine.address(container)
            answers[f"{container.name}.{engine.NETWORK}"] = engine.address(container)
        queries = workload.write_queries(ctx.work / "container-queries", list(answers))
        port = servers.free_port(engine.GATEWAY)
        probe = targets[0].name
        with contextlib.ExitStack() as stack:
            dockdns = stack.enter_context(servers.dockdns(
                "dockdns", engine.GATEWAY, port, ctx.upstream, probe, ctx.log_dir, docker=True))
            # Asked from the client container, as Docker's resolver will be. (From the host, a
            # query to the gateway leaves with the host's outside address: Docker masquerades
            # it, and dockdns refuses strangers.)
            dockdns.netns_pid = engine.pid(client)
            if not _docker_source_answers(dockdns, probe, 10.0):
                # No Docker source in this tree: serve the same names from a hosts file, so the
                # comparison of the two servers' speed still stands.
                stack.close()
                hosts = ctx.work / "container-hosts"
                hosts.write_text("".join(f"{addr} {name}\n" for name, addr in answers.items()))
                # Without the Docker source it does not know the network's subnet: let its
                # containers (and the host's address on it) ask.
                dockdns = stack.enter_context(servers.dockdns(
                    "dockdns", engine.GATEWAY, port,
                    ["--hosts-file", str(hosts), "--allow", engine.SUBNET, *ctx.upstream],
                    probe, ctx.log_dir))
                dockdns.netns_pid = engine.pid(client)
                notes.append("dockdns had no Docker source in this tree: it served the same "
                             "names from a hosts file")
            expect(dockdns, answers)
            embedded = Server("docker", "127.0.0.11", 53,
                              [p for p in [servers.dockerd_pid()] if p is not None],
                              netns_pid=engine.pid(client))
            # Docker knows every name in the mix (its containers were made above): one pass
            # checks that it answers them all before it is measured.
            check = dnsperf.run(embedded.host, embedded.port, queries, None, passes=1,
                                netns_pid=embedded.netns_pid)
            if check.rcodes.get("NOERROR", 0) != len(answers):
                raise RuntimeError(f"Docker's DNS answered the mix with {check.rcodes}")
            results = alternate([Contender("dockdns", dockdns, queries),
                                 Contender("docker", embedded, queries)], ctx)
    return {"status": "ok", "mix_names": len(answers), "servers": results, "notes": notes,
            **compare(results, "dockdns", "docker")}


# --- 4. registry size -------------------------------------------------------------------------

def registry_scaling(ctx: Context) -> dict[str, Any]:
    """The same server with 10, 10,000 and 100,000 names; each mix drawn from its own names."""
    contenders: list[Contender] = []
    with contextlib.ExitStack() as stack:
        for size in SCALING_SIZES:
            hosts = workload.write_hosts(ctx.work / f"hosts-{size}", size)
            names = [workload.local_name(i) for i in workload.mix_indexes(size)]
            queries = workload.write_queries(ctx.work / f"scaling-queries-{size}", names)
            server = stack.enter_context(servers.dockdns(
                f"dockdns-{size}", LOOPBACK, servers.free_port(),
                ["--hosts-file", str(hosts), *ctx.upstream], workload.local_name(0),
                ctx.log_dir))
            expect(server, samples(size, workload.local_name, workload.address))
            contenders.append(Contender(str(size), server, queries))
        results = alternate(contenders, ctx)
    smallest = str(SCALING_SIZES[0])
    return {"status": "ok", "servers": results,
            "ratios": {f"{size}/{smallest}": ratio(results, str(size), smallest)
                       for size in SCALING_SIZES[1:]},
            "cpu_ratios": {f"{size}/{smallest}": cpu_ratio(results, str(size), smallest)
                           for size in SCALING_SIZES[1:]}}


# --- workers ----------------------------------------------------------------------------------

def workers(ctx: Context) -> dict[str, Any]:
    """--workers 1 against --workers 2 on the 10,000-name registry and mix of scenario 1."""
    hosts = workload.write_hosts(ctx.work / "hosts-10000", LOCAL_REGISTRY)
    names = [workload.local_name(i) for i in workload.mix_indexes(LOCAL_REGISTRY)]
    queries = workload.write_queries(ctx.work / "local-queries", names)
    probe = workload.local_name(0)
    contenders = []
    with contextlib.ExitStack() as stack:
        for count in (1, 2):
            server = stack.enter_context(servers.dockdns(
                f"dockdns-w{count}", LOOPBACK, servers.free_port(),
                ["--hosts-file", str(hosts), *ctx.upstream], probe, ctx.log_dir,
                workers=count))
            expect(server, samples(LOCAL_REGISTRY, workload.local_name, workload.address))
            contenders.append(Contender(f"workers={count}", server, queries))
        results = alternate(contenders, ctx)
    if ctx.pinning is not None:
        where = (f"The workers share the server CPUs ({len(ctx.pinning.servers)} of "
                 f"{os.cpu_count()}; dnsperf has the rest): with one, a second worker cannot add "
                 "throughput here, and the ratio shows what two processes taking turns on one "
                 "core cost; showing the gain needs a host with a core per worker.")
    else:
        where = (f"{os.cpu_count()} cores for dnsperf and the workers together: a second worker "
                 "adds throughput only where a core would otherwise be idle.")
    notes = [where + " The test suite checks that both workers answer over UDP and TCP and "
             "stop together."]
    return {"status": "ok", "servers": results, "notes": notes,
            "ratios": {"2/1": ratio(results, "workers=2", "workers=1")},
            "cpu_ratios": {"2/1": cpu_ratio(results, "workers=2", "workers=1")}}


# --- 5. propagation ---------------------------------------------------------------------------

class _StartEvents:
    """Docker's start events for the harness's containers, with the engine's own timestamps."""

    def __init__(self, docker: Any) -> None:
        self.times: dict[str, int] = {}
        self.changed = threading.Condition()
        self._stream = docker.events(decode=True, filters={
            "type": "container", "event": "start", "label": engine.LABEL})
        self._thread = threading.Thread(target=self._read, name="docker-events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when closed
            for event in self._stream:
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                with self.changed:
                    self.times[name] = int(event["timeNano"])
                    self.changed.notify_all()

    def wait(self, name: str, timeout: float) -> int | None:
        with self.changed:
            self.changed.wait_for(lambda: name in self.times, timeout)
            return self.times.get(name)

    def close(self) -> None:
        self._stream.close()


def _first_answer(server: Server, name: str, timeout: float) -> int | None:
    """Ask for ``name`` every millisecond; the wall-clock time (ns) of the first real answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = servers.query(server.host, server.port, name, timeout=0.05)
        if reply is not None and reply.rr:
            return time.time_ns()
        time.sleep(POLL_INTERVAL)
    return None


def _poll_into(found: list[int | None], server: Server, name: str) -> None:
    found.append(_first_answer(server, name, PROPAGATION_TIMEOUT))


def propagation(ctx: Context) -> dict[str, Any]:
    """From a container's start event (the engine's timestamp) to dockdns answering its name."""
    reason = engine.unavailable()
    if reason:
        raise Skip(reason)
    docker = engine.client()
    delays_ms: list[float] = []
    missed = 0
    with engine.bench_network(docker), \
            servers.dockdns("dockdns", LOOPBACK, servers.free_port(), ctx.upstream,
                            workload.local_name(0), ctx.log_dir, docker=True) as dockdns:
        events = _StartEvents(docker)
        try:
            for number in range(ctx.propagation_starts):
                name = f"{engine.PREFIX}prop-{number}"
                container = engine.create(docker, name)
                found: list[int | None] = []
                poller = threading.Thread(target=_poll_into, args=(found, dockdns, name))
                poller.start()
                container.start()
                poller.join()
                started = events.wait(name, PROPAGATION_TIMEOUT)
                container.remove(force=True)
                answered = found[0] if found else None
                if started is None:
                    raise RuntimeError(f"no start event seen for {name}")
                if answered is None:
                    if number == 0 and not delays_ms:
                        raise Skip("no Docker source: dockdns never answered a started "
                                   f"container's name within {PROPAGATION_TIMEOUT:g} s")
                    missed += 1
                    continue
                delays_ms.append((answered - started) / 1e6)
        finally:
            events.close()
    ordered = sorted(delays_ms)
    return {"status": "ok", "starts": ctx.propagation_starts, "missed": missed,
            "p50_ms": round(_quantile(ordered, 0.50), 2),
            "p99_ms": round(_quantile(ordered, 0.99), 2),
            "max_ms": round(ordered[-1], 2) if ordered else None,
            "delays_ms": [round(d, 2) for d in delays_ms]}


def _quantile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank quantile of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --- 6. a dead upstream ------------------------------------------------------------------------

# Scenario 6: forwarding while an upstream is dead (issue 15). One dockdns, two forward zones:
# ``dead.bench`` to a real socket on loopback that reads and never answers, ``live.bench`` to a
# dnsmasq that answers every name under it.
# 
# A. Once the dead zone's only upstream is marked down, 100 new names under it, one at a time:
# each answer's latency (SERVFAIL comes at once, not after the 3.5 s answer budget).
# B. dnsperf on unique names under the live zone (every query a cache miss, forwarded), alone and
# then while a flood of unique dead-zone names runs beside it: the healthy zone must keep its
# throughput and lose nothing (the dead zone holds at most its share of --max-inflight).

NEW_NAMES = 100
# Unique live names in dnsperf's file: more than a run sends at the forwarded-miss rate, so
# nearly every query is a miss (a repeat would be a cache hit, which scenario 2 measures).
LIVE_NAMES = 60_000
# The flood: unique dead-zone names at a fixed rate (a misbehaving client that keeps asking
# names nobody can answer, well past --max-inflight's 4096 within the answer budget if they
# were waited on), bounded in count and time whatever the machine does.
FLOOD_QPS = 2_000
FLOOD_MAX = 200_000
MARK_TRIES = 20


@contextlib.contextmanager
def silent_upstream() -> Iterator[int]:
    """A UDP socket on loopback that reads every query and answers none, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                sock.recv(4096)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def _timed(host: str, port: int, name: str, timeout: float) -> tuple[float, str]:
    started = time.perf_counter()
    reply = servers.query(host, port, name, timeout=timeout)
    elapsed = (time.perf_counter() - started) * 1000
    rcode = "no reply" if reply is None else str(dnslib.RCODE.get(reply.header.rcode))
    return elapsed, rcode


def _flood(host: str, port: int, until: float, sent: list[int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        count = 0
        started = time.monotonic()
        while count < FLOOD_MAX and time.monotonic() < until:
            if count >= (time.monotonic() - started) * FLOOD_QPS:
                time.sleep(0.002)
                continue
            packet = dnslib.DNSRecord.question(f"f{count}.dead.bench").pack()
            with contextlib.suppress(BlockingIOError):
                sock.sendto(packet, (host, port))
                count += 1
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                while True:
                    sock.recv(4096)
    sent.append(count)


def dead_upstream(ctx: Context) -> dict[str, Any]:
    live_port = servers.free_port()
    live_names = [f"l{i}.live.bench" for i in range(LIVE_NAMES)]
    queries = workload.write_queries(ctx.work / "live-queries", live_names)
    with silent_upstream() as dead_port, \
            servers.dnsmasq("live", LOOPBACK, live_port, ["--address=/live.bench/192.0.2.1"],
                            "probe.live.bench", ctx.log_dir), \
            servers.dockdns("dockdns", LOOPBACK, servers.free_port(),
                            [*ctx.upstream,
                             "--forward-zone", f"dead.bench={LOOPBACK}:{dead_port}",
                             "--forward-zone", f"live.bench={LOOPBACK}:{live_port}"],
                            "probe.live.bench", ctx.log_dir) as dockdns:
        host, port = dockdns.host, dockdns.port
        # Mark the dead zone's upstream down: names until one is answered at once (bounded).
        marking = [_timed(host, port, f"m{i}.dead.bench", 5.0) for i in range(2)]
        for i in range(2, MARK_TRIES):
            elapsed, _ = _timed(host, port, f"m{i}.dead.bench", 5.0)
            marking.append((elapsed, ""))
            if elapsed < 50:
                break
        # A: 100 new names with the only upstream of their zone dead and marked.
        answers = [_timed(host, port, f"n{i}.dead.bench", 5.0) for i in range(NEW_NAMES)]
        latencies = sorted(ms for ms, _ in answers)
        rcodes: dict[str, int] = {}
        for _, rcode in answers:
            rcodes[rcode] = rcodes.get(rcode, 0) + 1
        # B: the healthy zone alone, then beside the flood.
        alone = Contender("alone", dockdns, queries)
        flooded = Contender("with dead-zone flood", dockdns, queries)
        sent: list[int] = []
        for _ in range(ctx.rounds):
            alone.measure(ctx.seconds, ctx.pinning)
            flood = threading.Thread(target=_flood, args=(host, port,
                                                          time.monotonic() + ctx.seconds + 1,
                                                          sent), daemon=True)
            flood.start()
            flooded.measure(ctx.seconds, ctx.pinning)
            flood.join(timeout=ctx.seconds + 5)
        results = {"alone": alone.summary(), "with dead-zone flood": flooded.summary()}
    pairs = zip(results["with dead-zone flood"]["runs"], results["alone"]["runs"], strict=True)
    ratio = statistics.median(f["qps"] / a["qps"] for f, a in pairs if a["qps"])
    return {
        "status": "ok",
        "marked_after": len(marking),
        "new_names": NEW_NAMES,
        "answered": sum(1 for _, rcode in answers if rcode != "no reply"),
        "rcodes": rcodes,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3),
        "max_ms": round(latencies[-1], 3),
        "flood_sent": sum(sent),
        "servers": results,
        "ratios": {"flooded/alone": round(ratio, 3)},
        "cpu_ratios": {},
    }
