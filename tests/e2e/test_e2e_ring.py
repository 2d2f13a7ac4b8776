"""What rings, on a real Synapse, as the person's own client and homeserver see it.

A personal reminder in an encrypted direct room, once decrypted, is `m.text`
calling its person; a room reminder is a notice that the homeserver's push
rules do not notify (`GET /notifications`), unless `broadcasts.notify: room`
makes it call the room. The reminders are due minutes ahead: the tests move the
bot's clock there (`MovingClock`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import RoomMessageText

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.e2e.test_e2e_notices import soon
from tests.helpers import MovingClock, bot_config, eventually, running, with_moderators

pytestmark = pytest.mark.e2e


async def notifications(hs: DevHomeserver, token: str, *, highlight: bool = False) -> list[Any]:
    """The person's notifications, as their homeserver's push rules made them."""
    query = "?only=highlight" if highlight else ""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{hs.url}/_matrix/client/v3/notifications{query}",
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["notifications"])


async def notified(
    hs: DevHomeserver, token: str, event_id: str, *, highlight: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Once `event_id` is among the person's notifications: its notification,
    and the event ids of all their notifications then."""
    async with asyncio.timeout(30):
        while True:
            found = await notifications(hs, token, highlight=highlight)
            ids = [n["event"]["event_id"] for n in found]
            if event_id in ids:
                return found[ids.index(event_id)], ids
            await asyncio.sleep(0.2)


def text(event: Any) -> str:
    """The body of a message (state events have none)."""
    return str(event.source.get("content", {}).get("body", ""))


def is_reminder(bot_id: str) -> Any:
    def check(event: Any) -> bool:
        return event.sender == bot_id and "⏰ Rappel" in text(event)

    return check


async def test_a_personal_reminder_rings_a_room_reminder_does_not(
    synapse: DevHomeserver, tmp_path: Path, make_user, crypto_user
) -> None:
    ics, start = soon(tmp_path, "Atelier Grist")
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0},  # notify: none, the default
        reminders={"offsets": ["1m"], "personal": "1m"},  # both due 1 minute before
    )
    alice = await make_user("alice")
    cfg = with_moderators(cfg, alice.user_id)
    bob = await crypto_user()
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        # A shared room, unencrypted as Tchap's forums: its homeserver reads
        # the events and applies bob's push rules to them.
        room = await alice.create_room(invite=[bot_id, bob.user_id])
        await alice.wait_joined(room, bot_id)
        await eventually(lambda: room in bob.invites)
        await bob.client.join(room)
        await alice.wait_joined(room, bob.user_id)
        await alice.ask(room, "!abonner rappels", bot_id)

        # Bob asks for a personal reminder with 🔔 on the agenda.
        asked = await bob.say(room, "!agenda")
        listing = await bob.reply_to(room, asked, bot_id)
        await bob.react(room, listing.event_id)
        await eventually(lambda: any(r != room for r in bob.invites))
        direct = next(r for r in bob.invites if r != room)
        await bob.client.join(direct)

        def in_direct(prefix: str) -> list[Any]:
            return [
                e
                for e in bob.events.get(direct, [])
                if e.sender == bot_id and text(e).startswith(prefix)
            ]

        # (1) As his client reads them, decrypted: messages that call him.
        await eventually(lambda: bool(in_direct("🔔 C'est noté")))
        clock.move_to(start - timedelta(minutes=1), app)
        await eventually(lambda: bool(in_direct("⏰ Votre rappel")))
        for event in (*in_direct("🔔 C'est noté"), *in_direct("⏰ Votre rappel")):
            assert event.decrypted and isinstance(event, RoomMessageText)
            assert event.source["content"]["msgtype"] == "m.text"
            assert event.source["content"]["m.mentions"] == {"user_ids": [bob.user_id]}
        assert bob.client.rooms[direct].encrypted

        # (2) The room reminder: a notice, which his push rules do not notify.
        await eventually(lambda: any(map(is_reminder(bot_id), bob.events.get(room, []))))
        reminder = next(filter(is_reminder(bot_id), bob.events[room]))
        assert reminder.source["content"]["msgtype"] == "m.notice"
        # Then a message in the same room that does call him: once it is in his
        # notifications, the reminder (earlier) has been evaluated too.
        called = await alice.ask(room, f"!mentor ajouter {bob.user_id} Grist", bot_id)
        assert called.source["content"]["m.mentions"] == {"user_ids": [bob.user_id]}
        _, seen = await notified(synapse, bob.client.access_token, called.event_id)
        assert reminder.event_id not in seen
        assert listing.event_id not in seen  # a command's answer in a shared room: quiet too


async def test_with_notify_room_a_room_reminder_rings_for_its_members(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    ics, start = soon(tmp_path, "Webinaire Matomo")
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0, "notify": "room"},
        reminders={"offsets": ["1m"]},
    )
    alice = await make_user("alice")
    bob = await make_user("bob")
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        # The bot is a moderator there (50: the room's `notifications.room`).
        room = await alice.create_room(
            invite=[bot_id, bob.user_id], power_level_override={"users": {bot_id: 50}}
        )
        await alice.wait_joined(room, bot_id)
        await bob.client.join(room)
        await alice.ask(room, "!abonner rappels", bot_id)

        clock.move_to(start - timedelta(minutes=1), app)
        reminder = await bob.wait_for(room, is_reminder(bot_id))
        content = reminder.source["content"]
        assert content["msgtype"] == "m.text" and content["m.mentions"] == {"room": True}
        assert content["body"].startswith("@room ⏰ Rappel : « Webinaire Matomo »")
        # In bob's notifications, as a highlight (`.m.rule.is_room_mention`).
        found, _ = await notified(
            synapse, bob.client.access_token, reminder.event_id, highlight=True
        )
        assert {"set_tweak": "highlight"} in found["actions"]
