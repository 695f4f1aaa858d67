"""The TCP bounds: Config takes its defaults from here, and the slice is frozen."""

from __future__ import annotations

import dataclasses

import pytest

from resolver.config.settings import Config
from resolver.serve.settings import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, TCPSettings


def test_defaults() -> None:
    assert TCPSettings() == TCPSettings(DEFAULT_MAX_CONNECTIONS, DEFAULT_IDLE_TIMEOUT)
    assert (Config().tcp_max, Config().tcp_idle_timeout) == (DEFAULT_MAX_CONNECTIONS,
                                                            DEFAULT_IDLE_TIMEOUT)
    # Below the usual 1024 soft limit on descriptors plus the daemon's own few.
    assert 0 < DEFAULT_MAX_CONNECTIONS <= 1024 and 0 < DEFAULT_IDLE_TIMEOUT


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TCPSettings().max_connections = 1  # type: ignore[misc]
