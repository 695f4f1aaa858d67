"""Every dockdns command line the deployment files and guides show, through dockdns's own
command-line and settings parser: a flag that does not exist (or no longer exists), a bad value,
or a command that does not match the image's entrypoint fails here, not on an operator's host.
And every flag the README's tables document exists. (deploy/swarm-stack.yml is checked the same
way in tests/integration/test_swarm_deploy.py, deploy/dockdns.toml in
tests/integration/test_config.py.)"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.config import settings as config_module
from resolver.config.settings import Config
from resolver.daemon import cli
from resolver.dns.addresses import HostPort

REPO = Path(__file__).resolve().parents[4]
DEPLOY = REPO / "deploy"
EXAMPLE_TOML = DEPLOY / "dockdns.toml"


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Config:
    """``argv`` as given to the ``dockdns`` command (``serve ...``, ``check NAME ...``)."""
    args = cli._parser().parse_args(argv)
    return config_module.build(vars(args), environ=environ or {})


def dockerfile_instruction(name: str) -> list[str]:
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith(f"{name} "):
            value: list[str] = json.loads(line[len(name) + 1:])
            return value
    raise AssertionError(f"no {name} in deploy/Dockerfile")


def dockerfile_env() -> dict[str, str]:
    """Every ``ENV KEY=VALUE ...`` of the Dockerfile (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(pair.split("=", 1) for line in text.splitlines() if line.startswith("ENV ")
                for pair in shlex.split(line[len("ENV "):]))


def test_the_image_runs_serve_with_valid_defaults() -> None:
    assert dockerfile_instruction("ENTRYPOINT") == ["dockdns", "serve"]
    # The image's defaults are DOCKDNS_* variables (the HEALTHCHECK reads the same one), so a
    # container's arguments add to them instead of replacing them.
    environ = {k: v for k, v in dockerfile_env().items() if k.startswith("DOCKDNS_")}
    config = parse(["serve"], environ)
    assert config.listen == (HostPort("0.0.0.0", 53),)
    assert config.metrics_listen == HostPort("127.0.0.1", 9153)
    healthcheck = (DEPLOY / "Dockerfile").read_text().split("\nHEALTHCHECK ", 1)[1]
    assert "DOCKDNS_METRICS_LISTEN" in healthcheck.split("\nENTRYPOINT", 1)[0]


def compose() -> dict[str, Any]:
    """The compose file as Compose reads it with no variable set: each ``${VAR:-default}`` is
    its default."""
    text = re.sub(r"\$\{(\w+)(:-([^}]*))?\}", lambda m: m.group(3) or "",
                  (DEPLOY / "compose.yaml").read_text())
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_compose_commands_are_valid_and_consistent() -> None:
    services = compose()["services"]
    dockdns = {name: s for name, s in services.items() if s.get("image") == "dockdns:latest"}
    assert set(dockdns) == {"dockdns", "dockdns-sidecar"}
    # The image's entrypoint is `dockdns serve`: a command is serve's arguments, and the
    # service's environment is the DOCKDNS_* layer.
    configs = {name: parse(["serve", *s["command"]], s.get("environment") or {})
               for name, s in dockdns.items()}

    # The app on the default bridge asks dockdns where it listens.
    host = configs["dockdns"]
    assert [HostPort(a, 53) for a in services["app"]["dns"]] == list(host.listen)
    assert host.default_bridge_names  # else the default bridge has no names, as with Docker

    # The sidecar: in the app's namespace, on the address the app asks, as that container.
    sidecar = configs["dockdns-sidecar"]
    app = services["app-with-sidecar"]
    assert services["dockdns-sidecar"]["network_mode"] == "service:app-with-sidecar"
    assert [HostPort(a, 53) for a in app["dns"]] == list(sidecar.listen)
    assert sidecar.as_container == app["container_name"]


def test_systemd_exec_start_is_valid() -> None:
    unit = (DEPLOY / "dockdns.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/dockdns")
    environ = dict(shlex.split(line)[0].split("=", 1)
                   for line in re.findall(r"^Environment=(.*)$", unit, re.MULTILINE))
    # The unit reads the example file once installed; here the repository's copy.
    assert environ["DOCKDNS_CONFIG"] == "/etc/dockdns/dockdns.toml"
    config = parse(argv[1:], {**environ, "DOCKDNS_CONFIG": str(EXAMPLE_TOML)})
    assert config.origins["listen"].startswith("config file")
    assert config.docker


def shell_commands(markdown: Path) -> list[list[str]]:
    """The ``dockdns`` and ``docker run`` commands in a markdown file's code blocks
    (continuation lines joined, a leading ``$ `` prompt removed), split as a shell would."""
    commands: list[list[str]] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", markdown.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith(("dockdns ", "docker run ")):
                commands.append(shlex.split(line, comments=True))
    return commands


def dockdns_argv(command: list[str]) -> list[str] | None:
    """The ``dockdns`` arguments of a shell command: a ``dockdns ...`` line, or the arguments
    after the ``dockdns`` image of a ``docker run`` (whose entrypoint is ``dockdns serve``)."""
    if command[0] == "dockdns":
        return command[1:]
    if command[:2] == ["docker", "run"] and "dockdns" in command:
        return ["serve", *command[command.index("dockdns") + 1:]]
    return None


@pytest.mark.parametrize("document", ["deploy/GUIDE.md", "README.md"])
def test_documented_command_lines_are_valid(document: str) -> None:
    found = [argv for command in shell_commands(REPO / document)
             if (argv := dockdns_argv(command)) is not None]
    assert found, f"no dockdns command found in {document}"
    for argv in found:
        parse(argv)  # raises ConfigError, or argparse exits, on anything wrong


def test_every_flag_in_the_readme_tables_exists() -> None:
    known = {"--config", *(setting.option for setting in config_module.SETTINGS)}
    rows = [line for line in (REPO / "README.md").read_text().splitlines()
            if line.startswith("| `--")]
    flags = {flag for row in rows for flag in re.findall(r"`(--[a-z-]+)", row.split("|")[1])}
    assert len(flags) > 20
    # --no-X is the negative of the on/off setting --X.
    unknown = {flag for flag in flags if flag not in known
               and f"--{flag.removeprefix('--no-')}" not in known}
    assert not unknown, sorted(unknown)
