"""What the gazette posts through the outbox: its broadcast kinds, read back when sent.

Registered in `bot.broadcasts.registry`:

    issue:<gazette number>                   an issue, to the rooms subscribed to `gazette`
    issue-edit:<gazette number>:<revision>   a correction: each room's copy edited (m.replace)
    issue-redact:<gazette number>            a retraction: each room's copy redacted
    desk:<what>:<reference>                  a notice to the editors' room
    gazette:<edition>                        the notice of an edition, before the editorial
                                             gazette (rows queued then are still sent)

An issue's copy is recorded when sent (its event id): corrections and the
retraction act on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from bot.broadcasts.kind import Env, Key, Kind, Post
from bot.chat import Redaction
from bot.db import gazette as store
from bot.render import Message

if TYPE_CHECKING:
    from bot.db.gazette import Issue
    from bot.gazette.desk import Desk

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssueKey(Key):
    """A published gazette issue, to the rooms subscribed to the gazette."""

    prefix: ClassVar[str] = "issue"
    number: int


@dataclass(frozen=True, slots=True)
class IssueEditKey(Key):
    """A correction of an issue: each room's copy edited (`m.replace`) to `revision`."""

    prefix: ClassVar[str] = "issue-edit"
    number: int
    revision: int


@dataclass(frozen=True, slots=True)
class IssueRedactKey(Key):
    """A retraction of an issue: each room's copy redacted."""

    prefix: ClassVar[str] = "issue-redact"
    number: int


@dataclass(frozen=True, slots=True)
class DeskKey(Key):
    """A notice to the editors' room: `what` ("draft", "missed"), about `ref`."""

    prefix: ClassVar[str] = "desk"
    what: str
    ref: str


@dataclass(frozen=True, slots=True)
class GazetteKey(Key):
    """The scheduled announcement of one edition (before the editorial gazette:
    rows queued then are still sent, no new one is queued)."""

    prefix: ClassVar[str] = "gazette"
    edition: str

    @classmethod
    def at(cls, fire: datetime) -> GazetteKey:
        """The edition scheduled at `fire`."""
        return cls(f"{fire.astimezone(UTC):%Y%m%dT%H%M}")


class Posts:
    """The gazette's outbox rows, read back when sent (`bot.broadcast` sends them)."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def issue(self, key: IssueKey, room_id: str) -> Post | None:
        issue = await self._current(key.number)
        return None if issue is None else Post(_message(issue))

    async def edit(self, key: IssueEditKey, room_id: str) -> Post | None:
        issue = await self._current(key.number)
        copy = None if issue is None else await self.desk.store.copy(key.number, room_id)
        return None if issue is None or copy is None else Post(_message(issue), replaces=copy)

    async def redaction(self, key: IssueRedactKey, room_id: str) -> Post | None:
        issue = await self._published(key.number)
        copy = None if issue is None else await self.desk.store.copy(key.number, room_id)
        reason = self.desk.renderer.gettext("Gazette withdrawn by the moderators")
        return None if copy is None else Post(Redaction(copy, reason))

    async def sent(self, key: IssueKey, room_id: str, event_id: str | None) -> None:
        """A post went out: an issue's copy is recorded (corrections and retraction need it)."""
        if event_id is None:
            return
        gazette = self.desk.store
        await gazette.copy_sent(key.number, room_id, event_id)
        issue = await gazette.published(key.number)
        if issue is not None and issue.status == store.RETRACTED:
            # Retracted while this copy was on its way: it goes too.
            await self.desk.storage.outbox.queue(IssueRedactKey(key.number), room_id)

    async def notice(self, key: DeskKey) -> Message | None:
        desk = self.desk
        draft = await desk.store.draft()
        approval = None if draft is None else await desk.draft_approval(draft)
        if key.what == "draft":
            if draft is None or str(draft.id) != key.ref:
                return None  # published or replaced since
            return desk.notice("draft", number=draft.number, fire=draft.fire_at, approval=approval)
        if key.what == "missed":
            number = None if draft is None else draft.number
            return desk.notice("missed", number=number, fire=int(key.ref), approval=approval)
        log.error("gazette: unknown editors' notice %s", key)
        return None

    async def _published(self, number: int) -> Issue | None:
        issue = await self.desk.store.published(number)
        if issue is None or issue.body is None or issue.html is None:
            return None
        return issue

    async def _current(self, number: int) -> Issue | None:
        """The issue as it reads now, unless retracted (neither posted nor edited any more):
        a copy sent late carries the corrections, and an older edit sent after a
        newer one cannot undo it."""
        issue = await self._published(number)
        return issue if issue is not None and issue.status == store.PUBLISHED else None


def _message(issue: Issue) -> Message:
    assert issue.body is not None and issue.html is not None
    return Message(issue.body, issue.html)


# -- the kinds --------------------------------------------------------------------


def _posts(env: Env, key: Key) -> Posts | None:
    if env.gazette is None:
        log.info("broadcasts: %s not sent, the gazette is off", key)
        return None
    return env.gazette.posts


async def _issue(env: Env, key: IssueKey, room_id: str) -> Post | None:
    posts = _posts(env, key)
    return None if posts is None else await posts.issue(key, room_id)


async def _issue_sent(env: Env, key: IssueKey, room_id: str, event_id: str) -> None:
    if env.gazette is not None:
        await env.gazette.posts.sent(key, room_id, event_id)


async def _edit(env: Env, key: IssueEditKey, room_id: str) -> Post | None:
    posts = _posts(env, key)
    return None if posts is None else await posts.edit(key, room_id)


async def _redaction(env: Env, key: IssueRedactKey, room_id: str) -> Post | None:
    posts = _posts(env, key)
    return None if posts is None else await posts.redaction(key, room_id)


async def _desk(env: Env, key: DeskKey, room_id: str) -> Message | None:
    posts = _posts(env, key)
    return None if posts is None else await posts.notice(key)


async def _edition(env: Env, key: GazetteKey, room_id: str) -> Message:
    return env.renderer.render("gazette_notice", prefix=env.prefix)


ISSUE = Kind(IssueKey, _issue, announcement=True, sent=_issue_sent)
# A correction calls the room as the issue did: an edit keeps the kind of
# the message it edits (and never rings again).
ISSUE_EDIT = Kind(IssueEditKey, _edit, announcement=True)
ISSUE_REDACT = Kind(IssueRedactKey, _redaction)
DESK = Kind(DeskKey, _desk)
GAZETTE_NOTICE = Kind(GazetteKey, _edition, announcement=True)
