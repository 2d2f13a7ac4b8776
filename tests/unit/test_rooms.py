"""Rooms as they live (bot/rooms.py), with the fake chat and clock: kicked, a
direct room left, alone too long, upgraded; and what survives a restart."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from bot.broadcast import Broadcaster
from bot.chat import MembersChanged, RoomLeft, RoomUpgraded
from bot.commands.personal import REMIND
from bot.db.subscriptions import REMINDERS
from bot.ops import Metrics
from bot.reminders import PersonalKey, ReminderKey
from bot.render import Message, Renderer
from bot.rooms import MovedKey, RoomLifecycle
from tests.fakes import MOD, PARIS, ROOMS, START, World, grist

BOT = "@bot:example.org"
AGENT = "@agent:example.org"
NEW = "!new:example.org"


def lifecycle(world: World, metrics: Metrics | None = None, **kwargs: object) -> RoomLifecycle:
    """A `RoomLifecycle` as the app builds it (a new one: as after a restart)."""
    return RoomLifecycle(
        world.storage,
        world.chat,
        now=world.clock,
        leave_empty_after=timedelta(days=1),
        metrics=metrics,
        **kwargs,  # type: ignore[arg-type]
    )


def sent_to(world: World, room_id: str) -> list[str]:
    return [
        s.message.body
        for s in world.chat.sent
        if s.room_id == room_id and isinstance(s.message, Message)
    ]


async def subscribe(world: World, *rooms: str) -> None:
    for room in rooms:
        assert (await world.say("!abonner rappels", room)).startswith("✅")
    world.chat.sent.clear()


async def queue_reminder(world: World) -> ReminderKey:
    """The 1-hour reminder of the webinar, queued for the subscribed rooms (not sent)."""
    key = ReminderKey(grist(world), 3600, int(START.timestamp()))
    await world.storage.outbox.queue_for_subscribers(key, REMINDERS)
    return key


# -- kicked, banned ------------------------------------------------------------------------


async def test_a_kick_ends_the_rooms_subscriptions_and_abandons_its_posts(world: World) -> None:
    await subscribe(world, ROOMS[0], ROOMS[1])
    key = await queue_reminder(world)
    metrics = Metrics()

    await lifecycle(world, metrics).on_left(RoomLeft(ROOMS[0], "kicked", MOD, reason="plus besoin"))

    assert await world.storage.subscriptions.kinds(ROOMS[0]) == []
    assert await world.storage.subscriptions.kinds(ROOMS[1]) == [REMINDERS]
    assert await world.storage.outbox.status(str(key)) == {
        ROOMS[0]: "abandoned",
        ROOMS[1]: "pending",
    }
    assert metrics.broadcasts.labels("abandoned")._value.get() == 1
    history = await world.storage.subscriptions.history(ROOMS[0])
    assert [(e.action, e.actor, e.detail) for e in history] == [
        ("subscribed", MOD, ""),
        ("ended", MOD, f"kicked by {MOD}: plus besoin"),
    ]
    # Due: only the room the bot is still in gets it, nothing is tried in the other.
    world.clock.value = START - timedelta(hours=1)
    assert await world.broadcaster().deliver() == 1
    assert [s.room_id for s in world.chat.sent] == [ROOMS[1]]
    assert (await world.say("!abonnements", ROOMS[1])).startswith("Ce salon reçoit : les rappels")


async def test_a_kick_reason_cannot_forge_log_lines(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason is the kicker's text: in the log it stays on the kick's one line,
    escaped; the audit trail keeps it as typed."""
    await subscribe(world, ROOMS[0])
    caplog.set_level(logging.INFO, logger="bot.rooms")
    forged = "2026-01-01 00:00:00,000 ERROR bot: database disk image is malformed"
    reason = f"spam\n{forged}\r\x1b[2K\u202eevil"
    await lifecycle(world).on_left(RoomLeft(ROOMS[0], "kicked", MOD, reason=reason))

    (record,) = [r for r in caplog.records if ROOMS[0] in r.getMessage()]
    # The format `bluehats-bot run` logs with (bot/__main__.py).
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert record.levelno == logging.INFO
    assert f"kicked by {MOD}: spam\\n{forged}\\r\\x1b[2K\\u202eevil; subscriptions" in line
    assert not any(c in line for c in "\n\r\x1b\u202e")
    history = await world.storage.subscriptions.history(ROOMS[0])
    assert history[-1].detail == f"kicked by {MOD}: {reason}"


async def test_a_ban_or_the_bot_leaving_is_recorded_as_such(world: World) -> None:
    await subscribe(world, ROOMS[0], ROOMS[1])
    rooms = lifecycle(world)
    await rooms.on_left(RoomLeft(ROOMS[0], "banned", MOD))
    await rooms.on_left(RoomLeft(ROOMS[1], "left", BOT))
    await rooms.on_left(RoomLeft(ROOMS[1], "left", BOT))  # seen again: nothing more
    ended = [e for e in await world.storage.subscriptions.history() if e.action == "ended"]
    assert [(e.room_id, e.detail) for e in ended] == [
        (ROOMS[0], f"banned by {MOD}"),
        (ROOMS[1], "left"),
    ]


async def test_a_row_abandoned_during_a_round_is_not_sent(world: World) -> None:
    await subscribe(world, ROOMS[0])
    await queue_reminder(world)
    world.clock.value = START - timedelta(hours=1)
    broadcaster = world.broadcaster()
    (item,) = await world.storage.outbox.pending()
    # Kicked between the round's reading of the outbox and the send.
    await lifecycle(world).on_left(RoomLeft(ROOMS[0], "kicked", MOD))
    assert not await broadcaster._deliver_one(item)
    assert world.chat.sent == []
    assert await world.storage.outbox.count("abandoned") == 1


# -- a direct room left by its person --------------------------------------------------------


async def test_a_direct_room_left_is_forgotten_and_the_next_reminder_opens_a_new_one(
    world: World,
) -> None:
    old_dm = "!old-dm:example.org"
    sid = grist(world)
    await world.storage.personal.add(AGENT, sid, "Webinaire Grist", int(START.timestamp()))
    await world.storage.personal.set_direct_room(AGENT, old_dm)
    # A post already queued there (a restart in between, say).
    queued = PersonalKey(sid, int(START.timestamp()), AGENT)
    await world.storage.outbox.queue(queued, old_dm)

    rooms = lifecycle(world)
    # Someone else leaving a room changes nothing.
    await rooms.on_members(MembersChanged(old_dm, others=0, departed=("@x:example.org",)))
    assert await world.storage.personal.direct_room(AGENT) == old_dm
    await rooms.on_members(MembersChanged(old_dm, others=0, departed=(AGENT,)))

    assert await world.storage.personal.direct_room(AGENT) is None
    assert world.chat.leaves == [old_dm]
    assert await world.storage.outbox.status(str(queued)) == {old_dm: "abandoned"}

    world.clock.value = START - timedelta(minutes=15)
    assert await world.broadcaster().deliver() == 1
    ((user, new_dm),) = world.chat.direct_rooms
    assert user == AGENT and new_dm != old_dm
    (reminder,) = sent_to(world, new_dm)
    assert reminder.startswith("⏰ Votre rappel")
    assert sent_to(world, old_dm) == []
    assert await world.storage.personal.direct_room(AGENT) == new_dm


async def test_a_reminder_already_too_late_opens_no_direct_room(world: World) -> None:
    sid = grist(world)
    await world.storage.personal.add(AGENT, sid, "Webinaire Grist", int(START.timestamp()))
    broadcaster = Broadcaster(
        world.storage,
        world.chat,
        Renderer("fr", PARIS),
        world.agenda,
        prefix="!",
        now=world.clock,
        pace=timedelta(0),
        offsets=[],
        grace=timedelta(minutes=15),
        personal=timedelta(hours=1),
        retry_delay=0,
    )
    # Due an hour before the start, sent up to 15 min late: now it is 30 min late.
    world.clock.value = START - timedelta(minutes=30)
    await broadcaster.deliver()
    assert world.chat.direct_rooms == [] and world.chat.sent == []
    # In time, it would have opened one.
    world.clock.value = START - timedelta(minutes=50)
    await world.storage.personal.add(AGENT, sid, "Webinaire Grist", int(START.timestamp()))
    assert await broadcaster.deliver() == 1
    assert len(world.chat.direct_rooms) == 1


# -- alone --------------------------------------------------------------------------------


async def test_a_room_where_the_bot_is_alone_for_a_day_is_left(world: World) -> None:
    await subscribe(world, ROOMS[0], ROOMS[1])
    world.chat.rooms = {ROOMS[0]: 1, ROOMS[1]: 2}
    rooms = lifecycle(world)
    world.chat.rooms[ROOMS[0]] = 0
    await rooms.on_members(MembersChanged(ROOMS[0], others=0, departed=(MOD,)))
    start = world.clock.value

    world.clock.value = start + timedelta(hours=23)
    assert await rooms.leave_empty_rooms() == []
    world.clock.value = start + timedelta(days=1)
    assert await rooms.leave_empty_rooms() == [ROOMS[0]]

    assert world.chat.leaves == [ROOMS[0]]
    assert await world.storage.subscriptions.kinds(ROOMS[0]) == []
    assert await world.storage.subscriptions.kinds(ROOMS[1]) == [REMINDERS]
    (ended,) = [e for e in await world.storage.subscriptions.history() if e.action == "ended"]
    assert (ended.room_id, ended.actor) == (ROOMS[0], BOT)
    assert ended.detail == "left: alone since 2026-11-23 09:00 UTC"
    assert await rooms.leave_empty_rooms() == []


async def test_the_alone_clock_survives_a_restart_and_stops_when_someone_comes(
    world: World,
) -> None:
    world.chat.rooms = {ROOMS[0]: 0, ROOMS[1]: 0}
    # No membership event seen: the periodic check notices the empty rooms.
    assert await lifecycle(world).leave_empty_rooms() == []
    start = world.clock.value

    world.clock.value = start + timedelta(hours=12)
    restarted = lifecycle(world)  # a restart: the clock is not reset
    await restarted.on_members(MembersChanged(ROOMS[1], others=1))  # someone came back
    world.chat.rooms[ROOMS[1]] = 1
    world.clock.value = start + timedelta(days=1)
    assert await restarted.leave_empty_rooms() == [ROOMS[0]]
    assert world.chat.leaves == [ROOMS[0]]


async def test_a_room_whose_members_are_not_known_is_neither_alone_nor_left(
    world: World,
) -> None:
    """After a restart, lazy-loaded members leave a quiet room's count unknown:
    it must not look empty (the bot would leave every quiet room a day later)."""
    world.chat.rooms = {ROOMS[0]: 0, ROOMS[1]: None}
    rooms = lifecycle(world)
    await rooms.on_members(MembersChanged(ROOMS[1], others=None))
    await rooms.leave_empty_rooms()
    world.clock.value += timedelta(days=2)
    assert await rooms.leave_empty_rooms() == [ROOMS[0]]
    assert world.chat.leaves == [ROOMS[0]]
    # A room already alone before the restart keeps its clock while unknown.
    world.chat.rooms = {ROOMS[2]: 0}
    await rooms.leave_empty_rooms()
    started = world.clock.value
    world.chat.rooms = {ROOMS[2]: None}
    restarted = lifecycle(world)
    world.clock.value = started + timedelta(hours=12)
    assert await restarted.leave_empty_rooms() == []
    world.chat.rooms = {ROOMS[2]: 0}  # known again (someone's leave brought the counts)
    world.clock.value = started + timedelta(days=1)
    assert await restarted.leave_empty_rooms() == [ROOMS[2]]


async def test_the_error_room_is_never_left(world: World) -> None:
    world.chat.rooms = {ROOMS[2]: 0}
    rooms = lifecycle(world, keep=[ROOMS[2]])
    await rooms.leave_empty_rooms()
    world.clock.value += timedelta(days=3)
    assert await rooms.leave_empty_rooms() == []
    assert world.chat.leaves == []


# -- upgrades ------------------------------------------------------------------------------


async def test_an_upgrade_moves_everything_to_the_new_room_and_says_so_once(
    world: World,
) -> None:
    old = ROOMS[0]
    await subscribe(world, old)
    key = await queue_reminder(world)
    await world.storage.personal.set_direct_room(AGENT, old)
    await world.storage.posts.record("$post", old, [(REMIND, (grist(world),))])
    world.chat.predecessors[NEW] = old  # what a real upgrade's new room says
    woken: list[bool] = []

    await lifecycle(world, wake=lambda: woken.append(True)).on_upgrade(RoomUpgraded(old, NEW, MOD))

    assert world.chat.joins == [(NEW, ("example.org",))]  # via the sender's server
    assert world.chat.leaves == [old]
    assert woken
    assert await world.storage.subscriptions.kinds(old) == []
    assert await world.storage.subscriptions.kinds(NEW) == [REMINDERS]
    assert await world.storage.personal.direct_room(AGENT) == NEW
    assert await world.storage.posts.mark("$post", NEW, REMIND) == (grist(world),)
    (reminder, notice) = await world.storage.outbox.pending()
    assert (reminder.room_id, reminder.txn_id) == (NEW, key.txn_id(NEW))
    assert (notice.broadcast, notice.room_id) == (str(MovedKey(old)), NEW)
    moved = [(e.room_id, e.action, e.detail) for e in await world.storage.subscriptions.history()]
    assert moved[-2:] == [(old, "moved", f"to {NEW}"), (NEW, "moved", f"from {old}")]

    world.clock.value = START - timedelta(hours=1)
    broadcaster = world.broadcaster()
    assert await broadcaster.deliver() == 2
    bodies = sent_to(world, NEW)
    assert bodies[0].startswith("⏰ Rappel")
    assert bodies[1] == (
        "🔀 Ce salon remplace un salon mis à niveau, je l'ai suivi ici : il reçoit "
        "désormais les rappels (avant chaque séance) et les avis de changement de programme."
    )

    # A restart sees the tombstone again: nothing is moved or said twice.
    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))
    assert await world.broadcaster().deliver() == 0
    assert len(sent_to(world, NEW)) == 2
    assert len(world.chat.joins) == 1


async def test_an_upgrade_to_an_invite_only_room_waits_for_the_bots_join(world: World) -> None:
    old = ROOMS[0]
    await subscribe(world, old)
    world.chat.unjoinable.add(NEW)
    world.chat.predecessors[NEW] = old
    rooms = lifecycle(world)
    await rooms.on_upgrade(RoomUpgraded(old, NEW, MOD))
    assert await world.storage.subscriptions.kinds(old) == [REMINDERS]
    assert world.chat.leaves == []

    # Invited, the bot joins (the invite rules): the move happens then, once.
    world.chat.unjoinable.clear()
    restarted = lifecycle(world)
    await restarted.on_members(MembersChanged(NEW, others=1, bot_joined=True))
    await restarted.on_members(MembersChanged(NEW, others=1, bot_joined=True))
    assert await world.storage.subscriptions.kinds(NEW) == [REMINDERS]
    assert await world.storage.outbox.count("pending") == 1  # the notice, once
    assert world.chat.leaves == [old]


async def test_an_upgrade_of_a_room_with_no_subscription_says_nothing(world: World) -> None:
    world.chat.predecessors[NEW] = ROOMS[2]
    await lifecycle(world).on_upgrade(RoomUpgraded(ROOMS[2], NEW, MOD))
    assert world.chat.joins == [(NEW, ("example.org",))]
    assert await world.storage.outbox.pending() == []


async def test_a_new_room_that_does_not_replace_the_old_one_gets_nothing(
    world: World,
) -> None:
    """A tombstone pointing at a room whose `m.room.create` names another
    predecessor (or none): nothing moves, the bot stays, once."""
    old = ROOMS[0]
    world.chat.rooms = {old: 2}
    await subscribe(world, old)
    key = await queue_reminder(world)
    world.chat.predecessors[NEW] = "!elsewhere:example.org"

    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))

    assert world.chat.joins == [(NEW, ("example.org",))]  # to read its m.room.create
    assert world.chat.leaves == [NEW]  # and out again; still in the old room
    assert await world.storage.subscriptions.kinds(old) == [REMINDERS]
    assert await world.storage.subscriptions.kinds(NEW) == []
    assert await world.storage.outbox.status(str(key)) == {old: "pending"}
    assert [e.action for e in await world.storage.subscriptions.history(old)] == ["subscribed"]
    # A restart shows the tombstone again: not tried again.
    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))
    assert len(world.chat.joins) == 1
    world.clock.value = START - timedelta(hours=1)
    assert await world.broadcaster().deliver() == 1
    (reminder,) = sent_to(world, old)
    assert reminder.startswith("⏰ Rappel")

    # A real upgrade afterwards (another tombstone, another room) is followed.
    real = "!real:example.org"
    world.chat.predecessors[real] = old
    await lifecycle(world).on_upgrade(RoomUpgraded(old, real, MOD))
    assert await world.storage.subscriptions.kinds(real) == [REMINDERS]
    assert world.chat.leaves == [NEW, old]


async def test_a_tombstone_pointing_at_another_room_of_the_bots_does_not_make_it_leave(
    world: World,
) -> None:
    old, other = ROOMS[0], ROOMS[1]
    world.chat.rooms = {old: 2, other: 2}
    await subscribe(world, old, other)
    # `other` names no predecessor: it is no upgrade of `old`.
    await lifecycle(world).on_upgrade(RoomUpgraded(old, other, MOD))
    assert world.chat.leaves == []
    assert await world.storage.subscriptions.kinds(old) == [REMINDERS]
    assert await world.storage.subscriptions.kinds(other) == [REMINDERS]


async def test_an_invite_to_a_room_that_does_not_replace_the_old_one_moves_nothing(
    world: World,
) -> None:
    old = ROOMS[0]
    await subscribe(world, old)
    world.chat.unjoinable.add(NEW)
    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))
    # Invited later, the bot joins: the new room names no predecessor.
    world.chat.unjoinable.clear()
    await lifecycle(world).on_members(MembersChanged(NEW, others=1, bot_joined=True))
    assert world.chat.leaves == [NEW]
    assert await world.storage.subscriptions.kinds(old) == [REMINDERS]
    assert await world.storage.outbox.pending() == []


async def test_an_unreadable_new_room_keeps_the_upgrade_waiting(world: World) -> None:
    old = ROOMS[0]
    await subscribe(world, old)
    world.chat.predecessors[NEW] = None  # its m.room.create cannot be read now
    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))
    assert world.chat.leaves == []
    assert await world.storage.subscriptions.kinds(old) == [REMINDERS]
    # At the next start it can be: the move happens then.
    world.chat.predecessors[NEW] = old
    await lifecycle(world).on_upgrade(RoomUpgraded(old, NEW, MOD))
    assert await world.storage.subscriptions.kinds(NEW) == [REMINDERS]
    assert world.chat.leaves == [old]


async def test_rooms_the_bot_is_not_in_any_more_are_ended_at_the_check(world: World) -> None:
    # Kicked while an older version ran (the leave was never handled).
    await subscribe(world, ROOMS[0], ROOMS[1])
    await queue_reminder(world)
    await world.storage.personal.set_direct_room(AGENT, "!dm:example.org")
    world.chat.rooms = {ROOMS[1]: 3, "!dm:example.org": 1}
    assert await lifecycle(world).forget_rooms_left() == [ROOMS[0]]
    assert await world.storage.subscriptions.kinds(ROOMS[0]) == []
    assert await world.storage.subscriptions.kinds(ROOMS[1]) == [REMINDERS]
    assert await world.storage.outbox.count("abandoned") == 1
    assert await world.storage.personal.direct_room(AGENT) == "!dm:example.org"


async def test_moderators_subscribing_and_unsubscribing_are_in_the_audit_trail(
    world: World,
) -> None:
    await subscribe(world, ROOMS[0])
    assert (await world.say("!abonner rappels", ROOMS[0])).startswith("Ce salon est déjà")
    assert (await world.say("!desabonner rappels", ROOMS[0])).startswith("✅")
    history = await world.storage.subscriptions.history(ROOMS[0])
    assert [(e.kind, e.action, e.actor) for e in history] == [
        (REMINDERS, "subscribed", MOD),
        (REMINDERS, "unsubscribed", MOD),
    ]
