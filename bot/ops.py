"""Operations: Prometheus metrics and the /healthz + /metrics endpoint (`ops.http`).

The components count into one `Metrics` (created by the app, injected);
values that live elsewhere (pending posts, sync lag, 429s) are read when
/metrics is scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.commands = Counter(
            "bluehats_commands", "Commands handled, by command", ["command"], registry=registry
        )
        self.reply_seconds = Histogram(
            "bluehats_reply_seconds",
            "From a command's arrival to its answer sent",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.broadcasts = Counter(
            "bluehats_broadcasts",
            "Posts to rooms (reminders, notices, gazette, feed), by outcome",
            ["status"],
            registry=registry,
        )
        self.broadcasts_pending = Gauge(
            "bluehats_broadcasts_pending", "Posts waiting to be sent", registry=registry
        )
        self.sync_lag = Gauge(
            "bluehats_sync_lag_seconds", "Seconds since the last successful sync", registry=registry
        )
        self.rate_limited = Gauge(
            "bluehats_rate_limited_responses",
            "429 answers received from the homeserver since start",
            registry=registry,
        )
        self.source_failures = Counter(
            "bluehats_source_failures",
            "Failed reads of a calendar source or of the feed",
            ["kind"],
            registry=registry,
        )
        self.undecryptable = Counter(
            "bluehats_undecryptable",
            "Encrypted messages that stayed unreadable (sender told)",
            registry=registry,
        )


class OpsServer:
    """/healthz: 200 while syncing, 503 when the sync loop is stuck. /metrics: Prometheus."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        healthy: Callable[[], tuple[bool, str]],
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self._metrics = metrics
        self._healthy = healthy
        self._refresh = refresh
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("ops endpoint on http://%s:%d (/healthz, /metrics)", host, port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        ok, reason = self._healthy()
        return web.Response(status=200 if ok else 503, text=reason + "\n")

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        await self._refresh()
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
