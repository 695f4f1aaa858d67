"""Whether the host's resolver is systemd-resolved's local stub (127.0.0.53, or 127.0.0.54 which
answers without per-link routing)."""

from __future__ import annotations

from pathlib import Path

from resolver.forward.upstreams import SYSTEMD_STUBS, parse_resolv_conf


def points_at_stub(resolv_conf: str) -> bool:
    """Whether every nameserver of ``resolv_conf`` is resolved's stub."""
    try:
        text = Path(resolv_conf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    servers = parse_resolv_conf(text)
    return bool(servers) and all(server.host in SYSTEMD_STUBS for server in servers)
