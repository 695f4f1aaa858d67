"""The HTTP endpoints on --metrics-listen: /metrics, /healthz and /readyz."""

from __future__ import annotations

from resolver.ops.health import Health
from resolver.ops.http import Response, Route
from resolver.ops.metrics import Metrics


def routes(metrics: Metrics, health: Health) -> dict[str, Route]:
    def metrics_page(headers: dict[str, str]) -> Response:
        body, content_type = metrics.exposition(headers.get("accept", ""))
        return Response(200, body, content_type)

    def healthz(headers: dict[str, str]) -> Response:
        alive, reason = health.live()
        return Response(200 if alive else 503, reason.encode() + b"\n")

    def readyz(headers: dict[str, str]) -> Response:
        ready, reason = health.ready()
        return Response(200 if ready else 503, reason.encode() + b"\n")

    return {"/metrics": metrics_page, "/healthz": healthz, "/readyz": readyz}
