"""The engine's event stream, read in a thread and handed to the event loop.

The docker SDK's event stream is a blocking iterator over a long HTTP response. It runs in a
daemon thread of its own (not the loop's default executor, which it would occupy forever); each
event goes to the loop with ``call_soon_threadsafe``, so that everything that touches the registry
runs on the loop. When the stream ends (the engine went away, or ``close`` was called) the loop is
told once, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dockdns.docker")

# "remove" is Podman's "destroy" (its Docker-compatible API reports its own name).
CONTAINER_ACTIONS = ("start", "die", "stop", "destroy", "remove", "rename", "health_status",
                     "pause", "unpause")
NETWORK_ACTIONS = ("create", "connect", "disconnect", "destroy")
# Podman matches the filter against its own event names, and reports some under Docker's:
# its "died" arrives as "die", and without "died" in the filter it never arrives at all. Docker
# matches names it does not have against nothing.
PODMAN_FILTER_NAMES = ("died",)
# Filtered by the engine: a health check runs an exec every interval, and its exec_* events are
# of no interest; neither are image or volume events. (Docker matches "health_status" against
# "health_status: healthy" by prefix.)
EVENT_FILTERS: dict[str, list[str]] = {
    "type": ["container", "network"],
    "event": sorted(set(CONTAINER_ACTIONS + NETWORK_ACTIONS + PODMAN_FILTER_NAMES)),
}


@dataclass(frozen=True, slots=True)
class DockerEvent:
    kind: str  # "container" or "network"
    action: str  # "start", "health_status", "connect", ... (any ": detail" cut off)
    actor: str  # the container or network ID
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> DockerEvent | None:
        """The event in a decoded stream message; None for one that is not of interest."""
        kind = str(message.get("Type") or "")
        action = str(message.get("Action") or "").split(":", 1)[0].strip()
        actor = message.get("Actor") or {}
        wanted = CONTAINER_ACTIONS if kind == "container" else NETWORK_ACTIONS
        if kind not in ("container", "network") or action not in wanted:
            return None
        attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
        return cls(kind, action, str(actor.get("ID") or ""), attributes)


EventSink = Callable[[DockerEvent], None]
EndSink = Callable[[str], None]


class EventPump:
    """Reads one open event stream in a thread; ``close`` ends it from the loop."""

    def __init__(self, stream: Any, loop: asyncio.AbstractEventLoop, on_event: EventSink,
                 on_end: EndSink, name: str) -> None:
        self._stream = stream
        self._loop = loop
        self._on_event = on_event
        self._on_end = on_end
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _pump(self) -> None:
        reason = "the engine closed the event stream"
        try:
            messages: Iterator[Mapping[str, Any]] = iter(self._stream)
            for message in messages:
                event = DockerEvent.from_message(message)
                if event is not None:
                    self._deliver(self._on_event, event)
        except Exception as err:  # whatever the transport raised: the stream is gone either way
            reason = f"event stream failed: {err}"
        if not self._closed:
            self._deliver(self._on_end, reason)

    def _deliver(self, callback: Callable[[Any], None], value: Any) -> None:
        # No queue of our own: each event is one callback on the loop, which runs them as fast
        # as the engine makes them (an event only marks a container stale, ``DockerSource.
        # on_event``), and the stale set holds each container once however many events come.
        # The loop may already be closed when the daemon stops: nothing left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, value)

    def close(self) -> None:
        """End the stream (the blocked read returns) without reporting it as a loss."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._stream.close()
