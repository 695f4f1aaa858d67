"""Where the Docker engine listens by default, and a check of its unix socket that leaks nothing.

The docker SDK connects as soon as a client is made (to ask the API version) and leaves its
socket for the garbage collector when a unix socket refuses the connection: a ResourceWarning and
an open descriptor per attempt, which a retry loop would repeat every backoff step. Every place
that makes a client for an engine that may be down asks here first.
"""

from __future__ import annotations

import socket

DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def check_unix_socket(url: str, timeout: float) -> None:
    """For a ``unix://`` engine URL, raise OSError unless its socket accepts a connection (the
    probe is closed again at once). Other URLs are left to the SDK."""
    if url.startswith("unix://"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            probe.connect(url.removeprefix("unix://"))
