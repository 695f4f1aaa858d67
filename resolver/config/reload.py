"""What a config re-read (SIGHUP) may change in a running daemon, and what needs a restart."""

from __future__ import annotations

from dataclasses import replace

from resolver.config.settings import Config, setting_keys

# Bound sockets, the user, and the set of sources are fixed once the daemon runs: changing them
# means rebinding (perhaps as a user that may no longer bind) or a different daemon altogether.
RESTART_ONLY = frozenset({"listen", "metrics", "metrics_listen", "user", "docker", "swarm",
                          "swarm_managers", "docker_hosts", "workers", "rate_limit", "resolved"})


def changed_settings(old: Config, new: Config) -> list[str]:
    return [key for key in setting_keys() if getattr(old, key) != getattr(new, key)]


def merge(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The config to run with from now on, the settings applied, and those left as they were."""
    changed = changed_settings(old, new)
    kept = [key for key in changed if key in RESTART_ONLY]
    applied = [key for key in changed if key not in RESTART_ONLY]
    merged = replace(new, **{key: getattr(old, key) for key in kept})
    return merged, applied, kept
