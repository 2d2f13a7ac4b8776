"""The homeserver stops under the running bot and comes back.

The bot backs off, resumes, and no command answer is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.conftest import User, bot_config, running, unique

pytestmark = pytest.mark.e2e

DOWNTIME_S = 20


async def test_homeserver_restart_under_the_bot(tmp_path: Path) -> None:
    with DevHomeserver(tmp_path / "synapse") as hs:
        cfg, bot_id = bot_config(hs, tmp_path / "bot")
        alice = await User(hs, unique("alice")).login()
        try:
            async with running(BotApp(cfg)) as app:
                room = await alice.create_room(invite=[bot_id])
                await alice.wait_joined(room, bot_id)
                before_id = await alice.send(room, "!aide")
                await alice.reply_to(room, before_id, bot_id)
                # A command sent just before the server goes away: the bot may
                # or may not have seen it; either way it is answered once.
                last = await alice.send(room, "!agenda")
                hs.stop()
                await asyncio.sleep(DOWNTIME_S)
                assert app.chat is not None and not app.chat.syncing_recently(10)
                hs.start()

                after_id = await alice.send(room, "!prochain")
                await alice.reply_to(room, after_id, bot_id, timeout=120)
                await alice.reply_to(room, last, bot_id, timeout=60)
                for _ in range(3):
                    await alice.sync(500)
                answers = [
                    e
                    for e in alice.events[room]
                    if e.sender == bot_id and e.source["content"].get("msgtype") == "m.notice"
                ]
                replied_to = [
                    e.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
                    for e in answers
                ]
                # Each of the three commands answered, none twice.
                assert sorted(replied_to) == sorted([before_id, last, after_id])
                assert app.chat.syncing_recently(10)
        finally:
            with contextlib.suppress(Exception):
                await alice.close()
