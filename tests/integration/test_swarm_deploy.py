"""The Swarm stack file and the Swarm settings. The stack is checked as `docker stack deploy` would
read it (`docker stack config`, where this docker CLI has it), and its command and environment are
fed to dockdns's own settings parser, so a flag the daemon does not know fails here. Nothing is
deployed: the image would have to be pulled on every node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.config import settings as config_module
from resolver.config.settings import ConfigError
from resolver.daemon import cli
from resolver.dns.addresses import HostPort

STACK = Path(__file__).resolve().parents[2] / "deploy" / "swarm-stack.yml"
MANAGERS = "tcp://manager1.example:2376,tcp://manager2.example:2376"
ENV = {"DOCKDNS_MANAGER_URL": MANAGERS}
SOCKET = "unix:///var/run/docker.sock"


def _has_stack_config() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "stack", "config", "--help"], capture_output=True,
                          check=False, timeout=30)
    return done.returncode == 0


def _interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default}, for a docker CLI without `stack config`."""
    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3)
        return environ.get(name) or (default if default is not None else "")
    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", value, text)


def stack() -> dict[str, Any]:
    if _has_stack_config():
        done = subprocess.run(["docker", "stack", "config", "-c", str(STACK)],
                              capture_output=True, text=True, check=False, timeout=60,
                              env={**os.environ, **ENV}, cwd="/")
        assert done.returncode == 0, done.stderr
        loaded: dict[str, Any] = yaml.safe_load(done.stdout)
        return loaded
    loaded = yaml.safe_load(_interpolate(STACK.read_text(), ENV))
    return loaded


def daemon_config(service: dict[str, Any]) -> config_module.Config:
    """The Config dockdns would build inside the service's container."""
    assert service["entrypoint"] == ["dockdns", "serve"]
    args = cli._parser().parse_args(["serve", *service.get("command", [])])
    environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    return config_module.build(vars(args), environ=environment)


def test_stack_runs_dockdns_on_every_node() -> None:
    services = stack()["services"]
    assert set(services) == {"dockdns-manager", "dockdns-worker"}
    roles = set()
    for service in services.values():
        deploy = service["deploy"]
        assert deploy["mode"] == "global"
        roles.update(deploy["placement"]["constraints"])
        assert any(volume["source"] == "/var/run/docker.sock"
                   and volume["target"] == "/var/run/docker.sock"
                   for volume in service["volumes"])
        assert list(service["networks"]) == ["hostnet"]
    assert roles == {"node.role == manager", "node.role == worker"}
    assert stack()["networks"]["hostnet"] == {"external": True, "name": "host"}


def test_stack_commands_are_valid_dockdns_settings() -> None:
    services = stack()["services"]
    manager = daemon_config(services["dockdns-manager"])
    worker = daemon_config(services["dockdns-worker"])
    for config in (manager, worker):
        assert config.listen == (HostPort("172.18.0.1", 53),)
        assert config.docker_hosts == (SOCKET,)
        assert config.swarm and config.swarm_refresh == 2.0
    assert manager.swarm_managers == ()
    assert worker.swarm_managers == tuple(MANAGERS.split(","))
    env = services["dockdns-worker"]["environment"]
    assert env["DOCKER_TLS_VERIFY"] == "1" and env["DOCKER_CERT_PATH"] == "/certs"


def test_swarm_settings() -> None:
    config = config_module.build({}, environ={})
    assert config.swarm and config.swarm_refresh == 2.0 and config.swarm_managers == ()
    config = config_module.build({}, environ={"DOCKDNS_SWARM_REFRESH": "0.5",
                                              "DOCKDNS_SWARM": "false"})
    assert config.swarm_refresh == 0.5 and not config.swarm
    args = cli._parser().parse_args(["serve", "--swarm-manager", "tcp://m:2376",
                                     "--swarm-manager", "unix:///run/m.sock",
                                     "--swarm-refresh", "5"])
    config = config_module.build(vars(args), environ={})
    assert config.swarm_managers == ("tcp://m:2376", "unix:///run/m.sock")
    assert config.swarm_refresh == 5.0
    for flags in ({"swarm_refresh": "0"}, {"swarm_refresh": "soon"},
                  {"swarm_managers": ["manager:2376"]}):
        with pytest.raises(ConfigError):
            config_module.build(flags, environ={})
