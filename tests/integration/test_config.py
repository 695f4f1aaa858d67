"""The one config through the real CLI: each layer, their precedence, and every invalid path
(one line naming the setting, exit status 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import REPO, command


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCKDNS_")}
    return subprocess.run(command(*args), capture_output=True, text=True, cwd=REPO,
                          env={**clean, **(env or {})}, timeout=timeout, check=False)


def effective(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = run("config", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    shown = effective()
    settings, origins = shown["settings"], shown["origins"]
    assert isinstance(settings, dict) and isinstance(origins, dict)
    assert settings["listen"] == ["127.0.0.11:53"]
    assert settings["metrics"] is True and settings["metrics_listen"] == "127.0.0.1:9153"
    assert settings["ttl"] == 600 and settings["log_format"] == "text"
    assert set(origins.values()) == {"default"}


def test_each_layer_and_precedence(tmp_path: Path) -> None:
    toml = write(tmp_path / "dockdns.toml", """
ttl = 100
domain = "file.test"
log_format = "json"
upstreams = ["127.0.0.1:5301", "[::1]:5302"]
metrics = false
log_queries = true
""")
    file_only = effective("--config", toml)
    assert file_only["settings"] == {**file_only["settings"], "ttl": 100, "domain": "file.test",
                                     "log_format": "json", "metrics": False,
                                     "log_queries": True,
                                     "upstreams": ["127.0.0.1:5301", "[::1]:5302"]}
    assert file_only["origins"]["ttl"] == f"config file {toml}"  # type: ignore[index]

    env = {"DOCKDNS_TTL": "200", "DOCKDNS_UPSTREAMS": "127.0.0.1:5303,127.0.0.1",
           "DOCKDNS_METRICS": "true"}
    with_env = effective("--config", toml, env=env)
    settings = with_env["settings"]
    assert isinstance(settings, dict)
    assert settings["ttl"] == 200 and settings["metrics"] is True
    assert settings["upstreams"] == ["127.0.0.1:5303", "127.0.0.1:53"]
    assert settings["domain"] == "file.test"  # not in the environment: the file's value
    assert with_env["origins"]["ttl"] == "environment"  # type: ignore[index]

    with_flags = effective("--config", toml, "--ttl", "300", "--no-metrics",
                           "--upstream", "127.0.0.1:5304", env=env)
    settings = with_flags["settings"]
    assert isinstance(settings, dict)
    assert settings["ttl"] == 300 and settings["metrics"] is False
    assert settings["upstreams"] == ["127.0.0.1:5304"]
    assert settings["log_format"] == "json"
    assert with_flags["origins"]["ttl"] == "command line"  # type: ignore[index]

    # The config file can come from the environment too.
    from_env_file = effective(env={"DOCKDNS_CONFIG": toml})
    assert from_env_file["settings"]["ttl"] == 100  # type: ignore[index]


def test_layers_reach_the_answers(tmp_path: Path, hosts_file: str) -> None:
    """The merged config is what `check` (and serve) answer with, not just what is printed."""
    toml = write(tmp_path / "c.toml", f'ttl = 111\nhosts_files = ["{hosts_file}"]\n'
                 f'docker = false\n')
    by_file = run("check", "web1", "--config", toml)
    by_env = run("check", "web1", "--config", toml, env={"DOCKDNS_TTL": "222"})
    by_flag = run("check", "web1", "--config", toml, "--ttl", "333",
                  env={"DOCKDNS_TTL": "222"})
    for done, ttl in ((by_file, 111), (by_env, 222), (by_flag, 333)):
        assert done.returncode == 0, done.stderr
        assert f"{ttl}     IN      A       10.1.2.3" in done.stdout


INVALID_FILES = [
    ("unknown key", "tll = 5\n", "invalid setting 'tll': unknown key in"),
    ("wrong type", 'ttl = "soon"\n', "invalid setting 'ttl': 'soon' is not a whole number"),
    ("float", "ttl = 1.5\n", "invalid setting 'ttl': expected a whole number, got float"),
    ("out of range", "ttl = -1\n", "invalid setting 'ttl': -1 is outside"),
    ("not a list", 'listen = "127.0.0.1:53"\n',
     "invalid setting 'listen': expected a list, got str"),
    ("bool", 'docker = "maybe"\n', "invalid setting 'docker': 'maybe' is not a boolean"),
    ("bad address", 'listen = ["localhost:53"]\n',
     "invalid setting 'listen': 'localhost:53': 'localhost' is not an IP address"),
    ("bad port", 'upstreams = ["127.0.0.1:99999"]\n',
     "invalid setting 'upstreams': '127.0.0.1:99999': port must be 1-65535"),
    ("metrics without port", 'metrics_listen = "127.0.0.1"\n',
     "invalid setting 'metrics_listen': '127.0.0.1': a port is required"),
    ("choice", 'log_format = "xml"\n',
     "invalid setting 'log_format': 'xml' is not one of text, json"),
    ("table", "[metrics]\nlisten = 1\n",
     "invalid setting 'metrics': a TOML table is not a value here"),
    ("docker url", 'docker_hosts = ["/var/run/docker.sock"]\n',
     "invalid setting 'docker_hosts': '/var/run/docker.sock' is not a Docker URL"),
    ("user", 'user = "no-such-user-here"\n',
     "invalid setting 'user': no such user 'no-such-user-here'"),
    ("clash", 'listen = ["127.0.0.1:9153"]\nmetrics_listen = "127.0.0.1:9153"\n',
     "invalid setting 'metrics_listen': 127.0.0.1:9153 is also a DNS listen address"),
    ("toml syntax", "ttl = = 5\n", "invalid setting 'config':"),
]


@pytest.mark.parametrize(("case", "text", "message"), INVALID_FILES,
                         ids=[case for case, _, _ in INVALID_FILES])
def test_invalid_file_exits_2_with_one_line(tmp_path: Path, case: str, text: str,
                                            message: str) -> None:
    toml = write(tmp_path / "bad.toml", text)
    done = run("serve", "--config", toml)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dockdns: " + message), lines[0]
    if case not in ("toml syntax", "clash"):  # those name the file, or two settings
        assert toml in lines[0]


INVALID_ELSEWHERE = [
    ("missing file", ["--config", "/nonexistent/dockdns.toml"], {},
     "invalid setting 'config': cannot read /nonexistent/dockdns.toml"),
    ("unknown env", [], {"DOCKDNS_TLL": "5"},
     "invalid setting 'tll': unknown environment variable DOCKDNS_TLL"),
    ("env type", [], {"DOCKDNS_TTL": "five"},
     "invalid setting 'ttl': 'five' is not a whole number (from environment)"),
    ("env bool", [], {"DOCKDNS_LOG_QUERIES": "sometimes"},
     "invalid setting 'log_queries': 'sometimes' is not a boolean"),
    ("env address", [], {"DOCKDNS_UPSTREAMS": "127.0.0.1,dns.google"},
     "invalid setting 'upstreams': 'dns.google': 'dns.google' is not an IP address"),
    ("flag address", ["--listen", "127.0.0.1:http"], {},
     "invalid setting 'listen': '127.0.0.1:http': port must be 1-65535 (from command line)"),
    ("flag value", ["--ttl", "-5"], {}, "invalid setting 'ttl': -5 is outside"),
    ("flag choice", ["--log-level", "loud"], {},
     "invalid setting 'log_level': 'loud' is not one of"),
    ("flag user", ["--user", "no-such-user-here"], {},
     "invalid setting 'user': no such user"),
    ("listen twice", ["--listen", "127.0.0.1:53", "--listen", "127.0.0.1:53"], {},
     "invalid setting 'listen': an address is given twice"),
]


@pytest.mark.parametrize(("case", "args", "env", "message"), INVALID_ELSEWHERE,
                         ids=[case for case, _, _, _ in INVALID_ELSEWHERE])
def test_invalid_env_and_flags_exit_2(case: str, args: list[str], env: dict[str, str],
                                      message: str) -> None:
    done = run("serve", *args, env=env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dockdns: " + message), lines[0]


def test_every_command_validates_the_same_way(tmp_path: Path) -> None:
    toml = write(tmp_path / "bad.toml", "ttl = true\n")
    for cmd in (["serve"], ["check", "web1"], ["registry"], ["config"]):
        done = run(*cmd, "--config", toml)
        assert done.returncode == 2, cmd
        assert done.stderr.startswith("dockdns: invalid setting 'ttl': expected a whole number")


def test_the_example_config_is_valid() -> None:
    shown = effective("--config", str(REPO / "deploy" / "dockdns.toml"))
    settings = shown["settings"]
    assert isinstance(settings, dict)
    assert settings["listen"] == ["127.0.0.11:53", "172.17.0.1:53"]
    assert settings["domain"] == "docker"


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    unit = (REPO / "deploy" / "dockdns.service").read_text()
    assert "\nType=notify\n" in unit and "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # Point ExecStart at this installation's dockdns so that verify can check it exists.
    dockdns_path = shutil.which("dockdns")
    assert dockdns_path is not None, "dockdns is installed by tests/setup.sh"
    local = tmp_path / "dockdns.service"
    local.write_text(unit.replace("/usr/local/bin/dockdns", dockdns_path))
    done = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
