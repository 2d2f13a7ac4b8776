"""A fan-out against a homeserver that rate-limits hard: 429s waited out, nothing lost."""

from __future__ import annotations

import asyncio
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot import config as configuration
from bot.agenda.sources import AgendaService
from bot.broadcast import TXN_PREFIX, Broadcaster
from bot.devserver import DevHomeserver
from bot.matrix import MatrixChat
from bot.render import Renderer
from bot.storage import GAZETTE, Storage
from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e

ROOMS = 8
TZ = ZoneInfo("Europe/Paris")


async def test_rate_limited_fan_out_waits_and_loses_nothing(tmp_path: Path) -> None:
    # 3 messages at once, then one every 2 s: most of the 8 posts get a 429 first.
    limits = {"rc_message": {"per_second": 0.5, "burst_count": 3}}
    with DevHomeserver(tmp_path / "synapse", limits=limits) as hs:
        admin_id = hs.register("admin", PASSWORD, admin=True)
        admin = hs.login(admin_id, PASSWORD)
        bot_id = hs.register("bot", PASSWORD)
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD},
                "storage": {"path": str(tmp_path / "data")},
                "agenda": {"sources": []},
            },
            env={},
        )
        (tmp_path / "data").mkdir()
        storage = await Storage.open(tmp_path / "data" / "bluehats.db")
        chat = MatrixChat(cfg.matrix, tmp_path / "data", storage)
        async with aiohttp.ClientSession() as http:
            try:
                await chat.connect()
                hs.override_ratelimit(admin, bot_id, unlimited=True)
                rooms = []
                for _ in range(ROOMS):
                    resp = await chat.client.room_create(name="gazette")
                    rooms.append(resp.room_id)  # type: ignore[union-attr]
                    await storage.subscribe(resp.room_id, GAZETTE, admin_id)  # type: ignore[union-attr]
                hs.override_ratelimit(admin, bot_id, unlimited=False)

                async def ignore(_message: object) -> None:
                    return None

                chat.on_message = ignore
                sync = asyncio.create_task(chat.run())
                await asyncio.wait_for(chat.synced.wait(), 60)
                now = datetime.now(UTC)
                broadcaster = Broadcaster(
                    storage,
                    chat,
                    Renderer("fr", TZ),
                    AgendaService([], storage, http, TZ, timedelta(days=30), lambda: now),
                    prefix="!",
                    now=lambda: now,
                    pace=timedelta(0),  # the bot's own pacing off: only the server limits
                    offsets=[],
                    grace=timedelta(minutes=15),
                    retry_delay=0.1,
                )
                await storage.queue_broadcast("gazette:test", GAZETTE, TXN_PREFIX)
                sent = await asyncio.wait_for(broadcaster.deliver(), 120)
                sync.cancel()
                statuses = await storage.outbox_status("gazette:test")
                token = str(chat.client.access_token)
            finally:
                await chat.close()
                await storage.close()

        def posts(room_id: str) -> list[str]:
            page = hs.call(
                "GET",
                f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=50",
                token=token,
            )
            return [
                e["content"]["body"]
                for e in page["chunk"]
                if e["type"] == "m.room.message" and e["sender"] == bot_id
            ]

        bodies = [posts(room) for room in rooms]

    assert chat.rate_limited > 0  # the homeserver did push back
    assert sent == ROOMS
    assert set(statuses.values()) == {"sent"}
    assert [len(b) for b in bodies] == [1] * ROOMS  # each room exactly one post
    assert all("gazette BlueHats" in b[0] for b in bodies)
