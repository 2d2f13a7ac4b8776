"""Operations: Prometheus metrics and the /healthz + /metrics endpoint (`ops.http`).

The components count into one `Metrics` (created by the app, injected);
values that live elsewhere (pending posts, sync lag, 429s) are read when
/metrics is scraped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot.chat import ChatClient, SendError
from bot.matrix.session_state import State
from bot.render import Renderer

if TYPE_CHECKING:
    from aiohttp import web

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
        self.cross_signed = Gauge(
            "bluehats_identity_cross_signed",
            "1 when the bot's device is signed by its cross-signing identity (MSC4153)",
            registry=registry,
        )
        self.commands_limited = Counter(
            "bluehats_commands_limited",
            "Commands dropped over a limit (bot.limits), by the limit: sender or room",
            ["limit"],
            registry=registry,
        )
        self.session_state = Gauge(
            "bluehats_session_state",
            "1 for the state the bot's session is in: ok, expired (account to renew), revoked "
            "(token to replace)",
            ["state"],
            registry=registry,
        )
        self.set_session_state(State.OK)
        self.abandoned = Counter(
            "bluehats_outbox_abandoned",
            "Answers (reply) and posts (broadcast) not sent again after a long outage or from "
            "a new device: tried before, they may have gone out, and the room could not tell",
            ["kind"],
            registry=registry,
        )
        self.undecryptable = Counter(
            "bluehats_undecryptable",
            "Encrypted messages that stayed unreadable (sender told)",
            registry=registry,
        )

    def set_session_state(self, state: State) -> None:
        for each in State:
            self.session_state.labels(each.value).set(int(each is state))


class OpsServer:
    """/healthz: 200 while syncing ("degraded: …" when not cross-signed), 503 when the
    sync loop is stuck. /metrics: Prometheus."""

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
        from aiohttp import web  # the server side of aiohttp: only when `ops.http` is set

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
        from aiohttp import web

        ok, reason = self._healthy()
        return web.Response(status=200 if ok else 503, text=reason + "\n")

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        await self._refresh()
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass(frozen=True, slots=True)
class Alert:
    at: datetime
    level: str
    logger: str
    message: str


# Sources whose warnings (a calendar or the feed failing) are worth an alert.
ALERT_WARNINGS_FROM = ("bot.agenda.sources", "bot.feeds")
# At most this many lines in one post; the rest are counted.
ALERT_LINES = 10
# Alerts kept while the error room cannot be reached.
ALERTS_KEPT = 100


class ErrorRoom(logging.Handler):
    """Posts unexpected errors and failing sources to `ops.error_room`, rate-limited.

    A logging handler on the `bot` logger: errors from anywhere in the bot, and
    the warnings of failing calendar sources or feed. Only the log message is
    posted (never the traceback, and the bot never logs secrets); a command's
    error carries the same reference id as the answer the user got. The first
    alert goes at once; those that follow within `every` are gathered into
    the next post.
    """

    def __init__(self, room_id: str, chat: ChatClient, renderer: Renderer, every: float) -> None:
        super().__init__(logging.WARNING)
        self.room_id = room_id
        self._chat = chat
        self._renderer = renderer
        self._every = every
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Alert] = asyncio.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(__name__):
            return  # never about itself: a failing post must not loop
        if record.levelno < logging.ERROR and not record.name.startswith(ALERT_WARNINGS_FROM):
            return
        try:
            alert = Alert(
                datetime.fromtimestamp(record.created, UTC),
                record.levelname,
                record.name,
                record.getMessage(),
            )
            # Records may come from worker threads (parsing).
            self._loop.call_soon_threadsafe(self._queue.put_nowait, alert)
        except Exception:  # a handler must never raise into the caller
            self.handleError(record)

    async def run(self) -> None:
        """Post until cancelled; a post that fails for now is retried with the next."""
        batch: list[Alert] = []
        dropped = 0
        while True:
            if not batch:
                batch.append(await self._queue.get())
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if len(batch) > ALERTS_KEPT:  # the room unreachable for long: keep the latest
                dropped += len(batch) - ALERTS_KEPT
                batch = batch[-ALERTS_KEPT:]
            if await self._post(batch, dropped):
                batch, dropped = [], 0
            await asyncio.sleep(self._every)

    async def _post(self, batch: list[Alert], dropped: int) -> bool:
        """True when posted, or when posting there can never work (then logged)."""
        shown = batch[:ALERT_LINES]
        message = self._renderer.render(
            "alert",
            alerts=[(self._renderer.local(a.at).strftime("%H:%M:%S"), a) for a in shown],
            more=len(batch) - len(shown) + dropped,
        )
        try:
            await self._chat.send_message(
                self.room_id, message, txn_id=f"bh-alert-{secrets.token_hex(12)}"
            )
        except SendError as exc:
            log.warning("cannot post %d alert(s) to %s: %s", len(batch), self.room_id, exc)
            return exc.permanent
        return True
