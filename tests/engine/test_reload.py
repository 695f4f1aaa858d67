"""SIGHUP with the Docker source running: the settings that shape Docker answers change live.

`default_bridge_names` (names on Docker's default bridge) and `include_unhealthy` (containers
whose health check fails) are re-read from the config file and applied to the real engine's
containers without a restart, as the README promises for every setting not marked restart-only.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.daemon import dockdns
from tests.support.engine import lab, wait_for

pytestmark = pytest.mark.docker

POOL = "10.248.0.0/17"
# Fails at once and every half second: the container is soon "unhealthy".
FAILING_CHECK = {"test": ["CMD-SHELL", "test -f /tmp/never"], "interval": 500_000_000,
                 "timeout": 2_000_000_000, "retries": 1}


def health(box_inspect: dict[str, object]) -> str:
    state = box_inspect["State"]
    assert isinstance(state, dict)
    return str((state.get("Health") or {}).get("Status") or "")


def test_sighup_applies_docker_answer_settings(tmp_path: Path, upstream: str) -> None:
    config = tmp_path / "dockdns.toml"
    config.write_text(f'upstreams = ["{upstream}"]\n'
                      "default_bridge_names = false\ninclude_unhealthy = false\n")
    with lab("di-r", pool=POOL) as made:
        made.network("di-rnet")
        on_bridge = made.container("di-rbridge", None)
        sick = made.container("di-rsick", "di-rnet", healthcheck=FAILING_CHECK)
        made.container("di-rwell", "di-rnet")
        wait_for(lambda: health(sick.inspect()) == "unhealthy", message="di-rsick unhealthy")
        bridge_ip = on_bridge.inspect()["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        with dockdns("--config", str(config), docker=True) as daemon:
            wait_for(lambda: daemon.sees("di-rwell"), message="the engine's first sync")
            assert daemon.sees("di-rbridge") == set()
            assert daemon.sees("di-rsick") == set()

            config.write_text(f'upstreams = ["{upstream}"]\n'
                              "default_bridge_names = true\ninclude_unhealthy = true\n")
            daemon.signal(signal.SIGHUP)
            wait_for(lambda: "config reloaded; changed:" in daemon.log(), message="reload")
            assert daemon.sees("di-rbridge") == {bridge_ip}
            assert daemon.sees("di-rsick") == {sick.ip("di-rnet")}
