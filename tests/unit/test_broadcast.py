"""Programme-change notices to subscribed rooms through the outbox, with a fake chat and clock."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.chat import IncomingMessage, SendError
from bot.render import Message
from tests.fakes import ROOMS, START, World, grist, make_config

PARIS = ZoneInfo("Europe/Paris")


async def test_each_subscribed_room_gets_each_change_once(world: World) -> None:
    subscribed = await world.say("!abonner rappels", room=ROOMS[0])
    assert subscribed.startswith("✅ Ce salon recevra un rappel")
    assert (await world.say("!abonner rappels", room=ROOMS[1])).startswith("✅")
    assert await world.say("!abonner rappels", room=ROOMS[1]) == (
        "Ce salon est déjà abonné : rappels."
    )
    refused = await world.say("!abonner rappels", room=ROOMS[2], sender="@member:example.org")
    assert "réservée aux modérateurs" in refused
    assert "rappels" in await world.say("!abonnements", room=ROOMS[0])
    assert "aucune publication" in await world.say("!abonnements", room=ROOMS[2])

    await world.say(f"!session modifier {grist(world)} 15h-16h")
    broadcaster = world.broadcaster()
    assert await broadcaster.deliver() == 2
    notices = world.notices()
    assert sorted(room for room, _, _ in notices) == ROOMS[:2]
    assert notices[0][1].startswith(
        "⚠️ Changement de programme : « Webinaire Grist » : mardi 24 novembre, "
        "14h00 – 15h00 → 15h00 – 16h00"
    )
    assert len({txn for _, _, txn in notices}) == 2
    assert all(s.reply_to is None for s in world.chat.sent if s.room_id in ROOMS[1:])
    assert await broadcaster.deliver() == 0  # nothing twice

    # Unsubscribed: the next change reaches room A only.
    assert (await world.say("!desabonner rappels", room=ROOMS[1])).startswith("✅")
    await world.say(f"!session annuler {grist(world)}")
    assert await world.broadcaster().deliver() == 1
    assert [room for room, _, _ in world.notices()].count(ROOMS[1]) == 1
    assert "est annulée" in world.notices()[-1][1]


async def test_crash_after_send_resends_with_the_same_txn_id(world: World) -> None:
    for room in ROOMS:
        await world.say("!abonner rappels", room=room)
    await world.say(f"!session modifier {grist(world)} 15h-16h")
    world.chat.failures = [SendError("timeout", permanent=False)]  # one transient failure
    assert await world.broadcaster().deliver() == 3
    first = {room: txn for room, _, txn in world.notices()}
    # A crash between the send and its mark: the row is still pending.
    await world.storage.db.execute(
        "UPDATE outbox SET status = 'pending' WHERE room_id = $1", ROOMS[2]
    )
    assert await world.broadcaster().deliver() == 1
    room, _, txn = world.notices()[-1]
    assert (room, txn) == (ROOMS[2], first[ROOMS[2]])  # the homeserver drops the duplicate


async def test_posts_tried_before_a_long_outage_are_looked_for_not_resent(world: World) -> None:
    for room in ROOMS:
        await world.say("!abonner rappels", room=room)
    await world.say(f"!session modifier {grist(world)} 15h-16h")
    assert await world.broadcaster().deliver() == 3
    posted = list(world.chat.sent)
    # Left pending two days ago by a crash after the sends: in room A the post
    # is found; in room B it is there but unreadable (another device sent
    # it); room C's post never reached the homeserver.
    in_a, in_c = (next(s for s in posted if s.room_id == room) for room in (ROOMS[0], ROOMS[2]))
    world.chat.sent = [in_a]
    world.chat.unreadable.add(ROOMS[1])
    await world.storage.db.execute(
        "UPDATE outbox SET status = 'pending', attempts = 1, created_at = $1",
        int(time.time()) - 2 * 86400,
    )
    assert await world.broadcaster().deliver() == 2  # A's found, C's sent again
    assert world.chat.sent == [in_a, in_c]
    change = (await world.storage.agenda.changes_since(0))[0].key
    assert await world.storage.outbox.status(f"change:{change}") == {
        ROOMS[0]: "sent",
        ROOMS[1]: "abandoned",
        ROOMS[2]: "sent",
    }


async def test_notice_for_a_session_already_started_is_skipped(world: World) -> None:
    await world.say("!abonner rappels")
    await world.say(f"!session modifier {grist(world)} salle=Salle B")
    world.clock.value = datetime(2026, 11, 24, 15, tzinfo=PARIS).astimezone(UTC)
    assert await world.broadcaster().deliver() == 0
    assert world.notices() == []
    statuses = await world.storage.outbox.status(
        "change:" + (await world.storage.agenda.changes_since(0))[0].key
    )
    assert statuses == {ROOMS[0]: "skipped"}


OFFSETS = (timedelta(days=1), timedelta(hours=1))


def reminders(world: World) -> list[tuple[str, str]]:
    return [
        (s.room_id, s.message.body)
        for s in world.chat.sent
        if isinstance(s.message, Message) and s.message.body.startswith("⏰")
    ]


async def test_one_reminder_per_offset_and_room(world: World) -> None:
    for room in ROOMS[:2]:
        await world.say("!abonner rappels", room=room)
    broadcaster = world.broadcaster(OFFSETS)
    assert await broadcaster.deliver() == 0  # nothing due yet (23 Nov, 10:00)
    # Sleeps until the next one is due, at most a minute.
    world.clock.value = START - timedelta(days=1) - timedelta(seconds=20)
    assert broadcaster.seconds_to_next_due() == pytest.approx(20)

    world.clock.value = START - timedelta(days=1) + timedelta(seconds=5)
    assert await broadcaster.deliver() == 2
    world.clock.value = START - timedelta(hours=1) + timedelta(minutes=1)
    assert await broadcaster.deliver() == 2
    assert await broadcaster.deliver() == 0  # never twice
    sent = reminders(world)
    assert sorted(room for room, _ in sent) == sorted(ROOMS[:2] * 2)
    assert sent[-1][1].startswith("⏰ Rappel : « Webinaire Grist » commence dans 59 minutes\n")
    assert sent[-1][1].splitlines()[1] == "🗓️ mardi 24 novembre, 14h00 – 15h00"


async def test_missed_beyond_grace_skipped_within_grace_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.broadcast")
    await world.say("!abonner rappels")
    # The bot was down when both were due; the 1h one is 20 minutes late.
    world.clock.value = START - timedelta(minutes=40)
    assert await world.broadcaster(OFFSETS).deliver() == 0
    assert reminders(world) == []
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2
    assert await world.broadcaster(OFFSETS).deliver() == 0
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2  # logged once
    # 10 minutes late, still within the 15-minute grace: sent.
    await world.storage.db.execute("DELETE FROM outbox")
    world.clock.value = START - timedelta(minutes=50)
    assert await world.broadcaster(OFFSETS).deliver() == 1


async def test_cancelled_or_moved_sessions_get_no_stale_reminder(world: World) -> None:
    await world.say("!abonner rappels")
    sid = grist(world)
    await world.say(f"!session modifier {sid} 16h-17h")
    world.clock.value = START - timedelta(hours=1) + timedelta(minutes=1)
    await world.broadcaster(OFFSETS).deliver()
    assert reminders(world) == []  # 14h is no longer its time
    await world.say(f"!session annuler {sid}")
    world.clock.value = START + timedelta(hours=1, minutes=1)  # 1 h before 16h
    await world.broadcaster(OFFSETS).deliver()
    assert reminders(world) == []


async def test_subscriptions_show_the_next_reminders(world: World) -> None:
    await world.say("!abonner rappels")
    world.dispatcher.services = replace(
        world.dispatcher.services,
        config=make_config(
            world.storage_path,
            reminders={"offsets": ["1d", "1h"]},
            bot={"moderator_rooms": [ROOMS[0]]},
        ),
    )
    text = await world.say("!abonnements")
    assert text.startswith("Ce salon reçoit : les rappels (avant chaque séance)")
    assert text.splitlines()[1] == (
        "Prochains rappels : lundi 23 novembre à 14h00 pour « Webinaire Grist » ; "
        "mardi 24 novembre à 13h00 pour « Webinaire Grist »."
    )


async def test_personal_reminder_by_direct_message(world: World) -> None:
    member = "@agent:example.org"
    sid = grist(world)
    text = await world.say(f"!rappelle-moi {sid}", sender=member)
    assert text.startswith(
        "🔔 C'est noté : je vous enverrai un message privé 15 minutes avant « Webinaire Grist » "
        "(mardi 24 novembre à 14h00)"
    )
    assert (await world.say(f"!rappelle-moi {sid}", sender=member)).startswith("Vous avez déjà")
    assert "n'a l'identifiant « zzzzzz »" in await world.say("!rappelle-moi zzzzzz", sender=member)
    ((user, dm),) = world.chat.direct_rooms  # one direct room, opened once
    assert user == member
    # Which sessions one follows is one's own: listed in the direct room only.
    world.chat.sent.clear()
    await world.dispatcher.accept(IncomingMessage(ROOMS[0], "$mine", member, "!mes-rappels"))
    await world.dispatcher.drain()
    where = {s.room_id: s.message.body for s in world.chat.sent if isinstance(s.message, Message)}
    assert where == {
        dm: where[dm],
        ROOMS[0]: "🔒 Je vous ai répondu en message privé.",
    }
    assert f"• mardi 24 novembre à 14h00 — Webinaire Grist [{sid}]" in where[dm]
    world.chat.sent.clear()
    assert f"Webinaire Grist [{sid}]" in await world.say("!mes-donnees", sender=member)

    broadcaster = world.broadcaster()
    world.clock.value = START - timedelta(minutes=14)
    assert await broadcaster.deliver() == 1
    assert await broadcaster.deliver() == 0
    (sent,) = [s for s in world.chat.sent if s.room_id == dm]
    assert isinstance(sent.message, Message)
    assert sent.message.body.startswith(
        "⏰ Votre rappel : « Webinaire Grist » commence dans 14 minutes"
    )
    assert (await world.say(f"!oublie {sid}", sender=member)).startswith("✅ Rappel annulé")
    assert "pas de rappel" in await world.say(f"!oublie {sid}", sender=member)
    assert "aucun rappel" in await world.say("!mes-rappels", sender=member)


async def test_personal_reminders_forgotten_a_day_after_their_session(world: World) -> None:
    member = "@agent:example.org"
    sid = grist(world)
    await world.say(f"!rappelle-moi {sid}", sender=member)
    # Moved by a week: the day after its first date, the reminder is still wanted.
    await world.say(f"!session modifier {sid} 01/12/2026")
    broadcaster = world.broadcaster()
    world.clock.value = START + timedelta(days=2)
    await broadcaster.deliver()
    assert [r.sid for r in await world.storage.personal.reminders(member)] == [sid]
    # Two days after its new date, it is gone from the database and from !mes-rappels.
    world.clock.value = START + timedelta(days=9)
    await broadcaster.deliver()
    assert await world.storage.personal.reminders(member) == []
    assert "aucun rappel" in await world.say("!mes-rappels", sender=member)
