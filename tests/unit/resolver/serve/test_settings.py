"""The listeners' settings: the TCP bounds (Config takes its defaults from here, the slice is
frozen) and the UDP buffer size, parsed and bounded."""

from __future__ import annotations

import dataclasses

import pytest

from resolver.config.settings import Config
from resolver.serve.settings import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_UDP_BUFFER,
    TCPSettings,
    parse_buffer_size,
)


def test_defaults() -> None:
    assert TCPSettings() == TCPSettings(DEFAULT_MAX_CONNECTIONS, DEFAULT_IDLE_TIMEOUT)
    assert (Config().tcp_max, Config().tcp_idle_timeout) == (DEFAULT_MAX_CONNECTIONS,
                                                            DEFAULT_IDLE_TIMEOUT)
    # Below the usual 1024 soft limit on descriptors plus the daemon's own few.
    assert 0 < DEFAULT_MAX_CONNECTIONS <= 1024 and 0 < DEFAULT_IDLE_TIMEOUT


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TCPSettings().max_connections = 1  # type: ignore[misc]


@pytest.mark.parametrize(("value", "size"), [
    (0, 0), ("0", 0), (4096, 4096), ("65536", 65536), ("512K", 512 << 10), ("4m", 4 << 20),
    ("4MiB", 4 << 20), ("1 G", 1 << 30), ("8192b", 8192)])
def test_buffer_sizes(value: object, size: int) -> None:
    assert parse_buffer_size(value) == size


@pytest.mark.parametrize("value", [True, 12, "4095", "2G", "-4096", "4T", "lots", "", 4.5, "M"])
def test_bad_buffer_sizes(value: object) -> None:
    with pytest.raises(ValueError):
        parse_buffer_size(value)


def test_the_udp_buffer_default_holds_a_loaded_burst() -> None:
    assert Config().udp_buffer == DEFAULT_UDP_BUFFER == parse_buffer_size("4M")
    # 200 queries outstanding at 832 bytes of the kernel's accounting each, many times over.
    assert 2 * DEFAULT_UDP_BUFFER > 20 * 200 * 832
