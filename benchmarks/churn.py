"""Registry churn (issue 16): dnsperf on registered names while containers start and stop.

One dockdns watches the engine and serves a 10,000-name hosts file; 20 containers stay up on the
harness's network. dnsperf asks a 1,000-name mix of both (hosts names, the containers' names and
``NAME.NETWORK``), alternately with nothing changing (steady) and while 20 containers a second
are started and 20 stopped (removed, which kills them), from a pool of threads each with its own
engine connection. The rate the engine actually reached in each run is measured and reported:
past its limit, ticks are dropped, not queued without bound.

Placement: dnsperf on the client CPU and dockdns on the server CPUs, as everywhere, and the
churn threads with dnsperf. The engine (dockerd, containerd, the shims and containers they start)
is left where the scheduler puts it, as on any host that runs both: pinned with dnsperf, which
runs flat out against a fast server, it got too little CPU to churn at all (measured here: 1.6
starts a second against 2.7 unpinned, and none at all in a full run). So churn runs' QPS and p99
include the engine's competition for dockdns's core; CPU per query (dockdns's own) does not, and
is reported beside them. ``PIN_ENGINE`` puts the engine with dnsperf instead (``engine_on``:
shims started meanwhile get the engine's own CPUs back afterwards).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import cpus, dnsperf, engine, goals, scenarios, servers, workload
from benchmarks.scenarios import LOCAL_REGISTRY, LOOPBACK, Contender, Context

RATE = 20  # container starts a second, and as many stops
STABLE = 20  # containers up for the whole scenario, whose names are in the mix
POOL = 20  # churn containers up before the first run: what the first second's stops remove
# Threads making engine calls, per kind. Measured here, Docker 20.10 starts about 4 containers a
# second however many are asked at once (more in flight only makes each take longer), so a start
# is not waited for beyond these: a tick that finds every thread of its kind busy is dropped and
# counted, and the achieved rate is the engine's, not a queue's.
START_THREADS = 8
# One: Docker 20.10 can keep a stale endpoint of a container removed amid concurrent removals
# (see engine.NETWORKS), and one thread removes faster (~5/s here) than the engine starts.
STOP_THREADS = 1
PIN_ENGINE = False  # see the module's docstring
# Below this many starts and stops a second together, a churn run measured nothing: its targets
# are reported as not measured rather than met.
MEASURABLE = 1.0
LEAD = 1.0  # seconds of churn before dnsperf starts, so the run sees it at its full rate
# Seconds after the last engine call before anything else is measured: the events of the last
# calls reach dockdns after the calls return, and belong to the churn run, not the next one.
SETTLE = 1.0
SOURCE_TIMEOUT = 10.0  # for dockdns to answer a container's name at all
# The p99 and QPS of churn runs within this fraction of the steady runs (issue 16).
TOLERANCE = 0.10


class Churn:
    """Containers started and stopped at up to ``RATE`` a second each while ``running()``."""

    def __init__(self, client_cpus: frozenset[int] | None) -> None:
        self._cpus = client_cpus
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._up: collections.deque[str] = collections.deque()  # container IDs, oldest first
        self._numbers = itertools.count()
        self._pending = {"start": 0, "stop": 0}
        self.starts: list[float] = []  # monotonic times each start completed
        self.stops: list[float] = []
        self.failures: list[str] = []
        self.dropped = {"start": 0, "stop": 0}  # ticks not taken: every thread was busy
        self._pools = {
            kind: concurrent.futures.ThreadPoolExecutor(
                threads, thread_name_prefix=f"churn-{kind}", initializer=self._pin)
            for kind, threads in (("start", START_THREADS), ("stop", STOP_THREADS))}
        self._limits = {"start": START_THREADS, "stop": STOP_THREADS}

    def _pin(self) -> None:
        if self._cpus is not None:
            os.sched_setaffinity(0, self._cpus)  # pid 0: this thread only

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            client = engine.client()
            with self._lock:
                self._clients.append(client)
            api = self._local.api = client.api
        return api

    def _start(self) -> None:
        api = self._api()
        name = f"{engine.PREFIX}churn-{next(self._numbers)}"
        made = api.create_container(
            engine.IMAGE, ["sleep", engine.LIFETIME], name=name, labels={engine.LABEL: "1"},
            host_config=api.create_host_config(network_mode=engine.NETWORK))
        api.start(made["Id"])
        with self._lock:
            self._up.append(made["Id"])
            self.starts.append(time.monotonic())

    def _stop(self) -> None:
        with self._lock:
            victim = self._up.popleft() if self._up else None
        if victim is None:
            return
        self._api().remove_container(victim, force=True)
        with self._lock:
            self.stops.append(time.monotonic())

    def _run(self, kind: str) -> None:
        try:
            if kind == "start":
                self._start()
            else:
                self._stop()
        except Exception as err:  # the SDK raises many types; a failed call is counted, shown
            with self._lock:
                self.failures.append(f"{kind}: {type(err).__name__}: {err}")
        finally:
            with self._lock:
                self._pending[kind] -= 1

    def _submit(self, kind: str, wait: bool = False) -> None:
        with self._lock:
            if not wait and self._pending[kind] >= self._limits[kind]:
                self.dropped[kind] += 1
                return
            self._pending[kind] += 1
        self._pools[kind].submit(self._run, kind)

    def fill(self, count: int) -> None:
        """``count`` churn containers up before measuring."""
        for _ in range(count):
            self._submit("start", wait=True)
        self._drain()
        if self.failures:
            raise RuntimeError(f"could not start churn containers: {self.failures[0]}")
        self.starts.clear()
        self.dropped = {"start": 0, "stop": 0}

    def _drain(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(self._pending.values()):
                    return
            time.sleep(0.05)

    def _pace(self, stop: threading.Event) -> None:
        interval = 1.0 / RATE
        tick = time.monotonic()
        while not stop.is_set():
            delay = tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)
                continue
            tick += interval
            self._submit("start")
            self._submit("stop")

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        stop = threading.Event()
        pacer = threading.Thread(target=self._pace, args=(stop,), name="churn-pacer",
                                 daemon=True)
        pacer.start()
        try:
            time.sleep(LEAD)
            yield
        finally:
            stop.set()
            pacer.join()
            self._drain()
            time.sleep(SETTLE)

    def rates(self, since: float, until: float) -> tuple[float, float]:
        """Starts and stops a second completed between the two monotonic times."""
        span = max(until - since, 1e-9)
        with self._lock:
            return (sum(since <= t <= until for t in self.starts) / span,
                    sum(since <= t <= until for t in self.stops) / span)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        for client in self._clients:
            client.close()


def _engine_pids() -> list[int]:
    """dockerd and containerd (whatever started it): the processes that make containers."""
    found = [pid for pid in [servers.dockerd_pid()] if pid is not None]
    for pid in _all_pids():
        if _comm(pid) == "containerd":
            found.append(pid)
    return found


def _all_pids() -> set[int]:
    return {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tree(pid: int) -> list[int]:
    found = [pid]
    for child in servers.children(pid):
        found += _tree(child)
    return found


@contextlib.contextmanager
def engine_on(target: frozenset[int] | None) -> Iterator[None]:
    """The engine's processes on ``target`` for the duration (see the module's docstring)."""
    if target is None:
        yield
        return
    pids = _engine_pids()
    before = _all_pids()
    try:
        with cpus.pinned(pids, target):
            yield
    finally:
        # A shim inherits containerd's mask and then leaves it (it re-parents to init), so
        # the restore in cpus.pinned() cannot see it: shims born meanwhile, and what runs
        # under them, get the engine's own mask back here.
        original = os.sched_getaffinity(pids[0]) if pids else None
        for pid in _all_pids() - before:
            if original is None or not _comm(pid).startswith("containerd-shim"):
                continue
            for member in _tree(pid):
                for task in _tasks(member):
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(task, original)


def _tasks(pid: int) -> list[int]:
    try:
        return [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def _answering(server: servers.Server, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = servers.query(server.host, server.port, name, timeout=0.5)
        if reply is not None and reply.rr:
            return True
        time.sleep(0.1)
    return False


def churn(ctx: Context) -> dict[str, Any]:
    reason = engine.unavailable()
    if reason:
        raise scenarios.Skip(reason)
    docker = engine.client()
    hosts = workload.write_hosts(ctx.work / "hosts-10000", LOCAL_REGISTRY)
    client_cpus = ctx.pinning.client if ctx.pinning else None
    with engine.bench_network(docker):
        churner = Churn(client_cpus)
        try:
            return _measure(ctx, docker, hosts, churner)
        finally:
            churner.close()


def _measure(ctx: Context, docker: Any, hosts: Path, churner: Churn) -> dict[str, Any]:
    stable = [engine.start(docker, f"{engine.PREFIX}stable-{i}") for i in range(STABLE)]
    answers = {}
    for container in stable:
        answers[container.name] = engine.address(container)
        answers[f"{container.name}.{engine.NETWORK}"] = engine.address(container)
    local = [workload.local_name(i) for i in
             workload.mix_indexes(LOCAL_REGISTRY, workload.MIX_SIZE - len(answers))]
    queries = workload.write_queries(ctx.work / "churn-queries", [*local, *answers])
    churner.fill(POOL)
    with servers.dockdns("dockdns", LOOPBACK, servers.free_port(),
                         ["--hosts-file", str(hosts), *ctx.upstream], workload.local_name(0),
                         ctx.log_dir, docker=True) as dockdns:
        if not _answering(dockdns, stable[0].name, SOURCE_TIMEOUT):
            raise scenarios.Skip("no Docker source: dockdns never answered a container's name "
                                 f"within {SOURCE_TIMEOUT:g} s")
        scenarios.expect(dockdns, {**scenarios.samples(LOCAL_REGISTRY, workload.local_name,
                                                       workload.address), **answers})
        steady = Contender("steady", dockdns, queries)
        churning = Contender("churn", dockdns, queries)
        # One unmeasured pass, as alternate() makes: memos filled.
        dnsperf.run(dockdns.host, dockdns.port, queries, None, passes=1)
        rates: list[tuple[float, float]] = []
        engine_cores: list[float] = []
        engine_pids = _engine_pids()
        with engine_on(ctx.pinning.client if ctx.pinning and PIN_ENGINE else None):
            for number in range(ctx.rounds):
                order = [steady, churning] if number % 2 == 0 else [churning, steady]
                for contender in order:
                    if contender is steady:
                        steady.measure(ctx.seconds, ctx.pinning)
                        continue
                    with churner.running():
                        used = servers.cpu_seconds(engine_pids)
                        since = time.monotonic()
                        churning.measure(ctx.seconds, ctx.pinning)
                        until = time.monotonic()
                        engine_cores.append((servers.cpu_seconds(engine_pids) - used)
                                            / (until - since))
                        rates.append(churner.rates(since, until))
        results = {"steady": steady.summary(), "churn": churning.summary()}
    return _result(ctx, results, rates, engine_cores, churner)


def _result(ctx: Context, results: dict[str, dict[str, Any]],
            rates: list[tuple[float, float]], engine_cores: list[float],
            churner: Churn) -> dict[str, Any]:
    pairs = list(zip(results["churn"]["runs"], results["steady"]["runs"], strict=True))
    qps_ratio = scenarios.ratio(results, "churn", "steady")
    p99 = [c["p99_ms"] / s["p99_ms"] for c, s in pairs if s["p99_ms"]]
    p99_ratio = round(statistics.median(p99), 3) if p99 else None
    starts = round(statistics.median(r[0] for r in rates), 1)
    stops = round(statistics.median(r[1] for r in rates), 1)
    lost = results["churn"]["lost"]
    # A run during which the engine started and stopped (next to) nothing judged nothing.
    measured = starts + stops >= MEASURABLE
    targets = [
        goals.at_least("churn_qps", "churn: QPS during churn / steady",
                       qps_ratio if measured else None, 1 - TOLERANCE),
        goals.at_most("churn_p99", "churn: p99 during churn / steady",
                      p99_ratio if measured else None, 1 + TOLERANCE),
        goals.at_most("churn_lost", "churn: queries lost during churn",
                      float(lost) if measured else None, 0, " queries"),
    ]
    dropped = churner.dropped["start"] + churner.dropped["stop"]
    notes = [f"Asked for {RATE} starts and {RATE} stops a second (each stop a forced removal), "
             f"from {START_THREADS} + {STOP_THREADS} threads; achieved (median over the churn "
             f"runs) **{starts:g} starts/s and {stops:g} stops/s**"
             + ("" if min(starts, stops) >= RATE * 0.95 else
                f": the engine here cannot reach {RATE}/s (ticks dropped while every thread "
                f"waited on it: {dropped:,})") + f"; failed engine calls: {len(churner.failures)}"
             + (f" (first: {churner.failures[0]})" if churner.failures else "") + "."]
    if not measured:
        notes.append(f"Fewer than {MEASURABLE:g} starts and stops a second together reached "
                     "the engine during the churn runs: the targets are not judged.")
    used = f"{statistics.median(engine_cores):.2f}" if engine_cores else "–"
    if ctx.pinning is not None and PIN_ENGINE:
        notes.append("dockerd, containerd and everything they started meanwhile ran on CPU "
                     f"{','.join(map(str, sorted(ctx.pinning.client)))} with dnsperf and the "
                     f"churn threads, using {used} of a core (median): the churn runs' dnsperf "
                     "shared its CPU with the engine, the steady runs' did not.")
    else:
        notes.append(f"dockerd and containerd used {used} of a core (median over the churn "
                     "runs) wherever the scheduler put them, dockdns's CPU included: the churn "
                     "runs' QPS and p99 include that competition, dockdns's CPU per query does "
                     "not.")
    figures = [goals.figure("container starts per second achieved", starts, f"asked {RATE}"),
               goals.figure("container stops per second achieved", stops, f"asked {RATE}"),
               goals.figure("CPU per query, steady / churn", scenarios.cpu_ratio(
                   results, "churn", "steady"), "below 1: churn costs dockdns per query")]
    result = {"status": "ok", "title": f"Churn: {RATE} container starts and {RATE} stops a second "
            f"beside {LOCAL_REGISTRY:,} hosts names", "servers": results,
            "ratios": {"churn/steady": qps_ratio},
            "cpu_ratios": {"churn/steady": scenarios.cpu_ratio(results, "churn", "steady")},
            "p99_ratio": p99_ratio,
            "churn": {"asked_per_s": RATE, "starts_per_s": starts, "stops_per_s": stops,
                      "started": len(churner.starts), "stopped": len(churner.stops),
                      "per_run": [[round(a, 1), round(b, 1)] for a, b in rates],
                      "dropped_ticks": churner.dropped, "failed_calls": len(churner.failures),
                      "failures": churner.failures[:5],
                      "engine_cores": [round(c, 2) for c in engine_cores]},
            "figures": figures, "targets": targets, "notes": notes}
    restate(result)
    return result


def _cores(summary: dict[str, Any]) -> str:
    """The cores a server used: its CPU per query times its QPS."""
    cpu, qps = summary.get("cpu_us_per_query"), summary.get("qps")
    return f"{cpu * qps / 1e6:.2f}" if cpu and qps else "–"


def restate(result: dict[str, Any]) -> None:
    """Say why each missed target was missed, from the figures ``result`` holds (also applied to
    a stored results.json by ``benchmarks.run --render``)."""
    steady, churned = result["servers"]["steady"], result["servers"]["churn"]
    rates = result["churn"]
    cost = (f"dockdns's own CPU per query went from {steady['cpu_us_per_query']} to "
            f"{churned['cpu_us_per_query']} µs")
    engine = result["churn"].get("engine_cores") or []
    engine_used = f"{statistics.median(engine):.2f}" if engine else "some"
    if churned["cpu_us_per_query"] <= steady["cpu_us_per_query"] * (1 + TOLERANCE):
        cores = (f"dockdns used {_cores(churned)} and dnsperf {churned.get('dnsperf_cores')} "
                 f"of a core during churn, against {_cores(steady)} and "
                 f"{steady.get('dnsperf_cores')} steady")
        why = (f"While containers came and went ({rates['starts_per_s']:g} starts and "
               f"{rates['stops_per_s']:g} stops a second), {cost}: the registry changes by "
               "delta and the memo forgets only the touched names, so dockdns's work per query "
               f"barely moved. But {cores}: both were waiting, not working. What they waited "
               "for was not measured; meanwhile the engine's start path runs on both CPUs of "
               f"this machine (dockerd and containerd {engine_used} of a core, and beyond them "
               "runc, the shims, iptables and the kernel's namespace and veth setup).")
        closes = ("Find what dockdns and dnsperf wait on during churn (an off-CPU profile of "
                  "dockdns's loop thread, perf sched); a host with a core for the engine beside "
                  "dockdns's and dnsperf's (PIN_ENGINE in benchmarks/churn.py puts the engine on "
                  "dnsperf's CPU, where it churns less than 2 containers a second).")
    else:
        why = (f"While containers came and went ({rates['starts_per_s']:g} starts and "
               f"{rates['stops_per_s']:g} stops a second), {cost}: the Docker source's work "
               "per event (inspecting the container, the registry delta, the memo entries it "
               "forgets) competes with the queries on the one event loop.")
        closes = "Less work per engine event: profile the Docker source under churn (py-spy)."
    for target in result["targets"]:
        if target["met"] is False:
            target["why"], target["closes"] = why, closes
