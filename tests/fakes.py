"""Fakes for unit tests of the core: a recording chat client and a settable clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import config as configuration
from bot.agenda.model import Agenda, Session
from bot.agenda.sources import AgendaService
from bot.chat import FileUpload, SendError, UnknownUser
from bot.commands import build_registry
from bot.db.storage import Storage
from bot.dispatch import Dispatcher, Services
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


@dataclass
class FakeChat:
    user_id: str = "@bot:example.org"
    levels: dict[tuple[str, str], float] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    failures: list[SendError] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    unknown_users: set[str] = field(default_factory=set)
    direct_rooms: list[tuple[str, str]] = field(default_factory=list)

    async def send_notice(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> str:
        if self.failures:
            raise self.failures.pop(0)
        # Like a homeserver: the same transaction id gives back the same event.
        event_id = f"$ev-{txn_id}"
        self.sent.append(Sent(room_id, message, txn_id, reply_to, thread_root, event_id))
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
    return Dispatcher(build_registry(), services, chat, storage, retry_delay=0), chat, storage
