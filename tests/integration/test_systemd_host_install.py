"""The README's host install, as far as a machine without systemd as PID 1 allows.

The install is done as the README says (a virtualenv with ``pip install`` of this tree, its
``dockdns`` linked as /usr/local/bin/dockdns), except that /usr/local/bin is this test's own: a
private mount namespace (``unshare -m``) binds a directory of the test's over it, so nothing of
the machine's changes. In that namespace:

* ``systemd-analyze verify deploy/dockdns.service`` passes, against the real ExecStart binary;
* the daemon is started with the unit's exact ExecStart line and the environment systemd would
  give it: the unit's ``Environment=`` lines, then its ``EnvironmentFile=`` (the test's own file
  in place of /etc/dockdns/dockdns.env, overriding the listen address, the upstream and Docker),
  and a real NOTIFY_SOCKET. It must say READY=1, answer a hosts-file name and a forwarded one,
  and say STOPPING=1 and exit 0 on SIGTERM.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dns.rcode
import pytest

from tests.support.daemon import REPO
from tests.support.net import addresses, ask, free_port
from tests.support.notify_socket import lines, notify_socket
from tests.support.quiet_upstream import answering_upstream

UNIT = REPO / "deploy" / "dockdns.service"
EXAMPLE_TOML = REPO / "deploy" / "dockdns.toml"
INSTALLED = "/usr/local/bin"
# What systemd puts in a service's environment before the unit's own settings.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def service_section(path: Path) -> dict[str, list[str]]:
    """The [Service] settings, each key with every value it is given, in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd reads an EnvironmentFile (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's install into a virtualenv; the directory to bind over /usr/local/bin."""
    _need(os.geteuid() == 0 and shutil.which("unshare") is not None,
          "the private mount namespace needs root and unshare (util-linux)")
    root = tmp_path_factory.mktemp("host-install")
    venv = root / "dockdns-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                    "--disable-pip-version-check", str(REPO)], check=True, timeout=600)
    bin_dir = root / "usr-local-bin"
    bin_dir.mkdir()
    (bin_dir / "dockdns").symlink_to(venv / "bin" / "dockdns")
    return bin_dir


def in_namespace(bin_dir: Path, argv: list[str]) -> list[str]:
    """``argv`` run in a private mount namespace where /usr/local/bin is ``bin_dir``."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind "$0" {INSTALLED} && exec "$@"', str(bin_dir), *argv]


def test_the_unit_is_type_notify_and_verifies(installed: Path) -> None:
    service = service_section(UNIT)
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["all"]
    (exec_start,) = service["ExecStart"]
    assert shlex.split(exec_start)[0] == f"{INSTALLED}/dockdns"
    analyze = shutil.which("systemd-analyze")
    _need(analyze is not None, "systemd-analyze is missing (Debian package systemd)")
    assert analyze is not None
    done = subprocess.run(in_namespace(installed, [analyze, "verify", str(UNIT)]),
                          capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def test_exec_start_under_a_notify_socket_serves(installed: Path, tmp_path: Path) -> None:
    service = service_section(UNIT)
    (exec_start,) = service["ExecStart"]
    unit_env = dict(shlex.split(value)[0].split("=", 1) for value in service["Environment"])
    assert unit_env == {"DOCKDNS_CONFIG": "/etc/dockdns/dockdns.toml"}
    (env_file_setting,) = service["EnvironmentFile"]
    assert env_file_setting == "-/etc/dockdns/dockdns.env"  # "-": optional

    hosts = tmp_path / "hosts"
    hosts.write_text("10.77.0.5 unit-web\n")
    port, metrics = free_port(), free_port()
    with answering_upstream({"unit-ext.example": "198.51.100.77"}) as upstream:
        # What an operator would put in /etc/dockdns/dockdns.env on a test box: the shipped
        # example config, with the addresses of this test instead of the example's.
        env_file = tmp_path / "dockdns.env"
        env_file.write_text(
            f"DOCKDNS_CONFIG={EXAMPLE_TOML}\n"
            f"DOCKDNS_LISTEN=127.0.0.1:{port}\n"
            f"DOCKDNS_UPSTREAMS={upstream}\n"
            f"DOCKDNS_HOSTS_FILES={hosts}\n"
            f"DOCKDNS_METRICS_LISTEN=127.0.0.1:{metrics}\n"
            "DOCKDNS_DOCKER=false\n")
        with notify_socket(tmp_path) as notify:
            environ = {"PATH": SYSTEMD_PATH, "NOTIFY_SOCKET": notify.path,
                       **unit_env, **environment_file(env_file)}
            log_path = tmp_path / "dockdns.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(in_namespace(installed, shlex.split(exec_start)),
                                           env=environ, stdout=log, stderr=subprocess.STDOUT)
            try:
                try:
                    notify.until("READY=1")
                except TimeoutError:
                    raise AssertionError(log_path.read_text()) from None
                web = ask("127.0.0.1", port, "unit-web")
                assert (web.rcode(), addresses(web)) == (dns.rcode.NOERROR, {"10.77.0.5"})
                ext = ask("127.0.0.1", port, "unit-ext.example")
                assert (ext.rcode(), addresses(ext)) == (dns.rcode.NOERROR, {"198.51.100.77"})
                # The example file's own settings hold where the environment left them.
                assert ask("127.0.0.1", port, "unit-web.docker").answer
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=30) == 0, log_path.read_text()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            assert "STOPPING=1" in lines(notify.seen + notify.pending())
