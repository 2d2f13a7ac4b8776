"""🔔 reactions: on an `!agenda` answer or a reminder, a personal reminder, confirmed in private."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from bot.chat import IncomingMessage, IncomingReaction, IncomingRedaction, SendError, Triggered
from bot.commands.personal import REMIND
from bot.render import Message
from tests.fakes import MOD, ROOMS, START, World, grist

MEMBER = "@agent:example.org"


async def command(w: World, text: str, event_id: str, sender: str = MOD) -> Message:
    """A command through the whole path (inbox, answer, send); the message sent."""
    before = len(w.chat.sent)
    await w.dispatcher.accept(IncomingMessage(ROOMS[0], event_id, sender, text))
    await w.dispatcher.drain()
    (sent,) = w.chat.sent[before:]
    assert isinstance(sent.message, Message)
    return sent.message


async def record_bell(w: World, event_id: str, undoes: str | None = None) -> None:
    """Recorded as the sync callback records a 🔔 (or, `undoes`, taking that 🔔
    back before its answer), then the bot dies before answering."""
    trigger = Triggered(REMIND, undoes or event_id, (grist(w),), undo=undoes is not None)
    await w.storage.inbox.add(
        event_id,
        ROOMS[0],
        MEMBER,
        "",
        None,
        direct=True,
        command="rappelle-moi",
        follows=undoes,
        trigger=trigger,
    )


async def react(w: World, target: str, event_id: str, key: str = "🔔", sender: str = MEMBER):
    before = len(w.chat.sent)
    await w.dispatcher.accept_reaction(IncomingReaction(ROOMS[0], event_id, sender, target, key))
    await w.dispatcher.drain()
    return w.chat.sent[before:]


async def test_bell_on_an_agenda_answer_reminds_each_listed_session_in_private(
    world: World,
) -> None:
    webinar = grist(world)
    await command(world, '!session ajouter 25/11/2026 10h-11h "Atelier Superset"', "$add")
    answer = await command(world, "!agenda", "$agenda")
    assert "réagissez 🔔 pour un rappel en privé" in answer.body
    answer_id = world.chat.sent[-1].event_id

    # Other emojis, other events, the bot itself: nothing happens.
    assert await react(world, answer_id, "$thumb", key="👍") == []
    assert await react(world, "$someone-elses-message", "$r0") == []
    assert await react(world, answer_id, "$own", sender=world.chat.user_id) == []

    (confirmation,) = await react(world, answer_id, "$bell")
    ((user, dm),) = world.chat.direct_rooms
    assert user == MEMBER
    assert confirmation.room_id == dm  # in private, not in the room
    assert confirmation.reply_to is None
    body = confirmation.message.body
    assert body.startswith(
        "🔔 C'est noté : je vous enverrai un message privé 15 minutes avant chacune de ces séances"
    )
    assert f"• « Webinaire Grist » (mardi 24 novembre à 14h00) [{webinar}]" in body
    assert "• « Atelier Superset » (mercredi 25 novembre à 10h00)" in body
    reminders = await world.storage.personal.reminders(MEMBER)
    assert sorted(r.title for r in reminders) == ["Atelier Superset", "Webinaire Grist"]

    # The same reaction seen again (a redelivered sync): nothing twice.
    assert await react(world, answer_id, "$bell") == []
    # Another 🔔 (with the emoji variation selector) by the same person: already there.
    (again,) = await react(world, answer_id, "$bell2", key="🔔\ufe0f")
    assert again.room_id == dm
    assert again.message.body.startswith("Vous avez déjà un rappel pour")


async def test_bell_on_a_reminder_post(world: World) -> None:
    await world.storage.subscriptions.add(ROOMS[1], "rappels", MOD)
    broadcaster = world.broadcaster(offsets=(timedelta(hours=1),))
    world.clock.value = START - timedelta(minutes=59)
    assert await broadcaster.deliver() == 1
    (post,) = world.chat.sent
    assert "réagissez 🔔 pour un rappel en privé" in post.message.body
    await world.dispatcher.accept_reaction(
        IncomingReaction(ROOMS[1], "$bell", MEMBER, post.event_id, "🔔")
    )
    await world.dispatcher.drain()
    (mine,) = await world.storage.personal.reminders(MEMBER)
    assert mine.sid == grist(world)
    # The personal reminder itself, 15 minutes before, in the direct room.
    world.clock.value = START - timedelta(minutes=15)
    assert await broadcaster.deliver() == 1
    ((_, dm),) = world.chat.direct_rooms
    assert world.chat.sent[-1].room_id == dm
    assert world.chat.sent[-1].message.body.startswith("⏰ Votre rappel : « Webinaire Grist »")


async def test_bell_recorded_before_a_crash_is_answered_at_restart(world: World) -> None:
    await command(world, "!prochain", "$next")
    answer_id = world.chat.sent[-1].event_id
    # Recorded (sync callback), then the bot dies before answering.
    await record_bell(world, "$bell")
    assert await world.dispatcher.resume_pending() == 1
    await world.dispatcher.drain()
    ((_, dm),) = world.chat.direct_rooms
    assert world.chat.sent[-1].room_id == dm
    assert world.chat.sent[-1].message.body.startswith("🔔 C'est noté")
    # And the reaction, redelivered after the restart, is not answered twice.
    assert await react(world, answer_id, "$bell") == []


async def test_bell_is_kept_as_its_command_even_if_the_prefix_changes(world: World) -> None:
    await command(world, "!prochain", "$next")
    # Recorded as the real path records a 🔔 (what it resolved to, no text),
    # then the bot dies; the operator changes the prefix meanwhile.
    await record_bell(world, "$bell")
    services = world.dispatcher.services
    bot = services.config.bot.model_copy(update={"prefix": "?"})
    config = services.config.model_copy(update={"bot": bot})
    world.dispatcher.services = replace(services, config=config)
    assert await world.dispatcher.resume_pending() == 1
    await world.dispatcher.drain()
    ((_, dm),) = world.chat.direct_rooms
    assert world.chat.sent[-1].room_id == dm
    assert world.chat.sent[-1].message.body.startswith("🔔 C'est noté")
    assert [r.sid for r in await world.storage.personal.reminders(MEMBER)] == [grist(world)]


async def test_started_sessions_are_not_offered(world: World) -> None:
    world.clock.value = START + timedelta(minutes=5)  # Grist is running
    answer = await command(world, "!agenda", "$agenda")
    assert answer.mark(REMIND) == ()
    assert await react(world, world.chat.sent[-1].event_id, "$bell") == []


async def test_bell_when_no_private_room_can_be_opened_answers_in_the_room(
    world: World,
) -> None:
    answer = await command(world, "!prochain", "$next")

    async def refuse(_user_id: str) -> str:
        raise SendError("M_FORBIDDEN: no", permanent=True)

    world.chat.open_direct_room = refuse  # type: ignore[method-assign]
    (told,) = await react(world, world.chat.sent[-1].event_id, "$bell")
    assert told.room_id == ROOMS[0]
    assert told.message.body.startswith("Je n'ai pas pu ouvrir de conversation privée avec vous")
    assert answer.mark(REMIND)  # the answer did offer its session


async def test_taking_the_bell_back_cancels_its_reminders(world: World) -> None:
    await command(world, '!session ajouter 25/11/2026 10h-11h "Atelier Superset"', "$add")
    await command(world, "!agenda", "$agenda")
    answer_id = world.chat.sent[-1].event_id
    await react(world, answer_id, "$bell")
    assert len(await world.storage.personal.reminders(MEMBER)) == 2
    # Someone else's redaction, or of another event: nothing.
    assert await redact(world, "$bell", "$r1", sender="@other:example.org") == []
    assert await redact(world, "$unrelated", "$r2") == []
    (told,) = await redact(world, "$bell", "$r3")
    ((_, dm),) = world.chat.direct_rooms
    assert told.room_id == dm
    assert told.message.body.startswith("✅ Rappel annulé pour les séances ")
    assert await world.storage.personal.reminders(MEMBER) == []
    assert await redact(world, "$bell", "$r3") == []  # seen again: once


async def redact(w: World, target: str, event_id: str, sender: str = MEMBER) -> list[Any]:
    before = len(w.chat.sent)
    await w.dispatcher.accept_redaction(IncomingRedaction(ROOMS[0], event_id, sender, target))
    await w.dispatcher.drain()
    return w.chat.sent[before:]


async def test_notice_of_a_session_moved_by_its_calendar_points_to_its_new_id(
    world: World,
) -> None:
    await world.storage.subscriptions.add(ROOMS[1], "rappels", MOD)
    old = grist(world)
    # The published calendar moves the webinar one hour later: a new id.
    source = world.storage_path / "agenda.ics"
    source.write_bytes(source.read_bytes().replace(b"T140000", b"T150000"))
    await world.agenda.refresh()
    new = grist(world)
    assert new != old
    assert await world.broadcaster().deliver() == 1
    (notice,) = world.chat.sent
    assert notice.message.body.startswith("⚠️ Changement de programme")
    # Not the old id, which `!session` no longer knows.
    assert notice.message.body.endswith(
        f"Détails : !session {new} · réagissez 🔔 pour un rappel en privé"
    )
    # A 🔔 on the notice asks for the session at its new time.
    await world.dispatcher.accept_reaction(
        IncomingReaction(ROOMS[1], "$bell", MEMBER, notice.event_id, "🔔")
    )
    await world.dispatcher.drain()
    (mine,) = await world.storage.personal.reminders(MEMBER)
    assert mine.sid == new


async def test_a_bell_taken_back_in_its_own_sync_batch_leaves_no_reminder(world: World) -> None:
    await command(world, "!agenda", "$agenda")
    answer_id = world.chat.sent[-1].event_id
    before = len(world.chat.sent)
    # One sync batch: both are recorded before either is answered (`settle`).
    await world.dispatcher.accept_reaction(
        IncomingReaction(ROOMS[0], "$bell", MEMBER, answer_id, "🔔")
    )
    await world.dispatcher.accept_redaction(IncomingRedaction(ROOMS[0], "$r", MEMBER, "$bell"))
    await world.dispatcher.settle()
    await world.dispatcher.drain()
    assert await world.storage.personal.reminders(MEMBER) == []
    set_, cancelled = (s.message.body for s in world.chat.sent[before:])
    assert set_.startswith("🔔 C'est noté") and cancelled.startswith("✅ Rappel annulé")

    # The same two left pending by a crash: answered in that order at restart.
    await record_bell(world, "$bell2")
    await record_bell(world, "$r2", undoes="$bell2")
    assert await world.dispatcher.resume_pending() == 2
    await world.dispatcher.drain()
    assert await world.storage.personal.reminders(MEMBER) == []
