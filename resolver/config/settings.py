"""One configuration, validated once at start, from four layers: defaults < TOML file <
environment (``DOCKDNS_<KEY>``) < command-line flags.

Every setting is declared once in ``SETTINGS``; the flags, the environment names and the TOML keys
all come from that table. A bad value anywhere raises ``ConfigError`` naming the setting, which the
CLI prints as one line before exiting with status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import pwd
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from discovery.docker.conventions import COMPAT_ALL
from discovery.registry.model import IPNetwork
from discovery.static.records import StaticRecord
from discovery.static.records import parse as parse_record
from resolver.dns.addresses import HostPort, parse_hostport, parse_upstream
from resolver.forward.settings import ForwardZone, parse_forward_zone
from resolver.serve.settings import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_UDP_BUFFER,
    parse_buffer_size,
)

ENV_PREFIX = "DOCKDNS_"


class ConfigError(Exception):
    """A setting has a value dockdns cannot use."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid setting '{setting}': {problem}")
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.11", 53),)
    hosts_files: tuple[str, ...] = ()
    upstreams: tuple[HostPort, ...] = ()
    docker: bool = True
    docker_hosts: tuple[str, ...] = ()
    default_bridge_names: bool = False
    include_unhealthy: bool = False
    ttl: int = 600
    domain: str | None = None
    metrics: bool = True
    metrics_listen: HostPort = HostPort("127.0.0.1", 9153)
    log_level: str = "info"
    log_format: str = "text"
    log_queries: bool = False
    user: str | None = None
    as_container: str | None = None
    allow: tuple[IPNetwork, ...] = ()
    # Bounds (why these numbers: resolver/serve/settings.py).
    tcp_max: int = DEFAULT_MAX_CONNECTIONS
    tcp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    # Each UDP listening socket's buffers (why this size: resolver/serve/settings.py).
    udp_buffer: int = DEFAULT_UDP_BUFFER
    # Forwarding (resolver/forward/forwarder.py).
    forward_zones: tuple[ForwardZone, ...] = ()
    resolv_conf: str = "/etc/resolv.conf"
    upstream_timeout: float = 1.0
    # CA certificates (PEM) that DNS-over-TLS upstreams are checked against; "": the system's.
    upstream_ca: str = ""
    # Distinct questions waiting on upstreams at once. Docker's resolver refuses past 1024 (its
    # REFUSED storms under load); four times that covers a burst of unique names for the 3.5 s a
    # question may take, at a task and one upstream query ID (of 65,536 per socket) each.
    max_inflight: int = 4096
    # Answers in the cache. An entry holds one upstream reply (a few hundred bytes typically,
    # 64 KiB at most over TCP): ~5 MB typical; a host's working set of outside names is a few
    # thousand, and a flood of unique names evicts the oldest instead of growing it.
    cache_size: int = 10_000
    cache_min_ttl: int = 0
    cache_max_ttl: int = 86_400
    serve_stale: bool = True
    bogus_priv: bool = True
    swarm: bool = True
    swarm_managers: tuple[str, ...] = ()
    swarm_refresh: float = 2.0
    swarm_reconcile: float = 60.0
    workers: int = 1
    rate_limit: float = 0.0
    # Names beyond Docker's (README "Names Docker's resolver never gave"): host.docker.internal,
    # other tools' label conventions, static records.
    host_names: bool = True
    compat: tuple[str, ...] = COMPAT_ALL
    records: tuple[StaticRecord, ...] = ()
    resolved: str = "auto"  # systemd-resolved integration (resolver/resolved/)
    # Special-use names and local zones, CHAOS identity (resolver/forward/special_names.py).
    special_names: bool = True
    identity: str | None = None  # None: the host name, as Unbound
    hide_identity: bool = False
    hide_version: bool = False
    # Shutdown: how long queries in flight may take before they get SERVFAIL.
    drain_timeout: float = 2.0
    # Where each value came from, for `dockdns check` and error messages; not a setting.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)


# --- the settings table ------------------------------------------------------------------------

Parser = Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _int_in(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        if isinstance(value, str):
            if not value.strip().lstrip("-").isdigit():
                raise ValueError(f"{value!r} is not a whole number")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value
    return parse


def _float_in(low: float, high: float) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if not low <= number <= high:
            raise ValueError(f"{number:g} is outside {low:g}..{high:g}")
        return number
    return parse


def _cidr(value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(_text(value).strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR block") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        text = _text(value).lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text
    return parse


def _ca_file(value: Any) -> str:
    path = _text(value).strip()
    if path:
        try:
            ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"{path!r}: cannot use as CA certificates: {err}") from None
    return path


def _hostport(default_port: int | None) -> Parser:
    return lambda value: parse_hostport(_text(value), default_port)


def _domain(value: Any) -> str | None:
    text = _text(value).strip().strip(".").lower()
    if not text:
        return None
    if any(not label or len(label) > 63 for label in text.split(".")):
        raise ValueError(f"{value!r} is not a domain name")
    return text


def _user(value: Any) -> str:
    """A user name or numeric id that exists on this machine (checked now, not after binding)."""
    text = _text(value).strip()
    try:
        if text.isdigit():
            pwd.getpwuid(int(text))
        else:
            pwd.getpwnam(text)
    except KeyError:
        raise ValueError(f"no such user {text!r}") from None
    return text


def _container_ref(value: Any) -> str:
    text = _text(value).strip().lstrip("/")
    if not text:
        raise ValueError("a container name or ID is needed")
    return text


def _docker_url(value: Any) -> str:
    text = _text(value).strip()
    if not text.startswith(("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")):
        raise ValueError(f"{text!r} is not a Docker URL (unix:///path or tcp://host:port)")
    return text


def _forward_zone(value: Any) -> ForwardZone:
    return parse_forward_zone(_text(value))


@dataclass(frozen=True, slots=True)
class Setting:
    key: str  # the Config field, the TOML key, and DOCKDNS_<KEY>
    parse: Parser  # one value (one element, for lists)
    help: str
    flag: str = ""  # defaults to --key-with-dashes
    many: bool = False  # a list: repeatable flag, TOML array, comma-separated environment value
    metavar: str | None = None
    # Which component's slice the setting belongs to (resolver/config/slices.py): the one that
    # is reconfigured when it changes on SIGHUP.
    area: str = ""
    # Whether SIGHUP applies it to the running daemon; False: only a restart does (bound sockets,
    # the user, the set of sources are fixed once it runs).
    live: bool = True
    # Whether memoized answers depend on it, so that a change must drop every memo.
    memo: bool = False

    @property
    def option(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("listen", _hostport(53), "address to serve DNS on, UDP and TCP (repeatable)",
            many=True, metavar="ADDR:PORT",
            area="serve", live=False),
    Setting("hosts_files", _text, "hosts file to serve, re-read when it changes (repeatable)",
            flag="--hosts-file", many=True, metavar="PATH",
            area="discovery"),
    Setting("upstreams", lambda value: parse_upstream(_text(value)), "upstream DNS server "
            "(repeatable); tls://ADDR[:PORT]#NAME for DNS over TLS, its certificate checked "
            "for NAME", flag="--upstream", many=True, metavar="ADDR[:PORT]",
            area="forward", memo=True),
    Setting("docker", _bool, "watch the Docker engine for container names",
            area="discovery", live=False),
    Setting("docker_hosts", _docker_url, "Docker engine URL (repeatable; default DOCKER_HOST "
            "or unix:///var/run/docker.sock)", flag="--docker-host", many=True, metavar="URL",
            area="discovery", live=False),
    Setting("default_bridge_names", _bool, "answer names of containers on Docker's default "
            "bridge network too (Docker itself gives them none)",
            area="answer", memo=True),
    Setting("include_unhealthy", _bool, "keep containers whose health check says unhealthy or "
            "starting in answers",
            area="discovery"),
    Setting("ttl", _int_in(0, 2**31 - 1), "TTL of answers from the registry", metavar="SECONDS",
            area="answer", memo=True),
    Setting("domain", _domain, "also answer NAME.SUFFIX and NAME.NETWORK.SUFFIX",
            metavar="SUFFIX",
            area="answer", memo=True),
    Setting("metrics", _bool, "serve Prometheus metrics, /healthz and /readyz over HTTP",
            area="ops", live=False),
    Setting("metrics_listen", _hostport(None), "where metrics and health endpoints are served",
            metavar="ADDR:PORT",
            area="ops", live=False),
    Setting("log_level", _choice("debug", "info", "warning", "error"), "log verbosity",
            area="logs"),
    Setting("log_format", _choice("text", "json"), "log lines for people (text) or machines",
            area="logs"),
    Setting("log_queries", _bool, "log every query that is not answered from the memo",
            area="logs"),
    Setting("user", _user, "drop root to this user once the ports are bound",
            metavar="NAME",
            area="daemon", live=False),
    Setting("as_container", _container_ref, "clients on loopback see what this container "
            "sees (sidecar mode)", metavar="NAME|ID",
            area="answer", memo=True),
    Setting("allow", _cidr, "also answer clients in this CIDR block (repeatable); loopback and "
            "the subnets of Docker networks are always allowed, everyone else gets REFUSED",
            many=True, metavar="CIDR",
            area="answer", memo=True),
    Setting("tcp_max", _int_in(1, 1_000_000), "open TCP connections at most", metavar="N",
            area="tcp"),
    Setting("tcp_idle_timeout", _float_in(0.1, 3600), "close TCP connections idle this long",
            metavar="SECONDS",
            area="tcp"),
    Setting("forward_zones", _forward_zone,
            "send names under ZONE to this server instead (repeatable; longest zone wins)",
            flag="--forward-zone", many=True, metavar="ZONE=ADDR[:PORT]",
            area="forward", memo=True),
    Setting("resolv_conf", _text, "where the default upstreams are read from when no "
            "--upstream is given (re-read when it changes)", metavar="PATH",
            area="forward"),
    Setting("upstream_ca", _ca_file, "CA certificates (PEM file) that tls:// upstreams' "
            "certificates must chain to (default: the system's CA store)", metavar="FILE",
            area="forward"),
    Setting("upstream_timeout", _float_in(0.05, 10.0), "how long one upstream attempt may take "
            "before the next upstream is asked", metavar="SECONDS",
            area="forward"),
    Setting("max_inflight", _int_in(1, 1_000_000), "upstream queries outstanding at once; "
            "beyond it new ones get SERVFAIL at once", metavar="N",
            area="forward"),
    Setting("cache_size", _int_in(0, 10_000_000), "answers kept in the cache (0: no cache)",
            metavar="N",
            area="forward"),
    Setting("cache_min_ttl", _int_in(0, 86_400), "cache answers at least this long",
            metavar="SECONDS",
            area="forward"),
    Setting("cache_max_ttl", _int_in(0, 2**31 - 1), "cache answers at most this long",
            metavar="SECONDS",
            area="forward"),
    Setting("bogus_priv", _bool, "answer reverse lookups of private and special-use addresses "
            "that the registry does not hold with NXDOMAIN instead of forwarding them (unless a "
            "--forward-zone covers them)",
            area="forward", memo=True),
    Setting("serve_stale", _bool, "answer from expired cache entries (TTL 30, up to a day old) "
            "while every upstream fails (RFC 8767)",
            area="forward"),
    Setting("swarm", _bool, "answer Swarm service names when a Docker engine is a Swarm manager",
            area="discovery", live=False),
    Setting("swarm_managers", _docker_url, "Swarm manager to read services from, for a node "
            "whose own engine is a worker (repeatable: tried in turn)", flag="--swarm-manager",
            many=True, metavar="URL",
            area="discovery", live=False),
    Setting("swarm_refresh", _float_in(0.1, 3600), "while a Swarm service's tasks change (after "
            "its events), re-read them at most this often (the first re-reads come sooner)",
            metavar="SECONDS",
            area="discovery"),
    Setting("swarm_reconcile", _float_in(1, 86_400), "re-read every Swarm service and task "
            "this often, whatever the events said (the safety net for missed ones)",
            metavar="SECONDS",
            area="discovery"),
    Setting("rate_limit", _float_in(0, 1_000_000), "answer each non-loopback client at most "
            "this many UDP queries per second (0: no limit); beyond it every second query gets "
            "an empty TC=1 reply (the client retries over TCP) and the rest are dropped",
            metavar="QPS",
            area="serve", live=False),
    Setting("udp_buffer", parse_buffer_size, "receive and send buffer asked for each UDP "
            "listening socket (SO_RCVBUF/SO_SNDBUF: bytes, or with K, M, G; the kernel keeps "
            "twice this, capped by net.core.rmem_max/wmem_max unless dockdns has "
            "CAP_NET_ADMIN); queries past it are dropped by the kernel while dockdns is busy; "
            "0: the kernel's default", metavar="SIZE",
            area="serve", live=False),
    Setting("workers", _int_in(1, 256), "processes serving the same addresses (SO_REUSEPORT), "
            "each with the whole registry", metavar="N",
            area="daemon", live=False),
)

SETTINGS += (
    Setting("host_names", _bool, "answer host.docker.internal with the gateway of the asking "
            "client's own network", area="answer", memo=True),
    Setting("compat", _choice("none", *COMPAT_ALL), "other tools' conventions to honour: "
            "dnsdock (com.dnsdock.* labels), proxy (VIRTUAL_HOST, Traefik Host rules); "
            "'none' for neither (repeatable or comma-separated)", many=True,
            metavar="none|dnsdock|proxy", area="discovery"),
    Setting("records", parse_record, "a static record, 'NAME TYPE DATA' (A, AAAA, CNAME, TXT, "
            "MX, SRV, PTR; repeatable; [[records]] tables in TOML)", flag="--record", many=True,
            metavar="'NAME TYPE DATA'", area="discovery"),
    Setting("resolved", _choice("auto", "on", "off"), "register with systemd-resolved as the "
            "DNS server of --domain and Docker's reverse zones (auto: when it is on the system "
            "bus; on: a startup error without it)", metavar="auto|on|off", area="daemon",
            live=False),
    Setting("special_names", _bool, "answer special-use names (localhost, invalid, test, onion, "
            "home.arpa, local) and private reverse zones here, as Unbound does, instead of "
            "forwarding them", area="forward", memo=True),
    Setting("identity", _text, "what CHAOS id.server and hostname.bind answer (default: the "
            "host name)", metavar="TEXT", area="forward", memo=True),
    Setting("hide_identity", _bool, "answer CHAOS id.server and hostname.bind with REFUSED",
            area="forward", memo=True),
    Setting("hide_version", _bool, "answer CHAOS version.bind and version.server with REFUSED",
            area="forward", memo=True),
    Setting("drain_timeout", _float_in(0, 60), "on SIGTERM, how long queries in flight may take; "
            "those still waiting then get SERVFAIL", metavar="SECONDS", area="daemon"),
)

SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


def _parse_setting(setting: Setting, value: Any, origin: str) -> Any:
    try:
        if isinstance(value, dict):
            raise ValueError("a TOML table is not a value here; settings are top-level keys")
        if setting.many:
            if isinstance(value, str) and (origin.startswith("environment")
                                           or setting.key == "compat"):
                value = [part for part in value.split(",") if part.strip()]
            if setting.key == "compat" and isinstance(value, list | tuple):
                # --compat dnsdock,proxy as one flag, or --compat dnsdock --compat proxy.
                value = [p for item in value for p in
                         (item.split(",") if isinstance(item, str) else [item]) if str(p).strip()]
            if not isinstance(value, list | tuple):
                raise ValueError(f"expected a list, got {type(value).__name__}")
            return tuple(setting.parse(item) for item in value)
        return setting.parse(value)
    except ValueError as err:
        raise ConfigError(setting.key, f"{err} (from {origin})") from None


def load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as err:
        raise ConfigError("config", f"cannot read {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config", f"{path} is not valid TOML: {err}") from None
    for key in data:
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(key, f"unknown key in {path}")
    return data


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(key, f"unknown environment variable {name}")
        values[key] = value
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults are None so that only flags actually given override."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file with settings named like the flags (env DOCKDNS_CONFIG)")
    for setting in SETTINGS:
        if setting.parse is _bool:
            parser.add_argument(setting.option, dest=setting.key, default=None,
                                action=argparse.BooleanOptionalAction, help=setting.help)
        else:
            parser.add_argument(setting.option, dest=setting.key, default=None,
                                action="append" if setting.many else "store",
                                metavar=setting.metavar, help=setting.help)


def build(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge the layers (defaults < file < environment < flags) and validate every value."""
    environ = os.environ if environ is None else environ
    config_path = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_path:
        layers.append((f"config file {config_path}", load_file(config_path)))
    layers.append(("environment", from_environment(environ)))
    layers.append(("command line", {k: v for k, v in flags.items()
                                     if k in SETTINGS_BY_KEY and v is not None}))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        for key, raw in layer.items():
            values[key] = _parse_setting(SETTINGS_BY_KEY[key], raw, origin)
            origins[key] = origin
    config = replace(Config(), **values, origins=origins)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Checks that span settings; single values were checked as they were parsed."""
    if not config.listen:
        raise ConfigError("listen", "at least one address is needed")
    if len(set(config.listen)) != len(config.listen):
        raise ConfigError("listen", "an address is given twice")
    if config.metrics and config.metrics_listen in config.listen:
        raise ConfigError("metrics_listen", f"{config.metrics_listen} is also a DNS listen "
                          "address; choose another port")
    for path in config.hosts_files:
        if Path(path).is_dir():
            raise ConfigError("hosts_files", f"{path} is a directory")
    if "none" in config.compat and len(config.compat) > 1:
        raise ConfigError("compat", "'none' cannot be combined with a convention")
    if config.cache_min_ttl > config.cache_max_ttl:
        raise ConfigError("cache_min_ttl", f"{config.cache_min_ttl} is above cache_max_ttl "
                          f"{config.cache_max_ttl}")


def setting_keys() -> list[str]:
    return [f.name for f in fields(Config) if f.name != "origins"]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, HostPort | StaticRecord):
        return str(value)
    return value


def describe(config: Config, as_json: bool = False) -> str:
    """Every setting's value and the layer it came from (``dockdns config``)."""
    values = {key: _plain(getattr(config, key)) for key in setting_keys()}
    origins = {key: config.origins.get(key, "default") for key in values}
    if as_json:
        return json.dumps({"settings": values, "origins": origins}, indent=2)
    return "\n".join(f"{key} = {json.dumps(value)}  # {origins[key]}"
                     for key, value in values.items())
