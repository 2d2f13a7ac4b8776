"""Reminders and programme-change notices: when they are due, and what they post.

One rule (`ReminderRule`, from the `reminders:` section) answers "when":
a rooms' reminder `offsets` before each session (rooms subscribed to
`rappels`), a person's `personal` before (`!rappelle-moi`), each sent up to
`grace` late and never once the session started. The broadcaster queues
what it says is due and sleeps until the next time it gives;
`!abonnements` lists the next times it gives.

The broadcast kinds of the `rappels` subscription and of personal reminders
are declared here (registered in `bot.broadcasts.registry`):

    reminder:<session id>:<seconds before the start>:<start, Unix time>
    personal:<session id>:<start, Unix time>:<user id>
    change:<programme change key>
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from bot.broadcasts.kind import Env, Key, Kind
from bot.render import Message
from bot.views import after_sid, render_change, views

if TYPE_CHECKING:
    from bot.agenda.model import Agenda, Session
    from bot.config.agenda import RemindersConfig

log = logging.getLogger(__name__)

# The smallest step of a datetime.
_INSTANT = timedelta(microseconds=1)
# The 🔔 trigger (`bot.commands.personal`): what a post presenting sessions is marked with.
REMIND = "remind"


def presenting(message: Message, sids: Iterable[str]) -> Message:
    """`message`, presenting these sessions: a 🔔 on it asks for reminders of them."""
    return message.marked(REMIND, sids)


@dataclass(frozen=True, slots=True)
class Due:
    """A rooms' reminder of `session`, `offset` before its start, due `at`."""

    session: Session
    offset: timedelta
    at: datetime

    @property
    def key(self) -> ReminderKey:
        seconds, start = int(self.offset.total_seconds()), int(self.session.start.timestamp())
        return ReminderKey(self.session.sid, seconds, start)


@dataclass(frozen=True, slots=True)
class ReminderRule:
    """When reminders are due (the one place it is computed)."""

    offsets: tuple[timedelta, ...]
    grace: timedelta
    personal: timedelta

    @classmethod
    def of(cls, config: RemindersConfig) -> ReminderRule:
        return cls(tuple(config.offsets), config.grace, config.personal)

    def due(self, agenda: Agenda, now: datetime) -> list[Due]:
        """Rooms' reminders due at or before `now`, of sessions not started."""
        longest = max(self.offsets, default=timedelta(0))
        out = []
        # `between` ends before its end: one starting exactly `longest` from now is due too.
        for session in agenda.between(now, now + longest + _INSTANT):
            if session.start <= now:
                continue  # already started: no reminder any more
            for offset in self.offsets:
                if (at := session.start - offset) <= now:
                    out.append(Due(session, offset, at))
        return out

    def late(self, due: datetime, now: datetime) -> bool:
        """Whether a reminder due at `due` is past its grace at `now` (then skipped)."""
        return now - due > self.grace

    def personal_due(self, session: Session) -> datetime:
        """When a person's reminder of `session` is due."""
        return session.start - self.personal

    def next_times(
        self,
        agenda: Agenda,
        now: datetime,
        count: int = 1,
        *,
        personal: bool = False,
        before: datetime | None = None,
    ) -> list[tuple[datetime, Session]]:
        """The next `count` reminders due after `now` (and before `before`): (when,
        session), soonest first; with `personal`, a person's reminder of any session too."""
        offsets = (*self.offsets, self.personal) if personal else self.offsets
        if not offsets:
            return []
        longest = max(offsets)
        end = None if before is None else before + longest
        due: list[tuple[datetime, Session]] = []
        for session in agenda.between(now, end):
            if session.start <= now:
                continue
            if len(due) >= count and session.start - longest > due[-1][0]:
                break  # sorted by start: nothing later can come sooner
            due.extend(
                (at, session)
                for off in offsets
                if now < (at := session.start - off) and (before is None or at < before)
            )
            due.sort(key=lambda d: d[0])
            del due[count:]
        return due

    def next_time(self, agenda: Agenda, now: datetime, before: datetime) -> datetime | None:
        """When the next reminder, a room's or a person's, falls due before `before`."""
        found = self.next_times(agenda, now, personal=True, before=before)
        return found[0][0] if found else None


# -- the broadcasts: a reminder to rooms, a person's reminder, a programme change ------


@dataclass(frozen=True, slots=True)
class ReminderKey(Key):
    """A reminder to subscribed rooms, `offset` seconds before the session's `start`."""

    prefix: ClassVar[str] = "reminder"
    sid: str
    offset: int
    start: int


@dataclass(frozen=True, slots=True)
class PersonalKey(Key):
    """A `!rappelle-moi` reminder to a person's direct room."""

    prefix: ClassVar[str] = "personal"
    sid: str
    start: int
    user_id: str  # holds a ':' itself: it comes last, whole


@dataclass(frozen=True, slots=True)
class ChangeKey(Key):
    """The notice of a programme change (`agenda_changes.key`)."""

    prefix: ClassVar[str] = "change"
    change: str


async def _reminder(env: Env, key: ReminderKey, room_id: str) -> Message | None:
    return _render_reminder(env, key.sid, key.start, personal=False)


async def _personal(env: Env, key: PersonalKey, room_id: str) -> Message | None:
    return _render_reminder(env, key.sid, key.start, personal=True)


def _render_reminder(env: Env, sid: str, start: int, *, personal: bool) -> Message | None:
    session = env.agenda.agenda.get(sid)
    now = env.now()
    if session is None or session.cancelled or session.start <= now:
        return None  # gone, cancelled or started since it was queued
    if int(session.start.timestamp()) != start:
        return None  # moved: the reminder for its new time is another broadcast
    (view,) = views([session], now, env.renderer)
    message = env.renderer.render(
        "reminder",
        v=view,
        until=env.renderer.until(session.start, now),
        today=env.renderer.local(now).date(),
        prefix=env.prefix,
        personal=personal,
    )
    # A 🔔 on a room's reminder asks for a personal reminder of its session.
    return message if personal else presenting(message, (session.sid,))


async def _change(env: Env, key: ChangeKey, room_id: str) -> Message | None:
    record = await env.storage.agenda.change(key.change)
    if record is None:
        return None
    now = env.now()
    starts = [
        datetime.fromisoformat(str(state["start"]))
        for state in (record.payload.get("before"), record.payload.get("after"))
        if isinstance(state, dict)
    ]
    if starts and max(starts) <= now:
        log.info("broadcasts: %s not sent, the session has started", key)
        return None
    # The session as it is now: same id after a moderator's edit, a new
    # one when its calendar moved it (its id follows its time and title).
    agenda = env.agenda.agenda
    current = next(
        (
            s
            for sid in (record.sid, after_sid(record))
            if sid and (s := agenda.get(sid)) is not None and not s.cancelled
        ),
        None,
    )
    message = render_change(
        record,
        now=now,
        renderer=env.renderer,
        prefix=env.prefix,
        sid=current.sid if current else None,
    )
    if current is None or current.start <= now or record.kind == "cancelled":
        return message
    return presenting(message, (current.sid,))


REMINDER = Kind(ReminderKey, _reminder, announcement=True)
PERSONAL = Kind(PersonalKey, _personal, person=lambda key: key.user_id)
CHANGE = Kind(ChangeKey, _change, announcement=True)
