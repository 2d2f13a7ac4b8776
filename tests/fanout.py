"""A gazette fan-out on a real Synapse, for the rate-limit test, bench/fanout.py and
bench/gazette.py (a real issue: drafted, approved, published by the gazette desk).

A test harness, kept out of the wheel; the benchmark imports it from here, as
bench/agenda_core.py imports `tests.fakes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

import aiohttp
from nio import RoomCreateResponse

from bot import config as configuration
from bot.agenda.sources import AgendaService
from bot.broadcast import Broadcaster
from bot.broadcasts.registry import parse
from bot.config import GazetteConfig
from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.devserver import DevHomeserver, DevServerError
from bot.gazette.desk import Desk
from bot.gazette.schedule import GazetteSchedule
from bot.matrix.client import MatrixChat
from bot.render import Renderer

# How a published issue's body begins (then its number).
ISSUE_HEADER = "🧢 Gazette BlueHats n°"


class GazetteFanOut:
    """The bot's account with N rooms subscribed to the gazette, for a fan-out on `hs`.

    Used by bench/fanout.py and the rate-limit test: the real `MatrixChat`,
    `Storage` and `Broadcaster`. The rooms are created by the bot with its
    rate limits lifted (admin API), then restored to the server's.
    """

    def __init__(self, hs: DevHomeserver, work: Path, *, pace: float = 0.0) -> None:
        self.hs = hs
        self.work = work
        self.pace = pace
        self.rooms: list[str] = []

    async def __aenter__(self) -> Self:
        password = secrets.token_hex(8)
        # Names of their own: the homeserver may be the tests' shared one.
        tag = secrets.token_hex(4)
        self.admin_id = self.hs.register(f"admin{tag}", password, admin=True)
        self.admin = self.hs.login(self.admin_id, password)
        self.bot_id = self.hs.register(f"bot{tag}", password)
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": self.hs.url, "user_id": self.bot_id, "password": password},
                "storage": {"path": str(self.work / "data")},
                "agenda": {"sources": []},
            },
            env={},
        )
        (self.work / "data").mkdir(parents=True, exist_ok=True)
        self.storage = await Storage.open(self.work / "data" / "bluehats.db")
        self.chat = MatrixChat(cfg.matrix, self.work / "data", self.storage)
        self._http = aiohttp.ClientSession()
        await self.chat.connect()
        tz = ZoneInfo("Europe/Paris")

        def now() -> datetime:
            return datetime.now(UTC)

        self.renderer = Renderer("fr", tz)
        self.agenda = AgendaService([], self.storage, self._http, tz, timedelta(days=30), now)
        # An editors' room that is never written to: issues are published by hand here.
        editors = GazetteConfig(editors_room="!editors:localhost")
        self.desk = Desk(self.storage, self.renderer, self.agenda, editors, prefix="!", now=now)
        self.broadcaster = Broadcaster(
            self.storage,
            self.chat,
            self.renderer,
            self.agenda,
            prefix="!",
            now=now,
            pace=timedelta(seconds=self.pace),
            offsets=[],
            grace=timedelta(minutes=15),
            retry_delay=0.5,
            gazette=GazetteSchedule(self.desk, "!editors:localhost"),
        )
        return self

    async def create_rooms(self, n: int) -> list[str]:
        self.hs.override_ratelimit(self.admin, self.bot_id, unlimited=True)
        gate = asyncio.Semaphore(8)

        async def create() -> str:
            async with gate:
                resp = await self.chat.client.room_create(name="gazette")
                if not isinstance(resp, RoomCreateResponse):
                    raise DevServerError(f"room not created: {resp}")
                return str(resp.room_id)

        try:
            self.rooms = list(await asyncio.gather(*(create() for _ in range(n))))
        finally:
            self.hs.override_ratelimit(self.admin, self.bot_id, unlimited=False)
        for room_id in self.rooms:
            await self.storage.subscriptions.add(room_id, GAZETTE, self.admin_id)
        return self.rooms

    def limit_messages(self, per_second: float, burst: int) -> None:
        """The homeserver's message limit for the bot alone, as a stricter
        `rc_message` would set it: the admin API's non-zero per-user values
        apply to the event-sending limiter only (synapse/api/ratelimiting.py)."""
        self.hs.call(
            "POST",
            f"/_synapse/admin/v1/users/{urllib.parse.quote(self.bot_id)}/override_ratelimit",
            {"messages_per_second": per_second, "burst_count": burst},
            token=self.admin,
        )

    async def sync(self) -> None:
        """Start the bot's sync loop (nio sends only to rooms it has synced)."""

        async def ignore(_message: object) -> None:
            return None

        self.chat.handlers.on_message = ignore
        self._sync = asyncio.create_task(self.chat.run())
        await asyncio.wait_for(self.chat.synced.wait(), 600)

    async def post(self, broadcast: str = "gazette:test") -> tuple[int, dict[str, str]]:
        """Queue one gazette post to every room and deliver it: (sent, status by room)."""
        await self.storage.outbox.queue_for_subscribers(parse(broadcast), GAZETTE)
        sent = await self.broadcaster.deliver()
        return sent, await self.storage.outbox.status(broadcast)

    async def publish_issue(
        self, text: str = "Un **élément** de [la gazette](https://code.gouv.fr/)"
    ) -> int:
        """An issue drafted with one item by an editor, approved by another and
        published (its rows queued, not sent): its number."""
        draft, _ = await self.desk.build("@editor1:localhost")
        stamp = int(datetime.now(UTC).timestamp())
        assert await self.storage.gazette.add_item(
            draft, self.desk.config.sections[0], text, "@editor1:localhost", stamp
        )
        draft = await self.storage.gazette.draft()
        assert draft is not None
        await self.storage.gazette.approve(draft.target, "@editor2:localhost", draft.number, stamp)
        queued = await self.desk.publish(draft, "@editor2:localhost")
        if queued != len(self.rooms):
            raise DevServerError(
                f"issue {draft.number} queued for {queued} of {len(self.rooms)} rooms"
            )
        return draft.number

    async def deliver(self, broadcast: str) -> tuple[int, dict[str, str]]:
        """Deliver what is queued: (sent, status by room of `broadcast`)."""
        sent = await self.broadcaster.deliver()
        return sent, await self.storage.outbox.status(broadcast)

    def posts(self, room_id: str) -> list[str]:
        """The bodies of the bot's messages in a room, read back from the server."""
        page = self.hs.call(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=50",
            token=str(self.chat.client.access_token),
        )
        return [
            str(e["content"].get("body", ""))
            for e in page["chunk"]
            if e["type"] == "m.room.message" and e["sender"] == self.bot_id
        ]

    async def __aexit__(self, *exc: object) -> None:
        sync = getattr(self, "_sync", None)
        if sync is not None:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
        await self._http.close()
        await self.chat.close()
        await self.storage.close()
