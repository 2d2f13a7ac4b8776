"""One person cannot degrade the bot for everyone: limits per sender and per
room, answers at once, `!agenda ics` built once, undecryptable messages."""

from __future__ import annotations

import asyncio
import logging
import threading
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import UploadResponse

from bot.agenda.export import IcsExports, to_ics
from bot.agenda.model import Agenda, Session
from bot.chat import FileUpload, IncomingMessage, IncomingReaction
from bot.commands import build_registry
from bot.commands.core import Context, command
from bot.commands.personal import REMIND
from bot.db.storage import Storage
from bot.dispatch import Dispatcher
from bot.limits import CommandLimits, Over, Rate, Recent
from bot.matrix.events import Handlers
from bot.matrix.sending import RatePacer, RoomPoster
from bot.matrix.undecryptable import MAX_PENDING_PER_SENDER, Undecryptable
from bot.render import Message
from tests.fakes import FakeChat, FakeClock, make_dispatcher
from tests.helpers import NOW, PARIS

ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
SLOW = "⏳ Doucement : trop de commandes d'affilée. Je reprends dans un instant."
SLOW_ROOM = "⏳ Doucement : trop de commandes à la fois dans ce salon. Je reprends dans un instant."


def seconds(clock: FakeClock) -> Callable[[], float]:
    """The fake clock as the monotonic seconds the limits read."""
    return lambda: clock.value.timestamp()


# -- the buckets ----------------------------------------------------------------------------------


def test_a_burst_then_one_command_every_few_seconds_and_one_warning_per_flood() -> None:
    clock = FakeClock(NOW)
    limits = CommandLimits(Rate(5, 3), Rate(1000, 1), seconds(clock))
    assert [limits.admit(ALICE, ROOM).allowed for _ in range(5)] == [True] * 5
    first = limits.admit(ALICE, ROOM)
    assert (first.allowed, first.over, first.warn) == (False, Over.SENDER, True)
    # The next ones are dropped without a word.
    assert [limits.admit(ALICE, ROOM).warn for _ in range(10)] == [False] * 10
    assert limits.admit(BOB, ROOM).allowed  # others are not concerned

    clock.value += timedelta(seconds=3)  # one token back
    assert limits.admit(ALICE, ROOM).allowed
    again = limits.admit(ALICE, ROOM)
    assert not again.allowed and not again.warn  # still the same flood: no second notice

    clock.value += timedelta(seconds=15)  # the bucket is full again: she calmed down
    assert [limits.admit(ALICE, ROOM).allowed for _ in range(5)] == [True] * 5
    assert limits.admit(ALICE, ROOM).warn  # a new flood is warned again


def test_a_room_has_its_own_limit_whoever_sends() -> None:
    clock = FakeClock(NOW)
    limits = CommandLimits(Rate(5, 3), Rate(20, 1), seconds(clock))
    senders = [f"@user{i}:example.org" for i in range(25)]
    assert [limits.admit(s, ROOM).allowed for s in senders[:20]] == [True] * 20
    over = limits.admit(senders[20], ROOM)
    assert (over.allowed, over.over, over.warn) == (False, Over.ROOM, True)
    assert not limits.admit(senders[21], ROOM).warn
    assert limits.admit(senders[20], OTHER_ROOM).allowed  # elsewhere, the same person is heard
    # Dropped by the room, her own bucket was not charged: four more elsewhere.
    assert [limits.admit(senders[21], OTHER_ROOM).allowed for _ in range(5)] == [True] * 5
    clock.value += timedelta(seconds=1)
    assert limits.admit(senders[22], ROOM).allowed


def test_no_limit_when_every_is_zero_and_calm_buckets_are_forgotten() -> None:
    clock = FakeClock(NOW)
    free = CommandLimits(Rate(1, 0), Rate(1, 0), seconds(clock))
    assert all(free.admit(ALICE, ROOM).allowed for _ in range(100))

    limits = CommandLimits(Rate(5, 3), Rate(20, 1), seconds(clock))
    for i in range(100):
        limits.admit(f"@user{i}:example.org", ROOM)
    assert len(limits.senders) == 100
    clock.value += timedelta(minutes=2)
    limits.admit(ALICE, ROOM)
    assert len(limits.senders) == 1  # a full bucket is the same as none


def test_recent_forgets_after_its_window() -> None:
    clock = FakeClock(NOW)
    forgotten: list[str] = []
    recent: Recent[str] = Recent(60, seconds(clock), on_forget=forgotten.append)
    recent.add("a")
    clock.value += timedelta(seconds=30)
    recent.add("b")
    assert "a" in recent and "b" in recent
    clock.value += timedelta(seconds=31)
    assert "a" not in recent and "b" in recent and forgotten == ["a"]
    assert len(recent) == 1


# -- the dispatcher -------------------------------------------------------------------------------


def typed(text: str, event_id: str, sender: str = ALICE, room: str = ROOM) -> IncomingMessage:
    return IncomingMessage(room, event_id, sender, text, ts=1_800_000_000_000)


def texts(chat: FakeChat) -> list[tuple[str | None, str]]:
    return [(s.reply_to, s.message.body.splitlines()[0]) for s in chat.sent]


async def test_a_flood_gets_its_burst_then_one_notice_then_silence(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], clock)
    try:
        for i in range(1, 11):
            await dispatcher.accept(typed("!aide", f"$a{i}"))
        await dispatcher.accept(typed("!aide", "$bob", sender=BOB))  # the room is still heard
        await dispatcher.drain()
        answered = [s.reply_to for s in chat.sent if s.message.body != SLOW]
        assert answered == ["$a1", "$a2", "$a3", "$a4", "$a5", "$bob"]
        # One notice, a reply to the first command over the limit.
        assert [(s.reply_to, s.message.body) for s in chat.sent if s.message.body == SLOW] == [
            ("$a6", SLOW)
        ]
        for dropped in ("$a6", "$a7", "$a10"):  # neither stored nor answered
            assert await storage.inbox.status(dropped) is None

        chat.sent.clear()
        clock.value += timedelta(seconds=3)  # one command's worth refilled
        await dispatcher.accept(typed("!aide", "$a11"))
        await dispatcher.accept(typed("!aide", "$a12"))
        await dispatcher.drain()
        assert [s.reply_to for s in chat.sent] == ["$a11"]  # and no second notice

        chat.sent.clear()
        clock.value += timedelta(seconds=15)  # calmed down: a full burst, warned again
        for i in range(13, 20):
            await dispatcher.accept(typed("!aide", f"$a{i}"))
        await dispatcher.drain()
        assert [s.reply_to for s in chat.sent if s.message.body != SLOW] == [
            "$a13",
            "$a14",
            "$a15",
            "$a16",
            "$a17",
        ]
        assert [s.reply_to for s in chat.sent if s.message.body == SLOW] == ["$a18"]
    finally:
        await storage.close()


async def test_a_busy_room_is_told_once_for_everyone(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path,
        [],
        clock,
        bot={"limits": {"per_room": {"burst": 3, "every": "2s"}}},
    )
    try:
        for i in range(6):
            await dispatcher.accept(typed("!aide", f"$u{i}", sender=f"@user{i}:example.org"))
        await dispatcher.accept(typed("!aide", "$elsewhere", room=OTHER_ROOM))
        await dispatcher.drain()
        assert sorted(s.reply_to or "" for s in chat.sent if s.message.body != SLOW_ROOM) == [
            "$elsewhere",
            "$u0",
            "$u1",
            "$u2",
        ]
        assert [s.reply_to for s in chat.sent if s.message.body == SLOW_ROOM] == ["$u3"]
    finally:
        await storage.close()


async def test_edits_and_reactions_count_as_commands(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], clock)
    try:
        await dispatcher.accept(typed("!aide", "$c"))
        for i in range(1, 6):  # five corrections in a row
            edit = IncomingMessage(
                ROOM, f"$e{i}", ALICE, "!agenda", ts=1_800_000_000_000 + i * 1000, replaces="$c"
            )
            await dispatcher.accept(edit)
        await dispatcher.drain()
        assert await storage.inbox.status("$e4") == "done"
        assert await storage.inbox.status("$e5") is None  # over: not stored
        # The notice replies to the command edited, not to the edit event.
        assert [s.reply_to for s in chat.sent if s.message.body == SLOW] == ["$c"]

        # A 🔔 on a post presenting sessions runs a command too: not while over.
        await storage.posts.record("$post", ROOM, [(REMIND, ("abc123",))])
        await dispatcher.accept_reaction(IncomingReaction(ROOM, "$bell", ALICE, "$post", "🔔"))
        await dispatcher.drain()
        assert await storage.inbox.status("$bell") is None
        assert chat.direct_rooms == []  # no private answer prepared
        assert len([s for s in chat.sent if s.message.body == SLOW]) == 1  # still one notice
    finally:
        await storage.close()


async def test_a_reaction_over_the_limit_gets_a_notice_that_is_no_reply(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path, [], clock, bot={"limits": {"per_sender": {"burst": 1, "every": "10s"}}}
    )
    try:
        await storage.posts.record("$post", ROOM, [(REMIND, ("abc123",))])
        for i in range(3):
            reaction = IncomingReaction(ROOM, f"$bell{i}", ALICE, "$post", "🔔")
            await dispatcher.accept_reaction(reaction)
        await dispatcher.drain()
        assert await storage.inbox.status("$bell0") is not None
        assert await storage.inbox.status("$bell1") is None
        notices = [s for s in chat.sent if s.message.body == SLOW]
        assert [(s.room_id, s.reply_to) for s in notices] == [(ROOM, None)]
    finally:
        await storage.close()


async def test_the_bot_never_answers_itself_nor_counts_itself(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], clock)
    try:
        for i in range(20):
            await dispatcher.accept(typed("!aide", f"$own{i}", sender=chat.user_id))
        await dispatcher.accept(typed("!aide", "$a"))
        await dispatcher.drain()
        assert [s.reply_to for s in chat.sent] == ["$a"]
    finally:
        await storage.close()


class Gate:
    """A command that waits until released, counting how many run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started = 0
        self.changed = asyncio.Event()
        self.releases: asyncio.Queue[None] = asyncio.Queue()

    async def handler(self, ctx: Context) -> Message:
        self.running += 1
        self.started += 1
        self.peak = max(self.peak, self.running)
        self.changed.set()
        await self.releases.get()
        self.running -= 1
        return Message(f"fini {ctx.msg.event_id}", "")

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def gated(dispatcher: Dispatcher) -> Gate:
    gate = Gate()
    slow = command("lent")(gate.handler)
    dispatcher.registry = build_registry().collect(types.SimpleNamespace(slow=slow))  # type: ignore[arg-type]
    return gate


async def test_at_most_four_commands_are_answered_at_once_the_rest_wait(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    gate = gated(dispatcher)
    try:
        for i in range(10):  # ten people in ten rooms: no limit is reached
            await dispatcher.accept(
                typed("!lent", f"$s{i}", sender=f"@u{i}:example.org", room=f"!r{i}:example.org")
            )
        await dispatcher.settle(grace=0)  # the batch is recorded: answering starts
        for released in range(10):
            await gate.until(lambda n=released: gate.running >= min(4, 10 - n))
            assert gate.started <= released + 4  # the others wait their turn
            gate.releases.put_nowait(None)
        await dispatcher.drain()
        assert gate.peak == 4
        assert sorted(s.message.body for s in chat.sent) == sorted(f"fini $s{i}" for i in range(10))
    finally:
        await storage.close()


async def test_a_command_its_edit_and_a_full_house_do_not_deadlock(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path, [], FakeClock(NOW), bot={"limits": {"answers_at_once": 1}}
    )
    gate = gated(dispatcher)
    try:
        await dispatcher.accept(typed("!lent", "$c"))
        await dispatcher.settle(grace=0)
        await gate.until(lambda: gate.running == 1)  # $c holds the only slot
        # Its edit waits for $c (its lock), another command for the slot.
        edit = IncomingMessage(ROOM, "$e", ALICE, "!lent", ts=1_800_000_001_000, replaces="$c")
        await dispatcher.accept(edit)
        await dispatcher.accept(typed("!lent", "$other", sender=BOB))
        await dispatcher.settle(grace=0)
        for _ in range(3):
            gate.releases.put_nowait(None)
        await dispatcher.drain()
        assert gate.peak == 1
        for event_id in ("$c", "$e", "$other"):
            assert await storage.inbox.status(event_id) == "done"
        # The edit, answered after its command, edits that command's answer.
        (answer,) = [s for s in chat.sent if s.reply_to == "$c"]
        assert [s.replaces for s in chat.sent if s.replaces] == [answer.event_id]
    finally:
        await storage.close()


# -- !agenda ics ----------------------------------------------------------------------------------


def sessions(n: int, start: datetime = datetime(2026, 12, 1, 9, tzinfo=UTC)) -> list[Session]:
    return [
        Session(f"Atelier {i}", start + timedelta(days=i), start + timedelta(days=i, hours=1))
        for i in range(n)
    ]


async def test_ics_files_are_built_off_the_loop_once_per_agenda_and_selection() -> None:
    builds: list[int] = []

    def build(*args: Any, **kwargs: Any) -> bytes:
        builds.append(threading.get_ident())
        return to_ics(*args, **kwargs)

    exports = IcsExports(build=build)
    agenda = Agenda(sessions(30))
    chosen = list(agenda)[:20]

    async def ask(agenda: Agenda, chosen: list[Session]) -> bytes:
        return await exports.file(agenda, chosen, tz=PARIS, now=NOW, language="fr")

    first, *others = await asyncio.gather(*(ask(agenda, chosen) for _ in range(5)))
    assert all(o is first for o in others)  # asked five times at once, built once
    assert builds == [builds[0]] and builds[0] != threading.get_ident()  # in a thread
    assert await ask(agenda, chosen) is first
    assert await ask(agenda, list(agenda)[:10]) is not first  # another selection
    assert len(builds) == 2

    changed = Agenda([*sessions(30), *sessions(1, datetime(2026, 12, 2, 15, tzinfo=UTC))])
    rebuilt = await ask(changed, list(changed)[:20])  # a new generation: built again
    assert len(builds) == 3 and rebuilt != first
    assert await ask(changed, list(changed)[:20]) is rebuilt


async def test_agenda_ics_answers_reuse_the_file_until_the_agenda_changes(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    dispatcher, _, storage = await make_dispatcher(tmp_path, sessions(5), clock)
    try:
        first = await dispatcher.answer(typed("!agenda ics", "$i1"))
        second = await dispatcher.answer(typed("!agenda ics", "$i2", sender=BOB))
        assert isinstance(first, FileUpload) and isinstance(second, FileUpload)
        assert second.data is first.data  # not serialised again
        assert first.data.count(b"BEGIN:VEVENT") == 5

        extra = Session(
            "Webinaire Grist",
            datetime(2026, 12, 24, 14, tzinfo=UTC),
            datetime(2026, 12, 24, 15, tzinfo=UTC),
        )
        dispatcher.services.agenda.agenda = Agenda([*sessions(5), extra])
        third = await dispatcher.answer(typed("!agenda ics", "$i3"))
        assert isinstance(third, FileUpload)
        assert b"Webinaire Grist" in third.data and third.data.count(b"BEGIN:VEVENT") == 6
    finally:
        await storage.close()


# -- undecryptable messages -----------------------------------------------------------------------


class FakeOlm:
    def __init__(self) -> None:
        self.outgoing_key_requests: dict[str, object] = {}
        self.store = types.SimpleNamespace(removed=[])
        self.store.remove_outgoing_key_request = self.store.removed.append


class FakeClient:
    def __init__(self) -> None:
        self.olm = FakeOlm()
        self.requested: list[str] = []

    async def request_room_key(self, event: Any) -> None:
        self.requested.append(event.session_id)
        self.olm.outgoing_key_requests[event.session_id] = ("request", event.session_id)

    async def to_device(self, message: Any) -> None:
        pass


def garbage(event_id: str, session_id: str, sender: str = ALICE) -> Any:
    """An encrypted event no key will ever open, as nio hands it over."""
    return types.SimpleNamespace(
        event_id=event_id,
        sender=sender,
        session_id=session_id,
        device_id="DEVICE",
        room_id=None,
        source={"type": "m.room.encrypted", "content": {"session_id": session_id}},
        as_key_request=lambda *args, **kwargs: None,
    )


class Unreadable:
    def __init__(self, storage: Storage, clock: FakeClock) -> None:
        self.told: list[tuple[str, str]] = []
        self.client = FakeClient()

        async def tell(msg: IncomingMessage) -> None:
            self.told.append((msg.room_id, msg.sender))

        session = types.SimpleNamespace(
            user_id="@bot:example.org", device_id="BOTDEVICE", client=self.client
        )
        self.undecryptable = Undecryptable(
            session,  # type: ignore[arg-type]
            storage,
            Handlers(on_undecryptable=tell),
            deliver=self.deliver,
            after=timedelta(0),  # told at the first check
            clock=seconds(clock),
        )
        self.storage = storage

    async def deliver(self, room_id: str, event: Any) -> None:
        raise AssertionError("nothing here can be decrypted")

    async def keep(self, *events: tuple[str, Any]) -> None:
        for room_id, event in events:
            await self.undecryptable.keep(room_id, event)
        # The key requests go in the background.
        await asyncio.gather(*self.undecryptable._background)

    async def statuses(self) -> dict[str, str]:
        rows = await self.storage.db.fetch("SELECT event_id, status FROM undecrypted")
        return {r["event_id"]: r["status"] for r in rows}


async def test_undecryptable_notice_at_most_once_an_hour_per_sender_and_room(
    tmp_path: Path,
) -> None:
    clock = FakeClock(NOW)
    storage = await Storage.open(tmp_path / "db.sqlite")
    u = Unreadable(storage, clock)
    try:
        # Garbage with a fresh session id each time, in two rooms, and one from Bob.
        await u.keep(
            *((ROOM, garbage(f"$g{i}", f"s{i}")) for i in range(5)),
            (OTHER_ROOM, garbage("$o1", "s10")),
            (ROOM, garbage("$b1", "s11", sender=BOB)),
        )
        await u.undecryptable.check()
        assert sorted(u.told) == [(OTHER_ROOM, ALICE), (ROOM, ALICE), (ROOM, BOB)]
        statuses = await u.statuses()
        assert [statuses[f"$g{i}"] for i in range(5)] == ["told"] + ["dropped"] * 4

        clock.value += timedelta(minutes=30)
        await u.keep((ROOM, garbage("$g5", "s5")))
        await u.undecryptable.check()
        assert len(u.told) == 3 and (await u.statuses())["$g5"] == "dropped"

        clock.value += timedelta(minutes=31)  # an hour after the notice
        await u.keep((ROOM, garbage("$g6", "s6")))
        await u.undecryptable.check()
        assert u.told[3:] == [(ROOM, ALICE)]
    finally:
        await storage.close()


async def test_undecryptable_events_kept_per_sender_are_capped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    storage = await Storage.open(tmp_path / "db.sqlite")
    u = Unreadable(storage, clock)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.matrix.undecryptable"):
            await u.keep(
                *((ROOM, garbage(f"$g{i}", f"s{i}")) for i in range(MAX_PENDING_PER_SENDER + 20))
            )
            await u.keep((ROOM, garbage("$bob", "sb", sender=BOB)))
        statuses = await u.statuses()
        assert len([e for e in statuses if e.startswith("$g")]) == MAX_PENDING_PER_SENDER
        assert "$bob" in statuses  # others are still heard
        # Keys asked for the events kept only; the refusal logged once.
        assert len(u.client.requested) == MAX_PENDING_PER_SENDER + 1
        assert len([r for r in caplog.records if "not kept" in r.getMessage()]) == 1
        # Once told (and so no longer waiting), new ones are kept again.
        await u.undecryptable.check()
        await u.keep((ROOM, garbage("$later", "sl")))
        assert (await u.statuses())["$later"] == "pending"
    finally:
        await storage.close()


async def test_key_requests_are_forgotten_after_a_while(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    storage = await Storage.open(tmp_path / "db.sqlite")
    u = Unreadable(storage, clock)
    try:
        await u.keep((ROOM, garbage("$a", "s1")), (ROOM, garbage("$b", "s1")))
        assert u.client.requested == ["s1"]  # one request per key
        assert list(u.client.olm.outgoing_key_requests) == ["s1"]

        clock.value += timedelta(seconds=61)
        await u.keep((ROOM, garbage("$c", "s2")))
        # s1 is forgotten, by nio too: its table shrinks instead of growing for ever.
        assert list(u.client.olm.outgoing_key_requests) == ["s2"]
        assert u.client.olm.store.removed == [("request", "s1")]
        await u.keep((ROOM, garbage("$d", "s1")))
        assert u.client.requested == ["s1", "s2", "s1"]  # asked again
    finally:
        await storage.close()


# -- what goes out on Matrix ----------------------------------------------------------------------


class FakeNio:
    """What RoomPoster uses of nio's client: rooms, upload, room_send."""

    def __init__(self, encrypted: frozenset[str] = frozenset()) -> None:
        self.rooms = {
            room: types.SimpleNamespace(encrypted=room in encrypted)
            for room in (ROOM, OTHER_ROOM, "!secret:example.org")
        }
        self.uploads: list[bool] = []  # encrypted or not, per upload
        self.sent: list[dict[str, Any]] = []

    async def upload(self, provider: Any, **kwargs: Any) -> tuple[Any, Any]:
        self.uploads.append(kwargs["encrypt"])
        keys = {"key": {"k": "secret"}, "iv": "iv", "hashes": {}} if kwargs["encrypt"] else None
        return UploadResponse(f"mxc://example.org/{len(self.uploads)}"), keys

    async def room_send(self, room_id: str, kind: str, content: dict[str, Any], **_: Any) -> Any:
        self.sent.append(content)
        return types.SimpleNamespace(event_id=f"$sent{len(self.sent)}")


def poster(client: FakeNio) -> RoomPoster:
    async def shown(room_id: str, member: str | None = None) -> None:
        pass

    return RoomPoster(
        types.SimpleNamespace(client=client),  # type: ignore[arg-type]
        RatePacer(),
        room_shown=shown,
    )


async def test_a_listing_carries_an_empty_mentions_and_a_call_its_people() -> None:
    """An `m.mentions` key, even empty, turns off the clients' legacy pings by
    display name or ID (MSC3952): a listing of people pings no one."""
    client = FakeNio()
    rooms = poster(client)
    listing = Message("Mentors : Camille Dupont (@camille:example.org)", "<p>…</p>")
    await rooms.send_message(ROOM, listing, txn_id="t1")
    called = Message("✅ Camille Dupont est mentor", "<p>…</p>", mentions=("@camille:x",))
    await rooms.send_message(ROOM, called, txn_id="t2")
    assert [c["m.mentions"] for c in client.sent] == [{}, {"user_ids": ["@camille:x"]}]


async def test_the_same_file_is_uploaded_once_in_unencrypted_rooms_only() -> None:
    client = FakeNio(encrypted=frozenset({"!secret:example.org"}))
    rooms = poster(client)
    upload = FileUpload("agenda-bluehats.ics", "text/calendar", b"BEGIN:VCALENDAR\r\n")
    await rooms.send_file(ROOM, upload, txn_id="f1")
    await rooms.send_file(OTHER_ROOM, upload, txn_id="f2")
    await rooms.send_file("!secret:example.org", upload, txn_id="f3")
    await rooms.send_file("!secret:example.org", upload, txn_id="f4")
    other = FileUpload("agenda-bluehats.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nX\r\n")
    await rooms.send_file(ROOM, other, txn_id="f5")
    assert client.uploads == [False, True, True, False]  # each encrypted copy its own key
    urls = [c.get("url") or c["file"]["url"] for c in client.sent]
    assert urls[0] == urls[1] and len({urls[0], urls[2], urls[3], urls[4]}) == 4
