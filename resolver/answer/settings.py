"""The answering slice of the configuration: what local answers and client views depend on.
Every one of these is memoized into answers, so a change makes new views (and empty memos)."""

from __future__ import annotations

from dataclasses import dataclass

from discovery.registry.model import IPNetwork


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    ttl: int = 600
    domain: str | None = None
    default_bridge_names: bool = False
    as_container: str | None = None  # sidecar mode: loopback clients see this container's view
    allow: tuple[IPNetwork, ...] = ()
    host_names: bool = True  # answer host.docker.internal with the client's network gateway
