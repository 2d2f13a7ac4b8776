"""Fakes for unit tests of the core: a recording chat client and a settable clock,
and the worlds built on them (a dispatcher; the broadcast `World` of the
`world` fixture, which conftest.py makes visible to every test file)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot import config as configuration
from bot.agenda.model import Agenda, Session
from bot.agenda.sources import AgendaService
from bot.broadcast import Broadcaster
from bot.chat import FileUpload, IncomingMessage, SendError, SentCheck, UnknownUser
from bot.commands import build_registry
from bot.commands.core import Services
from bot.db.storage import Storage
from bot.dispatch import Dispatcher
from bot.render import Message, Renderer


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def __call__(self) -> datetime:
        return self.value


@dataclass
class Sent:
    room_id: str
    message: Message | FileUpload
    txn_id: str
    reply_to: str | None
    thread_root: str | None
    event_id: str = ""
    # The notice of the bot's this one edits (`m.replace`), if any.
    replaces: str | None = None


@dataclass
class FakeChat:
    user_id: str = "@bot:example.org"
    levels: dict[tuple[str, str], float] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    failures: list[SendError] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    unknown_users: set[str] = field(default_factory=set)
    direct_rooms: list[tuple[str, str]] = field(default_factory=list)
    # Rooms the bot is in, with how many others are joined or invited.
    rooms: dict[str, int | None] = field(default_factory=dict)
    # Rooms `join_room` refuses (invite-only, no invite); joins and leaves made.
    unjoinable: set[str] = field(default_factory=set)
    joins: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    # The room each room replaces (its `m.room.create`'s predecessor); a room
    # not listed names none, one listed as None cannot be read.
    predecessors: dict[str, str | None] = field(default_factory=dict)
    leaves: list[str] = field(default_factory=list)
    # (room, event redacted, transaction id) of each redaction made.
    redactions: list[tuple[str, str, str]] = field(default_factory=list)
    # (room, user) pairs not joined; everyone else is.
    not_joined: set[tuple[str, str]] = field(default_factory=set)
    # Room aliases the directory resolves.
    aliases: dict[str, str] = field(default_factory=dict)
    # Each room's `notifications.room` power level (50 where not listed).
    room_mention_levels: dict[str, float] = field(default_factory=dict)
    device_id: str = "FAKEDEVICE"
    # Rooms whose history cannot tell what the bot sent (events of another
    # device), and the (room, transaction id) of each look made there.
    unreadable: set[str] = field(default_factory=set)
    looked_for: list[tuple[str, str]] = field(default_factory=list)

    async def send_message(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
        replaces: str | None = None,
    ) -> str:
        if self.failures:
            raise self.failures.pop(0)
        # Like a homeserver: the same transaction id gives back the same event.
        event_id = f"$ev-{txn_id}"
        if replaces is not None:  # an edit keeps no relation but m.replace
            reply_to = thread_root = None
        self.sent.append(
            Sent(room_id, message, txn_id, reply_to, thread_root, event_id, replaces=replaces)
        )
        return event_id

    async def send_file(
        self,
        room_id: str,
        upload: FileUpload,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(Sent(room_id, upload, txn_id, reply_to, thread_root))

    async def redact(self, room_id: str, event_id: str, *, reason: str, txn_id: str) -> None:
        if self.failures:
            raise self.failures.pop(0)
        if (room_id, event_id, txn_id) not in self.redactions:  # a resend: deduplicated
            self.redactions.append((room_id, event_id, txn_id))

    async def find_sent(self, room_id: str, txn_id: str, *, since: float) -> SentCheck:
        """The room's history is what was sent (`sent`), whatever its age."""
        self.looked_for.append((room_id, txn_id))
        for s in self.sent:
            if (s.room_id, s.txn_id) == (room_id, txn_id):
                return SentCheck(s.event_id or f"$ev-{txn_id}")
        return SentCheck(None, conclusive=room_id not in self.unreadable)

    async def open_direct_room(self, user_id: str) -> str:
        room_id = f"!dm-{user_id.strip('@').replace(':', '-')}:example.org"
        self.direct_rooms.append((user_id, room_id))
        return room_id

    async def display_name(self, user_id: str) -> str | None:
        if user_id in self.unknown_users:
            raise UnknownUser(user_id)
        return self.names.get(user_id)

    async def power_level(self, room_id: str, user_id: str) -> float:
        return self.levels.get((room_id, user_id), 0)

    async def notification_level(self, room_id: str, key: str = "room") -> float:
        assert key == "room"
        return self.room_mention_levels.get(room_id, 50)

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return (room_id, user_id) not in self.not_joined

    async def resolve_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    async def join_room(self, room_id: str, *, via: Sequence[str] = ()) -> bool:
        self.joins.append((room_id, tuple(via)))
        if room_id in self.unjoinable:
            return False
        self.rooms.setdefault(room_id, 1)
        return True

    async def predecessor(self, room_id: str) -> str | None:
        return self.predecessors.get(room_id, "")

    async def leave_room(self, room_id: str) -> None:
        self.leaves.append(room_id)
        self.rooms.pop(room_id, None)

    def others_in_rooms(self) -> dict[str, int | None]:
        return dict(self.rooms)

    async def joined_rooms(self) -> set[str] | None:
        return set(self.rooms)


class StaticAgenda(AgendaService):
    """An AgendaService holding given sessions (no sources)."""

    def __init__(self, sessions: list[Session]) -> None:
        self.agenda = Agenda(sessions)


def make_config(tmp_path: Path, **sections: Any) -> configuration.Config:
    raw: dict[str, Any] = {
        "matrix": {
            "homeserver": "http://127.0.0.1:1",
            "user_id": "@bot:example.org",
            "password": "x",
        },
        "storage": {"path": str(tmp_path / "data")},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return configuration.from_dict(raw, env={})


async def make_dispatcher(
    tmp_path: Path,
    sessions: list[Session],
    clock: FakeClock,
    chat: FakeChat | None = None,
    **sections: Any,
) -> tuple[Dispatcher, FakeChat, Storage]:
    cfg = make_config(tmp_path, **sections)
    storage = await Storage.open(tmp_path / "db.sqlite")
    chat = chat or FakeChat()
    services = Services(
        config=cfg,
        renderer=Renderer(cfg.bot.language, cfg.bot.tz, cfg.bot.templates),
        agenda=StaticAgenda(sessions),
        now=clock,
    )
    # The limits' monotonic clock is the fake clock too: a test moves both.
    dispatcher = Dispatcher(
        build_registry(),
        services,
        chat,
        storage,
        retry_delay=0,
        clock=lambda: clock.value.timestamp(),
    )
    return dispatcher, chat, storage


# -- a broadcast world: dispatcher, fake chat and clock, real storage and agenda -----

PARIS = ZoneInfo("Europe/Paris")
WORLD_NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the world's clock at start
MOD = "@mod:example.org"
ROOMS = ["!a:example.org", "!b:example.org", "!c:example.org"]
START = datetime(2026, 11, 24, 14, tzinfo=PARIS).astimezone(UTC)  # the webinar
CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\nUID:g@t\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Paris:20261124T140000\r\n"
    b"DURATION:PT1H\r\nSUMMARY:Webinaire Grist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@dataclass
class World:
    dispatcher: Dispatcher
    chat: FakeChat
    storage: Storage
    agenda: AgendaService
    clock: FakeClock
    storage_path: Path

    def broadcaster(
        self, offsets: tuple[timedelta, ...] = (), notify: Literal["none", "room"] = "none"
    ) -> Broadcaster:
        return Broadcaster(
            self.storage,
            self.chat,
            Renderer("fr", PARIS),
            self.agenda,
            prefix="!",
            now=self.clock,
            pace=timedelta(0),
            offsets=list(offsets),
            grace=timedelta(minutes=15),
            notify=notify,
            retry_delay=0,
        )

    async def say(self, text: str, room: str = ROOMS[0], sender: str = MOD) -> str:
        reply = await self.dispatcher.answer(IncomingMessage(room, f"$x{text}", sender, text))
        assert isinstance(reply, Message)
        return reply.body

    def notices(self) -> list[tuple[str, str, str]]:
        return [
            (s.room_id, s.message.body, s.txn_id)
            for s in self.chat.sent
            if isinstance(s.message, Message) and s.message.body.startswith("⚠️")
        ]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    source = tmp_path / "agenda.ics"
    source.write_bytes(CALENDAR)
    storage = await Storage.open(tmp_path / "db.sqlite")
    clock = FakeClock(WORLD_NOW)
    chat = FakeChat(levels={(room, MOD): 50 for room in ROOMS})
    async with aiohttp.ClientSession() as http:
        agenda = AgendaService([str(source)], storage, http, PARIS, timedelta(days=366), clock)
        await agenda.start()
        # MOD moderates the first room, the community's moderators' room.
        cfg = make_config(tmp_path, bot={"moderator_rooms": [ROOMS[0]]})
        services = Services(config=cfg, renderer=Renderer("fr", PARIS), agenda=agenda, now=clock)
        dispatcher = Dispatcher(build_registry(), services, chat, storage, retry_delay=0)
        yield World(dispatcher, chat, storage, agenda, clock, tmp_path)
    await storage.close()


def grist(world: World) -> str:
    (session,) = list(world.agenda.agenda)
    return session.sid
