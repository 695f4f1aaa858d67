"""The C servers dockdns is compared with besides dnsmasq: Knot DNS and NSD (authoritative, from a
zone file) and Unbound (a recursive resolver, one thread, forwarding to loopback only).

Each runs in the foreground on a loopback port with a config file of a few lines written into the
run's work directory (Debian packages knot, nsd, unbound; tests/setup.sh installs them). Nothing is
read from /etc: no server here ever asks anything off the machine.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from benchmarks import servers
from benchmarks.servers import Server

KNOTD = "knotd"
NSD = "nsd"
UNBOUND = "unbound"


def installed(program: str) -> bool:
    return shutil.which(program) is not None or Path(f"/usr/sbin/{program}").exists()


def _program(program: str) -> str:
    return shutil.which(program) or f"/usr/sbin/{program}"


def write_zone(path: Path, origin: str, records: Iterable[tuple[str, str]],
               ttl: int = 600) -> Path:
    """A zone file for ``origin``: SOA and NS (what both Knot and NSD require), then one A
    record per ``(owner, address)``; owners are relative to the origin (``*.miss`` for a
    wildcard)."""
    with path.open("w") as handle:
        handle.write(f"$ORIGIN {origin}.\n$TTL {ttl}\n"
                     f"@ SOA ns hostmaster 1 3600 600 86400 {ttl}\n"
                     "@ NS ns\nns A 127.0.0.1\n")
        for owner, address in records:
            handle.write(f"{owner} A {address}\n")
    return path


def relative(name: str, origin: str) -> str:
    """``host1.bench.test`` under ``bench.test`` -> ``host1``."""
    suffix = "." + origin
    if not name.endswith(suffix):
        raise ValueError(f"{name} is not under {origin}")
    return name[: -len(suffix)]


@contextlib.contextmanager
def knot(name: str, host: str, port: int, zones: dict[str, Path], probe: str,
         log_dir: Path) -> Iterator[Server]:
    """``knotd -c FILE`` serving ``zones`` (origin -> zone file), one UDP and one TCP worker:
    the same one thread of answering as every other server measured."""
    rundir = log_dir / f"knot-{port}"
    rundir.mkdir(parents=True, exist_ok=True)
    zone_lines = "".join(f"  - domain: {origin}\n    file: {path}\n    storage: {rundir}\n"
                         for origin, path in zones.items())
    config = rundir / "knot.conf"
    config.write_text(
        "server:\n"
        f"    listen: {host}@{port}\n"
        f"    rundir: {rundir}\n"
        "    udp-workers: 1\n"
        "    tcp-workers: 1\n"
        "    background-workers: 1\n"
        "database:\n"
        f"    storage: {rundir}\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: warning\n"
        "template:\n"
        "  - id: default\n"
        # Never write the zone back into the run's files, nor keep a journal of it.
        "    zonefile-sync: -1\n"
        "    journal-content: none\n"
        "zone:\n" + zone_lines)
    with servers.managed(name, [_program(KNOTD), "-c", str(config)], host, port, probe,
                         log_dir) as (_, server):
        yield server


@contextlib.contextmanager
def nsd(name: str, host: str, port: int, zones: dict[str, Path], probe: str,
        log_dir: Path) -> Iterator[Server]:
    """``nsd -d -c FILE`` serving ``zones``, one server process (NSD forks it from its main
    process and an xfrd; the server process answers, and all three are accounted)."""
    rundir = log_dir / f"nsd-{port}"
    rundir.mkdir(parents=True, exist_ok=True)
    zone_lines = "".join(f"zone:\n  name: {origin}\n  zonefile: \"{path}\"\n"
                         for origin, path in zones.items())
    config = rundir / "nsd.conf"
    config.write_text(
        "server:\n"
        f"  ip-address: {host}@{port}\n"
        "  server-count: 1\n"
        "  do-ip6: no\n"
        '  username: ""\n'
        '  chroot: ""\n'
        f'  zonesdir: "{rundir}"\n'
        '  database: ""\n'
        f'  zonelistfile: "{rundir}/zone.list"\n'
        f'  xfrdfile: "{rundir}/xfrd.state"\n'
        f'  pidfile: "{rundir}/nsd.pid"\n'
        "  verbosity: 0\n"
        "remote-control:\n"
        "  control-enable: no\n" + zone_lines)
    with servers.managed(name, [_program(NSD), "-d", "-c", str(config)], host, port, probe,
                         log_dir) as (process, server):
        server.pids = [process.pid, *servers.children(process.pid)]
        yield server


@contextlib.contextmanager
def authoritative(name: str, host: str, port: int, zones: dict[str, Path], probe: str,
                  log_dir: Path) -> Iterator[Server]:
    """Knot when it is installed, else NSD: the authoritative server of a scenario that needs
    one (``server.name`` says which it was)."""
    if installed(KNOTD):
        with knot(name, host, port, zones, probe, log_dir) as server:
            server.name = "knot"
            yield server
    elif installed(NSD):
        with nsd(name, host, port, zones, probe, log_dir) as server:
            server.name = "nsd"
            yield server
    else:
        raise servers.ServerError("neither knotd nor nsd is installed (Debian packages knot, "
                                  "nsd; tests/setup.sh installs them)")


def local_data(records: Iterable[tuple[str, str]], ttl: int = 600) -> list[str]:
    """Unbound ``server:`` lines giving each ``(name, address)`` an A record."""
    return [f'local-data: "{name}. {ttl} IN A {address}"' for name, address in records]


@contextlib.contextmanager
def unbound(name: str, host: str, port: int, forward_to: tuple[str, int], lines: list[str],
            probe: str, log_dir: Path) -> Iterator[Server]:
    """``unbound -d -c FILE`` with one thread, the iterator only (no validator: no trust anchor
    to fetch), and every name it does not hold forwarded to ``forward_to`` on loopback (so that
    nothing it is asked ever goes to the root servers). ``lines`` are more ``server:`` lines."""
    rundir = log_dir / f"unbound-{port}"
    rundir.mkdir(parents=True, exist_ok=True)
    upstream_host, upstream_port = forward_to
    server_lines = [
        f"interface: {host}@{port}",
        f"port: {port}",
        "num-threads: 1",
        "do-daemonize: no",
        'username: ""',
        'chroot: ""',
        f'directory: "{rundir}"',
        'pidfile: ""',
        "use-syslog: no",
        'logfile: ""',
        "verbosity: 0",
        "do-ip6: no",
        'module-config: "iterator"',
        # Its forwarders are on loopback, which Unbound will not ask by default.
        "do-not-query-localhost: no",
        "access-control: 127.0.0.0/8 allow",
        # The workloads live under .test, one of Unbound's default local zones (RFC 6761,
        # answered NXDOMAIN): let local-data and the forward zone have it instead.
        'local-zone: "test." nodefault',
        *lines,
    ]
    config = rundir / "unbound.conf"
    config.write_text("server:\n" + "".join(f"  {line}\n" for line in server_lines)
                      + f'forward-zone:\n  name: "."\n'
                        f"  forward-addr: {upstream_host}@{upstream_port}\n")
    with servers.managed(name, [_program(UNBOUND), "-d", "-c", str(config)], host, port, probe,
                         log_dir) as (_, server):
        yield server
