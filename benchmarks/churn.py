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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import cpus, dnsperf, engine, goals, scenarios, schedstat, servers, workload
from benchmarks.scenarios import LOCAL_REGISTRY, LOOPBACK, Contender, Context

RATE = 20  # container starts a second, and as many stops
STABLE = 20  # containers up for the whole scenario, whose names are in the mix
POOL = 20  # churn containers up before each churn run: what its first second's stops stop
# Stopped churn containers ready to start again before the first run: a start takes the one
# stopped longest ago (``docker start``), so neither a create nor a removal is on the timed
# path. When none is left, a start creates one (counted: ``created_while_churning``). Stopped
# containers come back to this supply, so it only has to cover the runs' surplus of starts.
SPARE = 2 * POOL
# Threads making engine calls, per kind. Measured here (Docker 20.10, 2 CPUs, no dnsperf), the
# engine starts 3.4-5 containers a second whether 4, 8 or 16 starts are in flight, whether each
# start is a create and a start or only the start of a stopped container: the limit is the
# engine's. A tick that finds every thread of its kind busy is dropped and counted, so the
# achieved rate is the engine's, not a queue's.
START_THREADS = 8
# One. A stop is ``docker stop -t 0`` (SIGKILL at once, returned when the container has
# exited), not a removal: a forced removal also deletes the container's layer and reached 1-1.5
# stops a second here against 2-3 for a stop. Several stops in flight reached 5-6 a second but
# left the harness's network with an endpoint nobody holds (Docker 20.10; see engine.NETWORKS),
# which only an engine restart releases.
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

    def __init__(self, client_cpus: frozenset[int] | None, network: str | None = None,
                 prefix: str | None = None, label: str | None = None) -> None:
        self._cpus = client_cpus
        self._network = network or engine.NETWORK
        self._prefix = prefix or f"{engine.PREFIX}churn-"
        self._label = label or engine.LABEL
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._up: collections.deque[str] = collections.deque()  # running IDs, oldest first
        self._down: collections.deque[str] = collections.deque()  # stopped longest ago first
        self._numbers = itertools.count()
        self._pending = {"start": 0, "stop": 0}
        self.starts: list[float] = []  # monotonic times each start completed
        self.stops: list[float] = []
        self.created_while_churning = 0  # starts that found no stopped container to start
        self.failures: list[str] = []
        self.dropped = {"start": 0, "stop": 0}  # ticks not taken: every thread was busy
        self._pools = {
            kind: concurrent.futures.ThreadPoolExecutor(
                threads, thread_name_prefix=f"churn-{kind}", initializer=self._pin)
            for kind, threads in (("start", START_THREADS), ("stop", STOP_THREADS))}
        self._limits = {"start": START_THREADS, "stop": STOP_THREADS}
        self._churning = False

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

    def _create(self) -> str:
        api = self._api()
        made = api.create_container(
            engine.IMAGE, ["sleep", engine.LIFETIME], name=f"{self._prefix}{next(self._numbers)}",
            labels={self._label: engine.RUN},
            host_config=api.create_host_config(network_mode=self._network))
        return str(made["Id"])

    def _make_spare(self) -> None:
        container = self._create()
        with self._lock:
            self._down.append(container)

    def _start(self) -> None:
        with self._lock:
            container = self._down.popleft() if self._down else None
            if container is None and self._churning:
                self.created_while_churning += 1
        if container is None:
            container = self._create()
        self._api().start(container)
        with self._lock:
            self._up.append(container)
            self.starts.append(time.monotonic())

    def _stop(self) -> None:
        with self._lock:
            victim = self._up.popleft() if self._up else None
        if victim is None:
            return
        # -t 0: SIGKILL at once (the container's sleep, its PID 1, ignores SIGTERM anyway);
        # returns once it has exited, as `docker stop` does.
        self._api().stop(victim, timeout=0)
        with self._lock:
            self._down.append(victim)
            self.stops.append(time.monotonic())

    def _run(self, kind: str, call: Any = None) -> None:
        try:
            (call or (self._start if kind == "start" else self._stop))()
        except Exception as err:  # the SDK raises many types; a failed call is counted, shown
            with self._lock:
                self.failures.append(f"{kind}: {type(err).__name__}: {err}")
        finally:
            with self._lock:
                self._pending[kind] -= 1

    def _submit(self, kind: str, wait: bool = False, call: Any = None) -> None:
        with self._lock:
            if not wait and self._pending[kind] >= self._limits[kind]:
                self.dropped[kind] += 1
                return
            self._pending[kind] += 1
        self._pools[kind].submit(self._run, kind, call)

    @property
    def up(self) -> int:
        with self._lock:
            return len(self._up)

    @property
    def stopped(self) -> int:
        with self._lock:
            return len(self._down)

    def fill(self, count: int, spare: int = SPARE) -> None:
        """``count`` churn containers up and ``spare`` created (stopped) before measuring."""
        for _ in range(spare):
            self._submit("start", wait=True, call=self._make_spare)
        self._drain()
        for _ in range(count):
            self._submit("start", wait=True)
        self._drain()
        if self.failures:
            raise RuntimeError(f"could not make churn containers: {self.failures[0]}")
        self.starts.clear()
        self.dropped = {"start": 0, "stop": 0}

    def trim(self, count: int = POOL) -> None:
        """Stop the oldest running churn containers down to ``count`` (between runs, off the
        timed path), so that every churn run starts from the same state."""
        for _ in range(max(self.up - count, 0)):
            self._submit("stop", wait=True)
        self._drain()

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
        self._churning = True
        pacer.start()
        try:
            time.sleep(LEAD)
            yield
        finally:
            stop.set()
            pacer.join()
            self._drain()
            self._churning = False
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
    # A smoke run proves the harness: a small supply (starts create more when it runs out).
    churner.fill(POOL, spare=POOL // 4 if ctx.smoke else SPARE)
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
        watched: dict[str, list[dict[str, Any]]] = {"steady": [], "churn": []}
        members = _members(dockdns.pids)
        with engine_on(ctx.pinning.client if ctx.pinning and PIN_ENGINE else None):
            for number in range(ctx.rounds):
                order = [steady, churning] if number % 2 == 0 else [churning, steady]
                for contender in order:
                    watch = schedstat.Watch(members)
                    if contender is steady:
                        watch.start()
                        steady.measure(ctx.seconds, ctx.pinning)
                        watch.stop()
                        watched["steady"].append(watch.summary(THREADS_OF))
                        continue
                    churner.trim()  # the previous run's surplus of starts, off the timed path
                    with churner.running():
                        watch.start()
                        since = time.monotonic()
                        churning.measure(ctx.seconds, ctx.pinning)
                        until = time.monotonic()
                        watch.stop()
                        watched["churn"].append(watch.summary(THREADS_OF))
                        rates.append(churner.rates(since, until))
        results = {"steady": steady.summary(), "churn": churning.summary()}
    time_spent = {label: schedstat.median(runs) for label, runs in watched.items()}
    engine_cores = [_engine_cores(summary) for summary in watched["churn"]]
    return _result(ctx, results, rates, engine_cores, churner, time_spent)


# The groups the runs' time is told in (benchmarks/schedstat.py). The engine is three: dockerd
# (with what it runs and reaps: iptables), containerd (with the shims' start commands it
# reaps), and the shims (with the runc calls they reap, and runc's prestart hook, a re-exec of
# dockerd that sets up the container's network namespace).
ENGINE_GROUPS = ("dockerd", "containerd", "shims")
THREADS_OF = ("dockdns",)  # dockdns's main thread is its event loop: shown apart


def _members(server: list[int]) -> Callable[[], dict[int, str]]:
    harness = os.getpid()

    def members() -> dict[int, str]:
        found = {pid: "dockdns" for pid in server}
        found[harness] = "harness"  # the churn threads, the pacer, this watch
        listed = list(schedstat.processes())
        shims = {pid for pid, name, _ in listed if name.startswith("containerd-shim")}
        for pid, name, parent in listed:
            if pid in found:
                continue
            if name == "dnsperf" and parent == harness:
                found[pid] = "dnsperf"
            elif name in ("dockerd", "containerd"):
                found[pid] = name
            elif pid in shims or parent in shims or name.startswith("runc"):
                # A shim, runc ("runc:[2:INIT]" while it sets a container up), and the
                # container's own process, which runc's setup becomes.
                found[pid] = "shims"
            elif parent == 2 or pid == 2:  # kthreadd's: kworkers (namespace teardown), ksoftirqd
                found[pid] = "kernel threads"
        return found

    return members


def _engine_cores(summary: dict[str, Any]) -> float:
    processes = summary.get("processes", {})
    return round(sum(float(processes.get(group, {}).get("cpu_cores_with_children", 0.0))
                     for group in ENGINE_GROUPS), 3)


def _result(ctx: Context, results: dict[str, dict[str, Any]],
            rates: list[tuple[float, float]], engine_cores: list[float],
            churner: Churn, time_spent: dict[str, dict[str, Any]] | None = None
            ) -> dict[str, Any]:
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
    notes = [f"Asked for {RATE} starts and {RATE} stops a second (a stop is `docker stop -t 0` "
             "of the oldest churn container; a start starts the one stopped longest ago, so "
             "neither a create nor a removal is on the timed path), from "
             f"{START_THREADS} + {STOP_THREADS} threads; achieved (median over the churn "
             f"runs) **{starts:g} starts/s and {stops:g} stops/s**"
             + ("" if min(starts, stops) >= RATE * 0.95 else
                f": the engine here cannot reach {RATE}/s (ticks dropped while every thread "
                f"waited on it: {dropped:,})") + f"; failed engine calls: {len(churner.failures)}"
             + (f" (first: {churner.failures[0]})" if churner.failures else "")
             + (f"; starts that had to create a container: {churner.created_while_churning}"
                if churner.created_while_churning else "") + "."]
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
        notes.append(f"The engine (dockerd, containerd, the shims, and the iptables, runc and "
                     f"hook processes they run) used {used} of a core (median over the churn "
                     "runs) wherever the scheduler put them, dockdns's CPU included: the churn "
                     "runs' QPS and p99 include that competition, dockdns's CPU per query does "
                     "not.")
    figures = [goals.figure("container starts per second achieved", starts, f"asked {RATE}"),
               goals.figure("container stops per second achieved", stops, f"asked {RATE}"),
               goals.figure("CPU per query, steady / churn", scenarios.cpu_ratio(
                   results, "churn", "steady"), "below 1: churn costs dockdns per query")]
    where = {label: _where(spent, ctx) for label, spent in (time_spent or {}).items() if spent}
    if {"steady", "churn"} <= set(where):
        figures += _where_figures(where["steady"], where["churn"])
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
                      "created_while_churning": churner.created_while_churning,
                      "engine_cores": [round(c, 2) for c in engine_cores],
                      "where": where, "time_spent": time_spent or {}},
            "figures": figures, "targets": targets, "notes": notes}
    restate(result)
    return result


def _where(spent: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The figures that say where a run's time went, from its ``schedstat.median`` summary:
    cores on a CPU and run delay (ms per second runnable but not running) of dockdns, its event
    loop and dnsperf; the engine's cores; the machine's CPUs (busy, softirq) and what of them
    nothing named here used."""
    processes = spent.get("processes", {})

    def group(name: str, key: str) -> float:
        return float(processes.get(name, {}).get(key, 0.0))

    loop = processes.get("dockdns", {}).get("threads", {}).get("main", {})
    cpus_used = spent.get("cpus", {})
    busy = sum(cpu.get("busy", 0.0) for cpu in cpus_used.values())
    softirq = sum(cpu.get("softirq", 0.0) for cpu in cpus_used.values())
    server_cpus = [str(cpu) for cpu in sorted(ctx.pinning.servers)] if ctx.pinning else []
    engine_cores = sum(group(name, "cpu_cores_with_children") for name in ENGINE_GROUPS)
    named = (group("dockdns", "cores") + group("dnsperf", "cores") + group("harness", "cores")
             + engine_cores + group("kernel threads", "cores"))
    return {
        "dockdns_cores": group("dockdns", "cores"),
        "dockdns_delay_ms_per_s": group("dockdns", "delay_ms_per_s"),
        "loop_cores": float(loop.get("cores", 0.0)),
        "loop_delay_ms_per_s": float(loop.get("delay_ms_per_s", 0.0)),
        "dockdns_voluntary_per_s": group("dockdns", "voluntary_per_s"),
        "dockdns_involuntary_per_s": group("dockdns", "involuntary_per_s"),
        "dnsperf_cores": group("dnsperf", "cores"),
        "dnsperf_delay_ms_per_s": group("dnsperf", "delay_ms_per_s"),
        "harness_cores": group("harness", "cores"),
        "engine_cores": round(engine_cores, 3),
        "engine": {name: group(name, "cpu_cores_with_children") for name in ENGINE_GROUPS},
        "kernel_threads_cores": group("kernel threads", "cores"),
        "cpus": len(cpus_used),
        "busy_cores": round(busy, 3),
        "softirq_cores": round(softirq, 3),
        "server_cpu_busy": (round(sum(cpus_used.get(cpu, {}).get("busy", 0.0)
                                      for cpu in server_cpus) / len(server_cpus), 3)
                            if server_cpus else None),
        # Busy time none of the above accounts for: other processes on the machine (none in a
        # full run of the benchmarks alone), and what the kernel does for them.
        "other_cores": round(max(busy - softirq - named, 0.0), 3),
    }


def _where_figures(steady: dict[str, Any], churned: dict[str, Any]) -> list[dict[str, Any]]:
    def pair(key: str, digits: int = 2) -> str:
        return f"{steady[key]:.{digits}f} → {churned[key]:.{digits}f}"

    engine = churned["engine"]
    return [
        goals.figure("dockdns on a CPU, steady → churn (cores)", pair("dockdns_cores"),
                     f"its event loop: {pair('loop_cores')}"),
        goals.figure("dockdns runnable but not running, steady → churn (ms per s)",
                     pair("dockdns_delay_ms_per_s", 0),
                     f"its event loop: {pair('loop_delay_ms_per_s', 0)}; "
                     "run-queue delay (/proc/PID/task/*/schedstat)"),
        goals.figure("dockdns blocked for want of work, steady → churn (voluntary switches "
                     "per s)", pair("dockdns_voluntary_per_s", 0),
                     f"preempted (involuntary): {pair('dockdns_involuntary_per_s', 0)}"),
        goals.figure("dnsperf on a CPU, steady → churn (cores)", pair("dnsperf_cores"),
                     f"runnable but not running: {pair('dnsperf_delay_ms_per_s', 0)} ms per s"),
        goals.figure("engine CPU during churn (cores)", f"{churned['engine_cores']:.2f}",
                     f"dockerd with iptables {engine['dockerd']:.2f}, containerd "
                     f"{engine['containerd']:.2f}, shims with runc and its hooks "
                     f"{engine['shims']:.2f}; kernel threads "
                     f"{churned['kernel_threads_cores']:.2f}"),
        goals.figure(f"CPUs busy, steady → churn (cores of {churned['cpus']})",
                     pair("busy_cores"),
                     f"softirq and irq {pair('softirq_cores')}; dockdns's CPU "
                     f"{steady['server_cpu_busy']} → {churned['server_cpu_busy']} busy; "
                     f"used by nothing measured here {pair('other_cores')}"),
    ]


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
    where = rates.get("where") or {}
    cheap = churned["cpu_us_per_query"] <= steady["cpu_us_per_query"] * (1 + TOLERANCE)
    if {"steady", "churn"} <= set(where) and _starved(where["steady"], where["churn"]):
        why, closes = _starved_why(rates, cost, cheap, where["steady"], where["churn"])
    elif cheap:
        cores = (f"dockdns used {_cores(churned)} and dnsperf {churned.get('dnsperf_cores')} "
                 f"of a core during churn, against {_cores(steady)} and "
                 f"{steady.get('dnsperf_cores')} steady")
        why = (f"While containers came and went ({rates['starts_per_s']:g} starts and "
               f"{rates['stops_per_s']:g} stops a second), {cost}: the registry changes by "
               "delta and the memo forgets only the touched names, so dockdns's work per query "
               f"barely moved. But {cores}: both were waiting, not working. What they waited "
               "for was not measured in this run; meanwhile the engine's start path runs on "
               f"both CPUs of this machine (the engine {engine_used} of a core, and the "
               "kernel's namespace and veth setup).")
        closes = ("Measure what dockdns and dnsperf wait on during churn (the run delay and "
                  "CPU shares this scenario reports).")
    else:
        why = (f"While containers came and went ({rates['starts_per_s']:g} starts and "
               f"{rates['stops_per_s']:g} stops a second), {cost}: the Docker source's work "
               "per event (inspecting the container, the registry delta, the memo entries it "
               "forgets) competes with the queries on the one event loop.")
        closes = "Less work per engine event: profile the Docker source under churn (py-spy)."
    for target in result["targets"]:
        if target["met"] is False:
            target["why"], target["closes"] = why, closes


def _starved(steady: dict[str, Any], churned: dict[str, Any]) -> bool:
    """Whether the churn runs' figures say the CPUs were taken: nearly every CPU busy, and
    dockdns waiting for one longer than it did steady while running less."""
    full = churned["busy_cores"] >= 0.9 * max(churned["cpus"], 1)
    return bool(full and churned["dockdns_delay_ms_per_s"] > steady["dockdns_delay_ms_per_s"]
                and churned["dockdns_cores"] < steady["dockdns_cores"])


def _starved_why(rates: dict[str, Any], cost: str, cheap: bool, steady: dict[str, Any],
                 churned: dict[str, Any]) -> tuple[str, str]:
    engine = churned["engine"]
    helpers = max(churned["dockdns_cores"] - churned["loop_cores"], 0.0)
    other = (f"; {churned['other_cores']:.2f} of a core went to processes this scenario does "
             "not know (other work on the machine)" if churned["other_cores"] >= 0.1 else "")
    why = (f"While containers came and went ({rates['starts_per_s']:g} starts and "
           f"{rates['stops_per_s']:g} stops a second), {cost}"
           + (": dockdns's work per query barely moved. " if cheap else
              f", preempted {churned['dockdns_involuntary_per_s']:.0f} times a second "
              f"({steady['dockdns_involuntary_per_s']:.0f} steady) on a CPU whose caches it "
              "shared with the engine. ")
           + "The queries it did not answer were lost to the CPU the engine took. During "
           f"churn the machine's {churned['cpus']} CPUs were {churned['busy_cores']:.2f} cores "
           f"busy ({steady['busy_cores']:.2f} steady); the engine used "
           f"{churned['engine_cores']:.2f} of a core (dockerd with its iptables calls "
           f"{engine['dockerd']:.2f}, containerd {engine['containerd']:.2f}, the shims with runc "
           f"and its network hook {engine['shims']:.2f}), kernel threads "
           f"{churned['kernel_threads_cores']:.2f}, softirq and irq "
           f"{churned['softirq_cores']:.2f}{other}. dockdns ran {churned['dockdns_cores']:.2f} "
           f"of a core ({steady['dockdns_cores']:.2f} steady) and was runnable but not running "
           f"{churned['dockdns_delay_ms_per_s']:.0f} ms of every second "
           f"({steady['dockdns_delay_ms_per_s']:.0f} steady; its event loop "
           f"{churned['loop_delay_ms_per_s']:.0f}); it blocked for want of work "
           f"{churned['dockdns_voluntary_per_s']:.0f} times a second "
           f"({steady['dockdns_voluntary_per_s']:.0f} steady): whenever it got a CPU, queries "
           "were waiting. Its other threads (the Docker source's engine calls and event "
           f"stream) ran {helpers:.2f} of a core. dnsperf, on the other CPU with the churn "
           f"threads, ran {churned['dnsperf_cores']:.2f} of a core "
           f"({steady['dnsperf_cores']:.2f} steady), runnable but not running "
           f"{churned['dnsperf_delay_ms_per_s']:.0f} ms a second.")
    closes = ("CPU that the engine does not share with dockdns and dnsperf: on this 2-CPU "
              "machine each container start takes CPU one of them would have used. Priority "
              "only moves the loss: with the harness's scheduler group (autogroup) at nice -10, "
              "measured while this scenario was built, QPS during churn came back to about "
              "0.8 of steady and the engine's starts fell to about 1 a second. A host with "
              "cores for the engine beside dockdns's and dnsperf's (PIN_ENGINE in "
              "benchmarks/churn.py puts the engine on dnsperf's CPU instead).")
    return why, closes
