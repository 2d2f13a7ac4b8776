"""The bot SIGKILLed in the middle of a fan-out to 20 rooms: after a restart each room has one."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import RoomMemberEvent

from bot.devserver import DevHomeserver
from tests.helpers import bot_process, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.long(50)]

ROOMS = 20


def notices(user: Any, room: str, bot_id: str) -> list[Any]:
    return [
        e
        for e in user.events.get(room, [])
        if e.sender == bot_id
        and str(e.source.get("content", {}).get("body", "")).startswith("⚠️ Changement")
    ]


def has_joined(user: Any, room: str, member: str) -> bool:
    """Whether `user`'s sync has shown `member` joining `room`."""
    return any(
        isinstance(e, RoomMemberEvent) and e.state_key == member and e.membership == "join"
        for e in user.events.get(room, [])
    )


def statuses(storage: Path) -> list[tuple[str, int]]:
    """The change notice's outbox rows, counted by status."""
    with sqlite3.connect(storage / "bluehats.db") as db:
        return db.execute(
            "SELECT status, count(*) FROM outbox WHERE broadcast LIKE 'change:%' GROUP BY status"
        ).fetchall()


async def test_sigkill_during_fan_out_no_duplicate_no_loss(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    alice = await make_user("alice")
    bot, bot_id, storage, _ = bot_process(
        synapse,
        tmp_path,
        bot={"moderators": [alice.user_id]},
        # Slow enough to be killed in the middle of the 20 posts.
        broadcasts={"pace": 0.3},  # seconds
        reminders={"offsets": []},  # only the change notice in this test
    )
    rooms = list(await asyncio.gather(*(alice.create_room(invite=[bot_id]) for _ in range(ROOMS))))
    await bot.start()
    async with asyncio.timeout(90):  # the bot joins one room a second
        while not all(has_joined(alice, room, bot_id) for room in rooms):
            await alice.sync(1000)
    # Typed in the 20 rooms at once; each answered.
    asked = [await alice.send(room, "!abonner rappels") for room in rooms]
    for room, event_id in zip(rooms, asked, strict=True):
        await alice.reply_to(room, event_id, bot_id)

    day = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=4)
    added = await alice.ask(rooms[0], f'!session ajouter {day:%d/%m/%Y} 10h-11h "Café"', bot_id)
    found = re.search(r"Identifiant : (\w+)", added.source["content"]["body"])
    assert found
    sid = found.group(1)
    await alice.ask(rooms[0], f"!session modifier {sid} 11h-12h", bot_id)

    async with asyncio.timeout(60):
        while sum(1 for r in rooms if notices(alice, r, bot_id)) < 3:
            await alice.sync(200)
    await bot.kill()
    with sqlite3.connect(storage / "bluehats.db") as db:
        pending = db.execute(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND broadcast LIKE 'change:%'"
        ).fetchone()[0]
    assert 0 < pending < ROOMS  # killed in the middle

    await bot.start()
    async with asyncio.timeout(90):
        while not all(notices(alice, r, bot_id) for r in rooms):
            await alice.sync(500)
    # Each row marked sent: the bot has nothing left to post. Stopped then,
    # what the rooms hold is all it will ever have posted (no wait for a
    # late duplicate).
    await eventually(lambda: statuses(storage) == [("sent", ROOMS)])
    assert await bot.terminate() == 0
    await alice.sync(0)
    assert [len(notices(alice, r, bot_id)) for r in rooms] == [1] * ROOMS
    assert statuses(storage) == [("sent", ROOMS)]
    assert "Traceback" not in bot.log.read_text()
