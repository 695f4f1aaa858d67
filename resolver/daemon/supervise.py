"""Sources never die silently: each source's run loop runs under a supervisor that logs a
failure, counts it (dockdns_source_restarts_total), reports the source failing by name in
/readyz, and starts the source again after a backoff.

Sources catch what they expect themselves (an engine that went away, a file that cannot be
read); this is for what they did not expect, so that a bug in one source costs a restart and a
log line, not discovery for good while /healthz and /readyz say all is well.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from discovery.registry.source import Source
from resolver.ops.logs import printable

log = logging.getLogger("dockdns.sources")

# Backoff between restarts: doubling from 1 s to 60 s, so that a source failing at once on every
# start costs a log line a minute, and one that failed once comes back within a second.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A run that lasted this long before failing starts the backoff afresh.
HEALTHY_AFTER = 60.0


@dataclass
class SourceSupervisor:
    restarts: dict[str, int] = field(default_factory=dict)  # per source name
    failing: dict[str, str] = field(default_factory=dict)  # source name -> why, while failing
    first_backoff: float = FIRST_BACKOFF

    def check(self, source: Source) -> SupervisedCheck:
        self.restarts.setdefault(source.name, 0)
        return SupervisedCheck(self, source.name)

    async def run(self, source: Source) -> None:
        """Run ``source`` until cancelled, restarting it (``start`` then ``run``) on failure."""
        loop = asyncio.get_running_loop()
        backoff = self.first_backoff
        restarting = False
        while True:
            began = loop.time()
            try:
                if restarting:
                    await source.start()
                    self.failing.pop(source.name, None)
                    log.info("source %s restarted", source.name)
                await source.run()
                reason = "its run loop ended"
                log.error("source %s stopped: %s", source.name, reason)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                reason = printable(f"{type(err).__name__}: {err}")
                log.exception("source %s failed (%s); restarting in %.0f s", source.name,
                              reason, backoff)
            if loop.time() - began >= HEALTHY_AFTER:
                backoff = self.first_backoff
            self.failing[source.name] = f"failed ({reason}); restarting in {backoff:.0f} s"
            self.restarts[source.name] = self.restarts.get(source.name, 0) + 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            restarting = True


@dataclass(frozen=True)
class SupervisedCheck:
    """A ``resolver.ops.health.Readiness`` for one supervised source."""

    supervisor: SourceSupervisor
    name: str

    @property
    def ready(self) -> bool:
        return self.name not in self.supervisor.failing

    @property
    def reason(self) -> str:
        return self.supervisor.failing.get(self.name, "")
