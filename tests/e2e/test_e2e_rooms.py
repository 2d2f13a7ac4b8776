"""Rooms as they live, on a real Synapse: a room that kicks the bot, a person who
leaves their direct room, a room upgraded by its admin. The reminders are due
minutes ahead: the tests move the bot's clock there (`MovingClock`)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import RoomKickResponse, RoomLeaveResponse

from bot.app import DB_FILE, BotApp
from bot.devserver import DevHomeserver
from tests.e2e.test_e2e_notices import body, soon
from tests.helpers import MovingClock, bot_config, eventually, running

pytestmark = pytest.mark.e2e


def rows(storage: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """What the bot's database holds (read with its own connection)."""
    with sqlite3.connect(storage / DB_FILE) as db:
        return db.execute(query, args).fetchall()


def body_of(event: Any) -> str:
    return str(event.source.get("content", {}).get("body", ""))


def from_bot(events: list[Any], bot_id: str, prefix: str) -> list[Any]:
    return [e for e in events if e.sender == bot_id and body_of(e).startswith(prefix)]


async def test_a_room_that_kicks_the_bot_gets_nothing_more(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    ics, start = soon(tmp_path, "Webinaire Matomo")
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(
        synapse,
        storage,
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": ["1m"]},
    )
    alice = await make_user("alice")
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        kicked = await alice.create_room(invite=[bot_id])
        kept = await alice.create_room(invite=[bot_id])
        for room in (kicked, kept):
            await alice.wait_joined(room, bot_id)
            ok = await alice.ask(room, "!abonner rappels", bot_id)
            assert body(ok).startswith("✅")
        resp = await alice.client.room_kick(kicked, bot_id, reason="plus besoin")
        assert isinstance(resp, RoomKickResponse), resp
        await eventually(
            lambda: bool(rows(storage, "SELECT 1 FROM subscription_audit WHERE action = 'ended'"))
        )

        clock.move_to(start - timedelta(minutes=1), app)
        reminder = await alice.wait_for(kept, lambda e: bool(from_bot([e], bot_id, "⏰")))
        assert "« Webinaire Matomo » commence dans 1 minute" in body(reminder)
        listing = await alice.ask(kept, "!abonnements", bot_id)
        assert body(listing).startswith("Ce salon reçoit : les rappels")
        await alice.sync(500)
        assert not from_bot(alice.events.get(kicked, []), bot_id, "⏰")
    # Nothing was even tried there: no outbox row, the subscription ended (audited).
    assert rows(storage, "SELECT status FROM outbox WHERE room_id = ?", kicked) == []
    assert rows(storage, "SELECT status FROM outbox WHERE room_id = ?", kept) == [("sent",)]
    assert rows(storage, "SELECT kind FROM subscriptions") == [("rappels",)]
    assert rows(
        storage,
        "SELECT kind, action, actor, detail FROM subscription_audit WHERE room_id = ? ORDER BY id",
        kicked,
    ) == [
        ("rappels", "subscribed", alice.user_id, ""),
        ("rappels", "ended", alice.user_id, f"kicked by {alice.user_id}: plus besoin"),
    ]


async def test_a_person_who_left_their_direct_room_gets_the_next_reminder_in_a_new_one(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    ics, start = soon(tmp_path, "Atelier Grist")
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(
        synapse,
        storage,
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": [], "personal": "1m"},
    )
    alice = await crypto_user()
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda")
        listing = await alice.reply_to(room, asked, bot_id)
        await alice.react(room, listing.event_id)  # 🔔: a direct room, a reminder
        await eventually(lambda: bool(alice.invites))
        first = alice.invites[0]
        await alice.client.join(first)
        await eventually(lambda: bool(from_bot(alice.events.get(first, []), bot_id, "🔔")))

        # She leaves it: the bot forgets it (and leaves too).
        left = await alice.client.room_leave(first)
        assert isinstance(left, RoomLeaveResponse), left
        await eventually(
            lambda: rows(storage, "SELECT room_id FROM direct_rooms WHERE room_id = ?", first) == []
        )
        # The reminder falls due: a new direct room, where it arrives.
        clock.move_to(start - timedelta(minutes=1), app)
        await eventually(lambda: len(alice.invites) == 2)
        second = alice.invites[1]
        assert second != first
        await alice.client.join(second)
        await eventually(
            lambda: bool(from_bot(alice.events.get(second, []), bot_id, "⏰ Votre rappel"))
        )
        (reminder,) = from_bot(alice.events[second], bot_id, "⏰ Votre rappel")
        assert "« Atelier Grist » commence dans 1 minute" in body(reminder)
        assert not from_bot(alice.events.get(first, []), bot_id, "⏰")
    assert rows(storage, "SELECT room_id FROM direct_rooms") == [(second,)]
    assert rows(storage, "SELECT room_id, status FROM outbox") == [(second, "sent")]


async def upgrade(synapse: DevHomeserver, token: str, room_id: str, version: str) -> str:
    """`POST /rooms/{id}/upgrade`, as a room admin's client does; the new room."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{synapse.url}/_matrix/client/v3/rooms/{room_id}/upgrade",
            json={"new_version": version},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        answer = await resp.json()
        assert resp.status == 200, answer
        return str(answer["replacement_room"])


async def test_an_upgraded_room_keeps_its_reminders_in_the_new_room(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    ics, start = soon(tmp_path, "Webinaire Matomo")
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(
        synapse,
        storage,
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": ["1m"]},
    )
    alice = await make_user("alice")
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        old = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(old, bot_id)
        assert body(await alice.ask(old, "!abonner rappels", bot_id)).startswith("✅")

        new = await upgrade(synapse, alice.client.access_token, old, "10")
        # A private room: the bot needs an invite to the new one, which her
        # client sends ("invite the members of the old room", as in Element).
        await alice.client.room_invite(new, bot_id)
        await alice.wait_joined(new, bot_id)

        def moved(e: Any) -> bool:
            return bool(from_bot([e], bot_id, "🔀"))

        notice = await alice.wait_for(new, moved)
        assert body(notice) == (
            "🔀 Ce salon remplace un salon mis à niveau, je l'ai suivi ici : il reçoit "
            "désormais les rappels (avant chaque séance) et les avis de changement de programme."
        )
        clock.move_to(start - timedelta(minutes=1), app)
        reminder = await alice.wait_for(new, lambda e: bool(from_bot([e], bot_id, "⏰")))
        assert "« Webinaire Matomo »" in body(reminder)
        listing = await alice.ask(new, "!abonnements", bot_id)
        assert body(listing).startswith("Ce salon reçoit : les rappels")
        # The reminder went out in a later round of the broadcaster than the notice:
        # the notice was not sent again.
        assert len([e for e in alice.events[new] if moved(e)]) == 1
        assert not from_bot(alice.events.get(old, []), bot_id, "⏰")
    assert rows(storage, "SELECT room_id, kind FROM subscriptions") == [(new, "rappels")]
    assert rows(storage, "SELECT new_room, status FROM room_upgrades") == [(new, "moved")]


async def test_after_a_restart_quiet_rooms_are_not_taken_for_empty_ones(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    """Members are lazy-loaded and Synapse sends no member counts at a restart's
    sync: a quiet room must not start the clock that makes the bot leave it."""
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(synapse, storage)
    alice = await make_user("alice")
    bob = await make_user("bob")
    async with running(BotApp(cfg)):
        quiet = await alice.create_room(invite=[bot_id])
        emptied = await bob.create_room(invite=[bot_id])
        for user, room in ((alice, quiet), (bob, emptied)):
            await user.wait_joined(room, bot_id)
            await user.ask(room, "!aide", bot_id)
    # While the bot is down, Bob leaves his room: the bot is alone there.
    assert isinstance(await bob.client.room_leave(emptied), RoomLeaveResponse)

    started = datetime.now(UTC)
    async with running(BotApp(cfg)) as app:
        assert app.scheduler is not None
        check = app.scheduler.get_job("check-rooms")

        def checked_once() -> bool:
            return check.next_run_time > started + timedelta(seconds=30)

        await eventually(checked_once)
        await asyncio.sleep(1)
        alone = {room for (room,) in rows(storage, "SELECT room_id FROM alone_rooms")}
        assert alone == {emptied}
        # And the quiet room still gets answers.
        assert "!agenda" in body(await alice.ask(quiet, "!aide", bot_id))
