"""A real Docker engine for the tests, and what they build on it.

* ``require_engine()``: a client for a running engine. When ``docker info`` fails, Debian's
  ``dockerd`` is started in the background (and left running for the next tests: the engine is
  shared, nothing here ever stops it). Without an engine a test skips, except with CI=true where
  it fails.
* ``ensure_image()``: the local test image ``dockdns-test:busybox``, made with an import of a
  busybox-static root filesystem. Nothing is ever pulled.
* ``Lab``: the networks and containers one test creates, all named with the test's prefix (e.g.
  ``dd-``) and labelled with the creating process, so that cleanup removes exactly what this
  process made. Several test runs share one engine at once: never remove anything else.
* ``Lab.ask`` / ``Lab.ask_docker``: DNS questions asked from inside a container's network
  namespace (``nsenter -t PID -n``), so that a server sees the container's own address as the
  source. ``ask_docker`` asks Docker's embedded DNS (127.0.0.11) and refuses any name the lab did
  not create, because Docker forwards unknown names off this machine.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.reversename
import docker
import docker.errors
import pytest

from benchmarks.engine import alive as _owner_alive  # the benchmarks label by process too
from discovery.docker.engine_socket import DEFAULT_ENGINE, check_unix_socket

IN_CI = os.environ.get("CI", "").lower() == "true"
IMAGE = "dockdns-test:busybox"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# Applets linked in the image. Health checks should use shell builtins (test, echo) so that they
# also work with an image some older harness built with fewer links.
APPLETS = ("sh", "sleep", "ip", "nslookup", "cat", "hostname", "true", "false", "test", "touch",
           "rm", "ls", "echo", "ps", "kill", "nc", "env", "ifconfig")
# Every object the harness creates carries this label: "<host>:<pid>" of the creating process.
OWNER_LABEL = "dockdns.test.owner"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
DOCKERD_LOG = Path("/tmp/dockdns-test-dockerd.log")
# How long a freshly started dockerd may take to answer (first start initializes its data root).
ENGINE_START_SECONDS = 60.0
NSQUERY = Path(__file__).with_name("nsquery.py")
DOCKER_DNS = "127.0.0.11"


class EngineUnavailable(Exception):
    """No Docker engine could be reached or started; the message says why."""


def _ping(client: docker.DockerClient) -> bool:
    """Whether the engine answers its API. (Callers have checked its socket before making
    ``client``: the SDK connects as a client is made, and leaks the socket when refused.)"""
    try:
        return bool(client.ping())
    except Exception:
        return False


def _shared_url() -> str:
    return os.environ.get("DOCKER_HOST", DEFAULT_ENGINE)


def _start_dockerd() -> None:
    """Start Debian's dockerd in the background, detached from the test process."""
    if shutil.which("dockerd") is None:
        raise EngineUnavailable("no engine answers and dockerd is not installed (docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no engine answers and starting dockerd needs root")
    with DOCKERD_LOG.open("ab") as log:
        _started_engines.append(subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True))


# The dockerd started here outlives the test session on purpose (the next run reuses it); holding
# the handle keeps Popen from warning, mid-suite, that it was dropped while still running.
_started_engines: list[subprocess.Popen[bytes]] = []


_client: docker.DockerClient | None = None
_failure: str | None = None


def _socket_answers(url: str) -> bool:
    try:
        check_unix_socket(url, 10)
    except OSError:
        return False
    return True


def engine_client() -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (default socket), starting dockerd if needed."""
    global _client, _failure
    if _client is not None:
        return _client
    if _failure is not None:
        raise EngineUnavailable(_failure)
    url = _shared_url()
    try:
        # The socket first: the SDK asks the engine for its API version as the client is made.
        if not _socket_answers(url):
            if os.environ.get("DOCKER_HOST"):
                raise EngineUnavailable(f"the engine at {url} does not answer")
            _start_dockerd()
            deadline = time.monotonic() + ENGINE_START_SECONDS
            while not _socket_answers(url):
                if time.monotonic() > deadline:
                    raise EngineUnavailable(f"dockerd did not come up within "
                                            f"{ENGINE_START_SECONDS:.0f} s (see {DOCKERD_LOG})")
                time.sleep(0.5)
        client = docker.from_env(timeout=60)
        if not _ping(client):
            client.close()
            raise EngineUnavailable(f"the engine at {url} does not answer its API")
    except EngineUnavailable as err:
        _failure = str(err)
        raise
    except docker.errors.DockerException as err:
        _failure = f"no Docker engine: {err}"
        raise EngineUnavailable(_failure) from None
    _client = client
    return client


def require_engine() -> docker.DockerClient:
    """The engine client; skip the test without one, or fail it when CI=true."""
    try:
        return engine_client()
    except EngineUnavailable as err:
        if IN_CI:
            pytest.fail(f"Docker engine required in CI: {err}", pytrace=False)
        pytest.skip(f"no Docker engine: {err}")


def _rootfs_tar() -> bytes:
    if not BUSYBOX.exists():
        raise EngineUnavailable(f"{BUSYBOX} is missing (Debian package busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def ensure_image(client: docker.DockerClient) -> str:
    """The test image, imported from the local busybox-static when the engine lacks it."""
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        repository, tag = IMAGE.split(":")
        client.api.import_image_from_data(_rootfs_tar(), repository=repository, tag=tag)
        client.images.get(IMAGE)
    return IMAGE


def sweep_stale(client: docker.DockerClient, prefix: str) -> None:
    """Remove what earlier, dead test processes left under ``prefix`` (a crash, a kill -9)."""
    # The plain listing, not ``containers.list``: that inspects each container it lists, and a
    # container another test run removes in between (a burst test removes hundreds at once)
    # would fail this lab's setup with "No such container".
    for summary in client.api.containers(all=True, filters={"label": OWNER_LABEL}):
        name = str((summary.get("Names") or [""])[0]).lstrip("/")
        owner = (summary.get("Labels") or {}).get(OWNER_LABEL, "")
        if name.startswith(prefix) and not _owner_alive(owner):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_container(summary["Id"], force=True)
    for network in client.networks.list(filters={"label": OWNER_LABEL}):
        owner = (network.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        if network.name.startswith(prefix) and not _owner_alive(owner):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()


def used_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network |
                                                       ipaddress.IPv6Network]:
    subnets = []
    for network in client.api.networks():
        for config in (network.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(KeyError, ValueError):
                subnets.append(ipaddress.ip_network(config["Subnet"], strict=False))
    return subnets


def free_subnet(client: docker.DockerClient, pool: str, prefixlen: int,
                others: Iterable[docker.DockerClient] = ()) -> str:
    """The first subnet of ``pool`` that no network on the engine (or ``others``) overlaps."""
    used = used_subnets(client)
    for other in others:
        used += used_subnets(other)
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefixlen):
        if not any(candidate.version == u.version and candidate.overlaps(u) for u in used):
            return str(candidate)
    raise RuntimeError(f"no free /{prefixlen} left in {pool}")


@dataclass
class Net:
    name: str
    id: str
    subnet: str
    gateway: str
    subnet6: str | None = None
    internal: bool = False


@dataclass
class Box:
    """A container the lab started."""

    name: str
    id: str
    client: docker.DockerClient

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def inspect(self) -> dict[str, Any]:
        data: dict[str, Any] = self.client.api.inspect_container(self.id)
        return data

    @property
    def pid(self) -> int:
        return int(self.inspect()["State"]["Pid"])

    def ip(self, network: str) -> str:
        return str(self.inspect()["NetworkSettings"]["Networks"][network]["IPAddress"])

    def running_ip(self, network: str) -> str | None:
        """The address on ``network`` while the container runs; None while it does not."""
        data = self.inspect()
        if not data["State"]["Running"]:
            return None
        return str(data["NetworkSettings"]["Networks"][network]["IPAddress"]) or None

    def ip6(self, network: str) -> str:
        return str(self.inspect()["NetworkSettings"]["Networks"][network]["GlobalIPv6Address"])

    def exec(self, *argv: str) -> str:
        result = self.client.api.exec_create(self.id, list(argv))
        output: bytes = self.client.api.exec_start(result["Id"])
        return output.decode(errors="replace")


@dataclass
class Question:
    name: str
    rdtype: str = "A"
    tcp: bool = False


@dataclass
class Lab:
    """Networks and containers made by one test; ``cleanup`` removes exactly those."""

    client: docker.DockerClient
    prefix: str  # e.g. "dd-": every name starts with it
    pool: str = "10.250.0.0/16"  # IPv4 subnets (/24) are taken from here
    pool6: str = "fd00:250::/48"  # IPv6 subnets (/64) are taken from here
    # Other engines on this host whose subnets must be avoided too (their bridges share routes).
    others: tuple[docker.DockerClient, ...] = ()
    networks: dict[str, Net] = field(default_factory=dict)
    boxes: dict[str, Box] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ensure_image(self.client)
        sweep_stale(self.client, self.prefix)

    def _named(self, name: str) -> str:
        if not name.startswith(self.prefix):
            raise ValueError(f"{name!r}: lab names must start with {self.prefix!r}")
        return name

    def network(self, name: str, *, ipv6: bool = False, internal: bool = False,
                driver: str = "bridge", options: dict[str, str] | None = None,
                attachable: bool = False) -> Net:
        """A network with a fresh /24 of the lab's pool; its gateway is the subnet's first IP."""
        self._named(name)
        for _ in range(20):
            subnet = free_subnet(self.client, self.pool, 24, self.others)
            gateway = str(next(ipaddress.ip_network(subnet).hosts()))
            pools = [docker.types.IPAMPool(subnet=subnet, gateway=gateway)]
            subnet6 = None
            if ipv6:
                subnet6 = free_subnet(self.client, self.pool6, 64, self.others)
                pools.append(docker.types.IPAMPool(
                    subnet=subnet6, gateway=str(next(ipaddress.ip_network(subnet6).hosts()))))
            try:
                created = self.client.networks.create(
                    name, driver=driver, ipam=docker.types.IPAMConfig(pool_configs=pools),
                    internal=internal, enable_ipv6=ipv6, options=options or {},
                    labels={OWNER_LABEL: OWNER}, check_duplicate=True,
                    attachable=attachable or None)
            except docker.errors.APIError as err:
                if "overlap" in str(err).lower():
                    continue  # another test run took the same subnet a moment ago
                raise
            net = Net(name, created.id, subnet, gateway, subnet6, internal)
            self.networks[name] = net
            return net
        raise RuntimeError(f"could not find a free subnet for {name}")

    def container(self, name: str, network: str | None, *, aliases: Sequence[str] = (),
                  hostname: str | None = None, labels: dict[str, str] | None = None,
                  command: Sequence[str] = ("sleep", "3600"), ports: Sequence[Any] = (),
                  healthcheck: dict[str, Any] | None = None, restart: str | None = None,
                  start: bool = True, image: str = IMAGE,
                  environment: Sequence[str] = (), domainname: str | None = None,
                  extra_hosts: dict[str, str] | None = None,
                  links: dict[str, str] | None = None) -> Box:
        """Create (and start) a container on ``network`` (None: Docker's default bridge)."""
        self._named(name)
        for alias in aliases:
            self._named(alias)
        if hostname:
            self._named(hostname)
        api = self.client.api
        host_config = api.create_host_config(
            network_mode=network or "bridge",
            restart_policy={"Name": restart} if restart else None,
            extra_hosts=extra_hosts or None, links=links or None)
        networking = None
        if network is not None:
            networking = api.create_networking_config(
                {network: api.create_endpoint_config(aliases=list(aliases) or None)})
        created = api.create_container(
            image, list(command), name=name, hostname=hostname, domainname=domainname,
            environment=list(environment) or None, host_config=host_config,
            networking_config=networking, labels={**(labels or {}), OWNER_LABEL: OWNER},
            ports=list(ports) or None, healthcheck=healthcheck)
        box = Box(name, created["Id"], self.client)
        self.boxes[name] = box
        if start:
            api.start(box.id)
        return box

    def connect(self, box: Box, network: str, aliases: Sequence[str] = ()) -> None:
        for alias in aliases:
            self._named(alias)
        self.client.api.connect_container_to_network(box.id, network,
                                                     aliases=list(aliases) or None)

    def remove(self, box: Box) -> None:
        self.client.api.remove_container(box.id, force=True)
        self.boxes.pop(box.name, None)

    def cleanup(self) -> None:
        for box in list(self.boxes.values()):
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(box.id, force=True)
        self.boxes.clear()
        for net in list(self.networks.values()):
            self._remove_network(net.id)
        self.networks.clear()

    def _remove_network(self, network_id: str) -> None:
        """Remove a lab network. The engine releases a removed container's endpoint a moment
        after the container is gone, and a test may have made containers it did not register:
        remove the lab's containers still attached and retry, for a bounded time."""
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.api.remove_network(network_id)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as err:
                if "active endpoints" not in str(err):
                    raise
            try:
                attached = self.client.api.inspect_network(network_id).get("Containers") or {}
            except docker.errors.NotFound:
                return
            if not attached and time.monotonic() > deadline:
                # Docker 20.10 can keep an endpoint of a container removed in a burst of
                # concurrent removals ("key modified" in its log) until the engine restarts. No
                # container of ours is left: the network is left for sweep_stale of a later run
                # (lab network names are unique per run, so it is in nobody's way).
                print(f"engine: network {network_id[:12]} kept by a stale endpoint in the engine",
                      file=sys.stderr)
                return
            for container_id, endpoint in attached.items():
                if str(endpoint.get("Name", "")).startswith(self.prefix):
                    with contextlib.suppress(docker.errors.NotFound):
                        self.client.api.remove_container(container_id, force=True)
            time.sleep(0.25)

    # --- questions from inside a container --------------------------------------------------

    def _visible(self, box: Box) -> tuple[dict[str, set[str]], set[str]]:
        """What Docker's resolver in ``box`` knows, read from the engine: the names on each of
        its user-defined networks (container names and endpoint aliases, which hold the short ID
        and hostname) and the addresses there, limited to the lab's own containers."""
        attached = set(box.inspect()["NetworkSettings"]["Networks"]) & set(self.networks)
        names: dict[str, set[str]] = {network: set() for network in attached}
        addresses: set[str] = set()
        for other in self.boxes.values():
            try:
                data = other.inspect()
            except docker.errors.NotFound:
                continue
            if not data["State"]["Running"]:
                continue
            for network, endpoint in data["NetworkSettings"]["Networks"].items():
                if network not in attached or not endpoint.get("IPAddress"):
                    continue
                names[network].add(data["Name"].lstrip("/").lower())
                names[network].update(a.lower() for a in endpoint.get("Aliases") or ())
                addresses.update(a for a in (endpoint.get("IPAddress"),
                                             endpoint.get("GlobalIPv6Address")) if a)
        return names, addresses

    def knows(self, box: Box, name: str) -> bool:
        """Whether Docker's resolver in ``box`` answers ``name`` itself: a lab name on one of the
        box's networks, as ``n`` or ``n.network`` (Docker's split rule), or the reverse name of
        a lab address on one of them. Anything else Docker would forward off the machine.
        As in Docker, the name is matched in any case but the network name only exactly."""
        names, addresses = self._visible(box)
        name = name.rstrip(".")
        if name.lower().endswith((".in-addr.arpa", ".ip6.arpa")):
            address = dns.reversename.to_address(dns.name.from_text(name.lower()))
            return address in addresses
        labels = name.split(".")
        for cut in range(len(labels), 0, -1):
            head, tail = ".".join(labels[:cut]).lower(), ".".join(labels[cut:])
            if tail and head in names.get(tail, ()):
                return True
            if not tail and any(head in on_network for on_network in names.values()):
                return True
        return False

    def ask(self, box: Box, server: str, questions: Iterable[Question], port: int = 53,
            timeout: float = 3.0) -> list[dns.message.Message | None]:
        """Ask ``server`` from ``box``'s network namespace; None for a question not answered."""
        batch = [{"server": server, "port": port, "name": q.name, "type": q.rdtype,
                  "tcp": q.tcp, "timeout": timeout} for q in questions]
        done = subprocess.run(
            ["nsenter", "-t", str(box.pid), "-n", sys.executable, str(NSQUERY)],
            input=json.dumps(batch), capture_output=True, text=True, check=False,
            timeout=30 + timeout * len(batch))
        if done.returncode != 0:
            raise RuntimeError(f"query from {box.name} failed: {done.stderr.strip()}")
        return [dns.message.from_wire(bytes.fromhex(wire)) if wire else None
                for wire in json.loads(done.stdout)]

    def ask_docker(self, box: Box, questions: Iterable[Question]) -> list[dns.message.Message |
                                                                         None]:
        """Ask Docker's embedded DNS, only names it answers itself (it forwards the rest)."""
        questions = list(questions)
        for question in questions:
            if not self.knows(box, question.name):
                raise ValueError(f"refusing to ask Docker's resolver for {question.name!r}: "
                                 "not a lab name, it would be forwarded off this machine")
        return self.ask(box, DOCKER_DNS, questions)


@contextlib.contextmanager
def lab(prefix: str, pool: str = "10.250.0.0/16",
        pool6: str = "fd00:250::/48") -> Iterator[Lab]:
    """A ``Lab`` on the shared engine, cleaned up however the test ends."""
    made = Lab(require_engine(), prefix, pool, pool6)
    try:
        yield made
    finally:
        made.cleanup()


def engine_socket() -> str:
    """The engine's unix socket path, for a relay or proxy in front of it; the test skips when
    the engine is reached otherwise (DOCKER_HOST over TCP)."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        pytest.skip(f"the engine is not behind a unix socket ({host})")
    return host.removeprefix("unix://") or "/var/run/docker.sock"


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail (not time-assert) after a
    generous bound so a broken build does not hang the suite."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} did not happen within {timeout:.0f} s")
        time.sleep(interval)


@dataclass
class PrivateEngine:
    """A second dockerd of the test's own, beside the shared one: its own data root, exec root,
    pidfile, socket, containerd and containerd namespaces, its own default-bridge interface and
    no iptables, so it touches nothing the shared engine owns. The test may stop, kill and
    restart it at will.

    Not ``--bridge=none``: a dockerd started so deletes the host's ``docker0`` interface
    (libnetwork's removeDefaultBridgeInterface), pulling it from under the shared engine. The
    bridge here is made by the test, with an address of the test's (``bridge_address``).

    Its containerd is started here rather than by dockerd: a containerd that dockerd started dies
    with a killed dockerd and stays a zombie where PID 1 does not reap (as on these machines),
    and the next dockerd then waits for it forever. Started here, it is this process's child,
    outlives a killed dockerd (as containerd does in a real crash), and the restarted dockerd
    finds its containers again."""

    root: Path
    namespace: str
    bridge: str  # the interface of its default bridge network, made by the test
    bridge_address: str  # e.g. 10.250.255.1/24
    process: subprocess.Popen[bytes] | None = None
    containerd: subprocess.Popen[bytes] | None = None

    def make_bridge(self) -> None:
        for argv in (["ip", "link", "add", self.bridge, "type", "bridge"],
                     ["ip", "addr", "add", self.bridge_address, "dev", self.bridge],
                     ["ip", "link", "set", self.bridge, "up"]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise EngineUnavailable(f"{' '.join(argv)}: {done.stderr.strip()}")

    def remove_bridge(self) -> None:
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    def start_containerd(self) -> None:
        config = self.root / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.root}/containerd/root"\n'
            f'state = "{self.root}/containerd/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.containerd_socket}"\n'
            '[debug]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.root}/containerd/opt"\n')
        with (self.root / "containerd.log").open("ab") as log:
            self.containerd = subprocess.Popen(
                ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not self.containerd_socket.exists():
            if self.containerd.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "containerd.log").read_text(errors="replace")[-1500:]
                raise EngineUnavailable(f"private containerd did not come up:\n{tail}")
            time.sleep(0.1)

    def stop_containerd(self) -> None:
        if self.containerd is not None and self.containerd.poll() is None:
            self.containerd.terminate()
            try:
                self.containerd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.containerd.kill()
                self.containerd.wait()

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def argv(self) -> list[str]:
        return ["dockerd", "--config-file", str(self.root / "daemon.json"),
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "-H", self.url,
                "--bridge", self.bridge, "--iptables=false", "--ip-masq=false",
                "--containerd", str(self.containerd_socket),
                "--containerd-namespace", self.namespace,
                "--containerd-plugins-namespace", f"{self.namespace}-plugins",
                "--shutdown-timeout", "1"]

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=60)

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with (self.root / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + ENGINE_START_SECONDS
        while not self.socket_path.exists() or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-1500:]
                raise EngineUnavailable(f"private dockerd did not come up:\n{tail}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        # The SDK leaks its socket when a connect is refused (a killed dockerd leaves its
        # socket file behind), and it connects as a client is made (to ask the API version):
        # find that out first with a socket closed here.
        if not _socket_answers(self.url):
            return False
        try:
            client = self.client()
        except docker.errors.DockerException:
            return False
        try:
            return _ping(client)
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        """Stop dockerd: SIGTERM (it stops its containers first) or SIGKILL (a crash: the
        containers keep running under their shims until dockerd is back)."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=60)


@contextlib.contextmanager
def private_engine(tag: str, bridge_address: str) -> Iterator[PrivateEngine]:
    """A private dockerd for this test (skip without dockerd; fail with CI=true); its default
    bridge gets ``bridge_address`` (ADDRESS/PREFIX, a subnet of the test's own range)."""
    if shutil.which("dockerd") is None or shutil.which("containerd") is None or os.geteuid():
        reason = "a private engine needs dockerd, containerd and root"
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))
    (root / "daemon.json").write_text("{}")
    # containerd allows only letters and digits between single separators in a namespace;
    # mkdtemp's random part may hold "_", even at the end.
    namespace = "dockdns-" + "".join(c for c in root.name if c.isascii() and c.isalnum())
    engine = PrivateEngine(root, namespace=namespace,
                           bridge=f"{tag[:6]}{os.getpid() % 100000}", bridge_address=bridge_address)
    try:
        try:
            engine.make_bridge()
            engine.start_containerd()
            engine.start()
        except EngineUnavailable as err:
            if IN_CI:
                pytest.fail(str(err), pytrace=False)
            pytest.skip(str(err))
        with contextlib.closing(engine.client()) as client:
            ensure_image(client)
        yield engine
    finally:
        # Back up if the test left it stopped: its networks (host bridges) go through its API.
        with contextlib.suppress(EngineUnavailable):
            if engine.containerd is not None and engine.containerd.poll() is None:
                engine.start()
        if engine.process is not None and engine.process.poll() is None:
            with contextlib.suppress(Exception), contextlib.closing(engine.client()) as client:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                for network in client.networks.list():
                    if network.name not in ("host", "none", "bridge"):
                        network.remove()
        engine.stop()
        engine.stop_containerd()
        engine.remove_bridge()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """Unmount what a killed dockerd left mounted under ``root`` (it mounts its data root on
    itself), deepest first, so that the directory can go."""
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    inside = [p for p in points if p == str(root) or p.startswith(f"{root}/")]
    for point in sorted(set(inside), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
