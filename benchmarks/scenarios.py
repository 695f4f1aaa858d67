"""The scenarios of issue 6. Each starts its servers, checks they give the expected answers, then
measures them with dnsperf, alternating the servers round by round so that machine noise falls
on all of them alike, and returns a JSON-ready summary."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import cpus, dnsperf, engine, servers, workload
from benchmarks.servers import Server

LOOPBACK = "127.0.0.1"
SCALING_SIZES = (10, 10_000, 100_000)
LOCAL_REGISTRY = 10_000
CONTAINERS = 20  # names in the container scenario (each also asked as name.network)
PROPAGATION_TIMEOUT = 5.0  # a start not answering by then counts as a failure to propagate
POLL_INTERVAL = 0.001


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

    def measure(self, seconds: float, plan: cpus.Plan | None) -> None:
        with cpus.pinned(self.server.pids, plan.servers if plan else None):
            before = self.server.cpu_seconds()
            result = dnsperf.run(self.server.host, self.server.port, self.queries, seconds,
                                 netns_pid=self.server.netns_pid,
                                 cpus=plan.client if plan else None)
            used = self.server.cpu_seconds() - before
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
                    netns_pid=server.netns_pid)
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
    """dockdns and dnsmasq serving the same 10,000-name hosts file, the same 1,000-name mix."""
    hosts = workload.write_hosts(ctx.work / "hosts-10000", LOCAL_REGISTRY)
    names = [workload.local_name(i) for i in workload.mix_indexes(LOCAL_REGISTRY)]
    queries = workload.write_queries(ctx.work / "local-queries", names)
    probe = workload.local_name(0)
    check = samples(LOCAL_REGISTRY, workload.local_name, workload.address)
    with servers.dockdns("dockdns", LOOPBACK, servers.free_port(),
                         ["--hosts-file", str(hosts), *ctx.upstream], probe,
                         ctx.log_dir) as dockdns, \
            servers.dnsmasq("dnsmasq", LOOPBACK, servers.free_port(),
                            [f"--addn-hosts={hosts}", "--local-ttl=600"], probe,
                            ctx.log_dir) as dnsmasq:
        for server in (dockdns, dnsmasq):
            expect(server, check)
        results = alternate([Contender("dockdns", dockdns, queries),
                             Contender("dnsmasq", dnsmasq, queries)], ctx)
    return {"status": "ok", "registry_names": LOCAL_REGISTRY, "mix_names": len(set(names)),
            "servers": results, **compare(results, "dockdns", "dnsmasq")}


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


SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "local_names": local_names,
    "cache_hits": cache_hits,
    "container_names": container_names,
    "registry_scaling": registry_scaling,
    "workers": workers,
    "propagation": propagation,
}
