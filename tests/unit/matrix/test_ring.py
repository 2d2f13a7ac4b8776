"""What rings: a message meant for one person calls them (`m.text` with
`m.mentions`), a room's broadcasts stay quiet notices unless
`broadcasts.notify: room` (and the bot may call @room there)."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.chat import IncomingMessage, IncomingReaction
from bot.matrix.sending import message_content, replacement
from bot.permissions import notification_level
from bot.render import Message
from tests.fakes import MOD, ROOMS, START, WORLD_NOW, Sent, World, grist, make_config

MEMBER = "@agent:example.org"
CAMILLE = "@camille:example.org"
DM = "!dm-agent:example.org"


def wire(sent: Sent) -> dict[str, Any]:
    """The `m.room.message` content the Matrix adapter sends for this message."""
    assert isinstance(sent.message, Message)
    content = message_content(sent.message)
    return replacement(content, sent.replaces) if sent.replaces else content


def quiet(content: dict[str, Any]) -> bool:
    return content["msgtype"] == "m.notice" and content["m.mentions"] == {}


def rings_for(content: dict[str, Any], user_id: str) -> bool:
    return content["msgtype"] == "m.text" and content["m.mentions"] == {"user_ids": [user_id]}


async def typed(
    w: World, text: str, event_id: str, room: str = ROOMS[0], sender: str = MEMBER, **more: Any
) -> list[Sent]:
    """A command through the whole path (inbox, answer, send); what was sent."""
    before = len(w.chat.sent)
    ts = int(WORLD_NOW.timestamp() * 1000)
    await w.dispatcher.accept(IncomingMessage(room, event_id, sender, text, ts=ts, **more))
    await w.dispatcher.drain()
    return w.chat.sent[before:]


async def test_a_personal_reminder_rings_for_its_person_only(world: World) -> None:
    sid = grist(world)
    (confirmed,) = await typed(world, f"!rappelle-moi {sid}", "$ask")
    assert confirmed.room_id == ROOMS[0] and quiet(wire(confirmed))  # answered in the room
    ((_, dm),) = world.chat.direct_rooms
    await world.storage.subscriptions.add(ROOMS[1], "rappels", MOD)
    world.chat.levels[(ROOMS[1], world.chat.user_id)] = 100
    # Even with the rooms' broadcasts ringing, the personal one calls its person, not a room.
    broadcaster = world.broadcaster(offsets=(timedelta(minutes=15),), notify="room")
    world.clock.value = START - timedelta(minutes=14)
    assert await broadcaster.deliver() == 2
    (personal,) = [s for s in world.chat.sent if s.room_id == dm]
    content = wire(personal)
    assert rings_for(content, MEMBER)
    assert content["body"].startswith("⏰ Votre rappel : « Webinaire Grist »")
    (in_room,) = [s for s in world.chat.sent if s.room_id == ROOMS[1]]
    assert wire(in_room)["m.mentions"] == {"room": True}


async def test_answers_in_the_direct_room_ring_and_their_edits_do_not_ring_again(
    world: World,
) -> None:
    await world.storage.personal.set_direct_room(MEMBER, DM)
    (answer,) = await typed(world, "!agneda", "$c", room=DM)
    assert answer.room_id == DM and rings_for(wire(answer), MEMBER)
    # The person edits the command: the answer is edited in place, still a
    # call (its kind kept), but the edit itself calls no one.
    (edited,) = await typed(world, "!aide", "$e", room=DM, replaces="$c")
    assert edited.replaces == answer.event_id
    content = wire(edited)
    assert content["msgtype"] == "m.text" and content["m.mentions"] == {}
    assert content["m.new_content"]["m.mentions"] == {"user_ids": [MEMBER]}
    # The same command in a shared room: a quiet notice.
    (in_room,) = await typed(world, "!agneda", "$c2")
    assert in_room.room_id == ROOMS[0] and quiet(wire(in_room))


async def test_a_private_answer_rings_in_the_direct_room_its_pointer_stays_quiet(
    world: World,
) -> None:
    private, pointer = await typed(world, "!mes-donnees", "$data")
    ((_, dm),) = world.chat.direct_rooms
    assert private.room_id == dm and rings_for(wire(private), MEMBER)
    assert "Ce que le bot garde à votre sujet" in wire(private)["body"]
    assert pointer.room_id == ROOMS[0] and quiet(wire(pointer))
    assert wire(pointer)["body"] == "🔒 Je vous ai répondu en message privé."


async def test_the_bell_confirmation_in_the_direct_room_rings(world: World) -> None:
    (listing,) = await typed(world, "!agenda", "$agenda", sender=MOD)
    assert quiet(wire(listing))
    await world.dispatcher.accept_reaction(
        IncomingReaction(ROOMS[0], "$bell", MEMBER, listing.event_id, "🔔")
    )
    await world.dispatcher.drain()
    ((_, dm),) = world.chat.direct_rooms
    confirmation = world.chat.sent[-1]
    assert confirmation.room_id == dm and rings_for(wire(confirmation), MEMBER)
    assert wire(confirmation)["body"].startswith("🔔 C'est noté")


async def test_a_new_mentor_is_called_a_listing_of_mentors_calls_no_one(world: World) -> None:
    world.chat.names[CAMILLE] = "Camille Dupont"
    (added,) = await typed(world, f"!mentor ajouter {CAMILLE} Grist", "$add", sender=MOD)
    content = wire(added)
    assert rings_for(content, CAMILLE)  # her, not the moderator who typed it
    assert (
        f'<a href="https://matrix.to/#/{CAMILLE}">Camille Dupont</a>' in content["formatted_body"]
    )
    (listing,) = await typed(world, "!mentors grist", "$list")
    assert "Camille Dupont" in wire(listing)["body"] and quiet(wire(listing))


async def rooms_reminded(world: World, notify: str) -> dict[str, dict[str, Any]]:
    """A reminder an hour before the webinar, to the three rooms subscribed:
    the content each got."""
    for room in ROOMS:
        await world.storage.subscriptions.add(room, "rappels", MOD)
    broadcaster = world.broadcaster(offsets=(timedelta(hours=1),), notify=notify)  # type: ignore[arg-type]
    world.clock.value = START - timedelta(minutes=59)
    assert await broadcaster.deliver() == 3
    return {s.room_id: wire(s) for s in world.chat.sent}


async def test_room_reminders_are_quiet_notices_by_default(world: World) -> None:
    for room in ROOMS:
        world.chat.levels[(room, world.chat.user_id)] = 100
    sent = await rooms_reminded(world, "none")
    assert all(quiet(content) for content in sent.values())
    assert all(content["body"].startswith("⏰ Rappel") for content in sent.values())


async def test_with_notify_room_reminders_call_the_room_where_the_bot_may(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    bot = world.chat.user_id
    world.chat.levels[(ROOMS[0], bot)] = 50  # the default `notifications.room`: enough
    world.chat.levels[(ROOMS[1], bot)] = 50
    world.chat.room_mention_levels[ROOMS[1]] = 100  # this room asks more
    # ROOMS[2]: the bot has no power there (0).
    caplog.set_level(logging.INFO, logger="bot.broadcast")
    sent = await rooms_reminded(world, "room")

    called = sent[ROOMS[0]]
    assert called["msgtype"] == "m.text" and called["m.mentions"] == {"room": True}
    # "@room" in the text too, for the legacy `.m.rule.roomnotif`.
    assert called["body"].startswith("@room ⏰ Rappel : « Webinaire Grist »")
    assert called["formatted_body"].startswith("<p>@room <strong>⏰ Rappel")
    assert quiet(sent[ROOMS[1]]) and quiet(sent[ROOMS[2]])
    assert "@room" not in sent[ROOMS[1]]["body"]
    told = [r.getMessage() for r in caplog.records if "stay quiet notices" in r.getMessage()]
    assert sorted(told) == [
        f"broadcasts: posts to {ROOMS[1]} stay quiet notices: @room needs power level 100"
        " there, the bot has 50",
        f"broadcasts: posts to {ROOMS[2]} stay quiet notices: @room needs power level 50"
        " there, the bot has 0",
    ]


async def test_below_the_level_said_once_per_room_then_calls_once_promoted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A programme change after the reminder: the same room, not told twice."""
    await world.storage.subscriptions.add(ROOMS[1], "rappels", MOD)
    caplog.set_level(logging.INFO, logger="bot.broadcast")
    broadcaster = world.broadcaster(offsets=(timedelta(hours=1),), notify="room")
    world.clock.value = START - timedelta(minutes=59)
    assert await broadcaster.deliver() == 1
    sid = grist(world)
    await world.say(f"!session modifier {sid} 15h-16h")
    assert await broadcaster.deliver() == 1
    first, change = world.chat.sent[-2:]
    assert quiet(wire(first)) and quiet(wire(change))
    assert wire(change)["body"].startswith("⚠️ Changement de programme")
    told = [r for r in caplog.records if "stay quiet notices" in r.getMessage()]
    assert len(told) == 1
    # Promoted: the next post calls the room.
    world.chat.levels[(ROOMS[1], world.chat.user_id)] = 50
    await world.say(f"!session modifier {sid} 16h-17h")
    assert await broadcaster.deliver() == 1
    assert wire(world.chat.sent[-1])["m.mentions"] == {"room": True}


async def test_an_edit_of_a_room_call_keeps_its_kind_and_calls_no_one_again() -> None:
    issue = Message("📰 La gazette n° 3", "<p>📰 La gazette n° 3</p>", mentions_room=True)
    content = replacement(message_content(issue), "$issue")
    assert content["msgtype"] == "m.text" and content["m.mentions"] == {}
    assert content["m.new_content"]["m.mentions"] == {"room": True}
    assert content["body"] == "* @room 📰 La gazette n° 3"
    assert quiet(replacement(message_content(Message("x", "<p>x</p>")), "$n"))


def test_notification_level_follows_the_room_power_levels() -> None:
    assert notification_level("room", None) == 50  # no power levels event
    assert notification_level("room", {"users": {}}) == 50
    assert notification_level("room", {"notifications": {"room": 0}}) == 0
    assert notification_level("room", {"notifications": {"room": "100"}}) == 100
    # Not a number: Synapse drops it and applies the default.
    assert notification_level("room", {"notifications": {"room": "x"}}) == 50


def test_check_config_accepts_notify_none_or_room_only(tmp_path: Path) -> None:
    assert make_config(tmp_path).broadcasts.notify == "none"
    assert make_config(tmp_path, broadcasts={"notify": "room"}).broadcasts.notify == "room"
    path = tmp_path / "config.yaml"
    path.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:1', user_id: '@bot:x.org', password: x}\n"
        "broadcasts: {notify: everyone}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "broadcasts.notify: Input should be 'none' or 'room'" in result.stderr
