"""Where the Swarm scale-up lag comes from: one ``docker service scale`` of one more replica,
traced (issue 16, "Swarm by change").

In this process: the engine's event stream read directly (each event's ``timeNano`` and when it
arrived here), a ``SwarmSource`` with a registry of its own whose blocking reads are timed
(``read_services``, ``read_health``, ...), when each event reached the source's loop, and when the
registry first held the new task under ``tasks.NAME``. In the client container's network
namespace: when Docker's resolver (127.0.0.11) first answered the new count. Every time is
printed in ms after `docker service scale --detach` returned (wall clock, one machine).

Everything made here is named ``swarmlag-trace-*`` and removed at the end. Standalone:
``flock /tmp/dockdns-measure.lock python3 -m benchmarks.swarm_trace [RUNS]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.types

from benchmarks import engine
from discovery.registry.registry import Registry
from discovery.swarm import source as swarm_source
from discovery.swarm.source import SwarmSource

PREFIX = "swarmlag-trace-"
NETWORK = f"{PREFIX}net"
SERVICE = f"{PREFIX}svc"
CLIENT = f"{PREFIX}client"
SUBNET = "10.249.64.0/23"

# Docker's resolver only, from the client's namespace: when it first gave ``want`` addresses.
POLLER = r"""
import random, socket, struct, sys, time
name, want, deadline = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.2)
print("ready", flush=True)
while time.time() < deadline:
    qid = random.randrange(65536)
    try:
        sock.sendto(struct.pack(">HHHHHH", qid, 0x100, 1, 0, 0, 0) + wire
                    + struct.pack(">HH", 1, 1), ("127.0.0.11", 53))
        reply = sock.recv(4096)
    except OSError:
        continue
    if reply[:2] == struct.pack(">H", qid) and struct.unpack(">H", reply[6:8])[0] >= want:
        print(time.time(), flush=True)
        break
    time.sleep(0.0005)
"""


class Trace:
    def __init__(self) -> None:
        self.marks: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def mark(self, what: str, at: float | None = None) -> None:
        with self.lock:
            self.marks.append((time.time() if at is None else at, what))


def _timed(trace: Trace, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.time()
        try:
            return call(*args, **kwargs)
        finally:
            trace.mark(f"call {name} {1000 * (time.time() - began):.1f} ms", began)
    return wrapper


def _events(trace: Trace, stop: threading.Event) -> None:
    client = docker.from_env(timeout=None)
    stream = client.api.events(decode=True, filters={"type": ["service", "container",
                                                              "network"]})
    for event in stream:
        if stop.is_set():
            break
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        name = attributes.get("name") or attributes.get("com.docker.swarm.task.name") or ""
        if not str(name).startswith(PREFIX):
            continue
        trace.mark(f"engine {event.get('Type')} {event.get('Action')} (stamped)",
                   int(event["timeNano"]) / 1e9)
        trace.mark(f"engine {event.get('Type')} {event.get('Action')} (arrived)")


def _task_count(registry: Registry, source: str, name: str) -> int:
    part = registry.part(source)
    for record in part.records if part is not None else ():
        if f"tasks.{name}" in record.names:
            return len(record.ipv4)
    return 0


async def _run(runs: int, client: Any, container: Any) -> list[dict[str, Any]]:
    trace = Trace()
    for name in ("read_services", "read_health", "read_all", "read_clients"):
        setattr(swarm_source, name, _timed(trace, name, getattr(swarm_source, name)))
    registry = Registry()
    source = SwarmSource(registry, ["unix:///var/run/docker.sock"], 2.0, local=True)
    deliver = source._deliver

    def delivered(event: Any) -> None:
        if event is not None:
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            name = attributes.get("name") or attributes.get("com.docker.swarm.task.name") or ""
            if str(name).startswith(PREFIX):
                trace.mark(f"source got {event.get('Type')} {event.get('Action')}")
        deliver(event)

    source._deliver = delivered  # type: ignore[method-assign]
    counts = {"n": 0}

    def watched(snapshot: Any, touched: Any) -> None:
        n = _task_count(registry, source.name, SERVICE)
        if n != counts["n"]:
            counts["n"] = n
            trace.mark(f"registry tasks.{SERVICE} = {n}")

    registry.watch(watched)
    task = asyncio.create_task(source.run())
    stop = threading.Event()
    threading.Thread(target=_events, args=(trace, stop), daemon=True).start()
    results = []
    try:
        await asyncio.sleep(3)
        for run in range(runs):
            replicas = run + 2
            with trace.lock:
                trace.marks.clear()
            poller = subprocess.Popen(
                ["nsenter", "-t", str(container.attrs["State"]["Pid"]), "-n", "--",
                 sys.executable, "-c", POLLER, f"tasks.{SERVICE}", str(replicas),
                 str(time.time() + 30)], stdout=subprocess.PIPE, text=True)
            assert poller.stdout is not None
            await asyncio.to_thread(poller.stdout.readline)
            proc = await asyncio.create_subprocess_exec(
                "docker", "service", "scale", "--detach", f"{SERVICE}={replicas}",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await proc.wait()
            returned = time.time()
            line = (await asyncio.to_thread(poller.communicate))[0].strip()
            if line:
                trace.mark("docker resolver answers", float(line))
            deadline = time.monotonic() + 10
            while counts["n"] < replicas and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            with trace.lock:
                marks = sorted(trace.marks)
            print(f"--- run {run + 1}: {replicas} replicas")
            for at, what in marks:
                print(f"{1000 * (at - returned):9.1f}  {what}")
            results.append({what: round(1000 * (at - returned), 1) for at, what in marks
                            if not what.startswith("call")})
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    return results


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    client = engine.client()
    engine.ensure_image(client)
    image = client.images.get(engine.IMAGE).id
    _cleanup(client)
    network = client.api.create_network(
        NETWORK, driver="overlay", attachable=True,
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]))
    try:
        spec = docker.types.ContainerSpec(image, command=["sleep", engine.LIFETIME],
                                          stop_grace_period=1_000_000_000)
        client.api.create_service(
            docker.types.TaskTemplate(spec, networks=[
                docker.types.NetworkAttachmentConfig(network["Id"])]),
            name=SERVICE, mode=docker.types.ServiceMode("replicated", replicas=1))
        container = client.containers.run(engine.IMAGE, ["sleep", engine.LIFETIME], name=CLIENT,
                                          network=NETWORK, detach=True)
        container.reload()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                (t.get("Status") or {}).get("State") == "running"
                for t in client.api.tasks(filters={"service": SERVICE})):
            time.sleep(0.5)
        results = asyncio.run(_run(runs, client, container))
        keys = ["docker resolver answers", f"registry tasks.{SERVICE} = {{n}}"]
        lags = []
        for run, marks in enumerate(results):
            registry = marks.get(keys[1].format(n=run + 2))
            docker_at = marks.get(keys[0])
            if registry is not None and docker_at is not None:
                lags.append(registry - docker_at)
        print(json.dumps({"registry_after_docker_ms": [round(x, 1) for x in lags],
                          "median": round(statistics.median(lags), 1) if lags else None}))
    finally:
        _cleanup(client)
    return 0


def _cleanup(client: Any) -> None:
    import docker.errors as errors

    with contextlib.suppress(errors.NotFound, errors.APIError):
        client.api.remove_service(SERVICE)
    with contextlib.suppress(errors.NotFound):
        client.api.remove_container(CLIENT, force=True)
    for _ in range(60):
        if not client.api.containers(all=True, filters={
                "label": f"com.docker.swarm.service.name={SERVICE}"}):
            break
        time.sleep(0.5)
    for _ in range(40):
        try:
            client.api.remove_network(NETWORK)
            return
        except errors.NotFound:
            return
        except errors.APIError:
            time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
