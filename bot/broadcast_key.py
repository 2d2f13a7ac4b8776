"""What an outbox row posts, as a typed key: built, written and read here only.

An outbox row names its broadcast by a text key; the key says what to post
(and, for a reminder, for which start time: a moved session is another
broadcast). The texts below are stored in databases and read back after an
upgrade: never change them, add a kind instead.

    reminder:<session id>:<seconds before the start>:<start, Unix time>
    personal:<session id>:<start, Unix time>:<user id>
    gazette:<edition: the scheduled time, UTC, YYYYMMDDTHHMM>
    change:<programme change key>
    feed:<24 hex of sha256("<feed URL>|<entry key>")>
    moved:<the upgraded room's id>   (said once in its replacement room)
    issue:<gazette number>                          (an issue, to subscribed rooms)
    issue-edit:<gazette number>:<revision>          (a correction: m.replace of a copy)
    issue-redact:<gazette number>                   (a retraction: a copy redacted)
    desk:<what>:<reference>                         (a notice to the editors' room)

A key also gives the transaction id of its post to a room: deterministic (a
resend after a crash reuses it, the homeserver drops the duplicate) and
distinct per room. Rows already queued keep the id stored with them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

# Transaction ids of broadcasts (apart from the "bh-" + 32 hex of replies).
TXN_PREFIX = "bh-o-"
FEED_TXN_PREFIX = "bh-f-"

_INTEGER = re.compile(r"-?[0-9]+")


class _Key:
    __slots__ = ()
    _txn_prefix: ClassVar[str] = TXN_PREFIX

    def txn_id(self, room_id: str) -> str:
        """The transaction id of this broadcast's post to `room_id` (37 characters)."""
        digest = hashlib.sha256(f"{self}\n{room_id}".encode()).hexdigest()[:32]
        return self._txn_prefix + digest


@dataclass(frozen=True, slots=True)
class ReminderKey(_Key):
    """A reminder to subscribed rooms, `offset` seconds before the session's `start`."""

    sid: str
    offset: int
    start: int

    def __str__(self) -> str:
        return f"reminder:{self.sid}:{self.offset}:{self.start}"


@dataclass(frozen=True, slots=True)
class PersonalKey(_Key):
    """A `!rappelle-moi` reminder to a person's direct room."""

    sid: str
    start: int
    user_id: str

    def __str__(self) -> str:
        return f"personal:{self.sid}:{self.start}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class GazetteKey(_Key):
    """The scheduled announcement of one edition (before the editorial gazette:
    rows queued then are still sent, no new one is queued)."""

    edition: str

    @classmethod
    def at(cls, fire: datetime) -> GazetteKey:
        """The edition scheduled at `fire`."""
        return cls(f"{fire.astimezone(UTC):%Y%m%dT%H%M}")

    def __str__(self) -> str:
        return f"gazette:{self.edition}"


@dataclass(frozen=True, slots=True)
class ChangeKey(_Key):
    """The notice of a programme change (`agenda_changes.key`)."""

    change: str

    def __str__(self) -> str:
        return f"change:{self.change}"


@dataclass(frozen=True, slots=True)
class FeedKey(_Key):
    """The post of a new feed entry (its title and link are kept with the entry)."""

    _txn_prefix: ClassVar[str] = FEED_TXN_PREFIX

    digest: str

    @classmethod
    def of(cls, feed: str, entry_key: str) -> FeedKey:
        """The key of an entry of a feed (a digest: entry keys are URLs of any length)."""
        return cls(hashlib.sha256(f"{feed}|{entry_key}".encode()).hexdigest()[:24])

    def __str__(self) -> str:
        return f"feed:{self.digest}"


@dataclass(frozen=True, slots=True)
class MovedKey(_Key):
    """The notice, in a replacement room, that the upgraded room's posts follow it there."""

    old_room: str

    def __str__(self) -> str:
        return f"moved:{self.old_room}"


@dataclass(frozen=True, slots=True)
class IssueKey(_Key):
    """A published gazette issue, to the rooms subscribed to the gazette."""

    number: int

    def __str__(self) -> str:
        return f"issue:{self.number}"


@dataclass(frozen=True, slots=True)
class IssueEditKey(_Key):
    """A correction of an issue: each room's copy edited (`m.replace`) to `revision`."""

    number: int
    revision: int

    def __str__(self) -> str:
        return f"issue-edit:{self.number}:{self.revision}"


@dataclass(frozen=True, slots=True)
class IssueRedactKey(_Key):
    """A retraction of an issue: each room's copy redacted."""

    number: int

    def __str__(self) -> str:
        return f"issue-redact:{self.number}"


@dataclass(frozen=True, slots=True)
class DeskKey(_Key):
    """A notice to the editors' room: `what` ("draft", "missed"), about `ref`."""

    what: str
    ref: str

    def __str__(self) -> str:
        return f"desk:{self.what}:{self.ref}"


BroadcastKey = (
    ReminderKey
    | PersonalKey
    | GazetteKey
    | ChangeKey
    | FeedKey
    | MovedKey
    | IssueKey
    | IssueEditKey
    | IssueRedactKey
    | DeskKey
)


def parse(text: str) -> BroadcastKey:
    """The key written as `text` by `str(key)`; ValueError if it is not one."""
    kind, colon, rest = text.partition(":")
    if not colon or not rest:
        raise ValueError(f"not a broadcast key: {text!r}")
    if kind == "reminder":
        sid, offset, start = _fields(rest, 3, text)
        return ReminderKey(sid, _int(offset, text), _int(start, text))
    if kind == "personal":
        # A user id holds a ':' itself: it comes last, whole.
        sid, start, user_id = _fields(rest, 3, text, maxsplit=2)
        return PersonalKey(sid, _int(start, text), user_id)
    if kind == "gazette":
        return GazetteKey(rest)
    if kind == "change":
        return ChangeKey(rest)
    if kind == "feed":
        return FeedKey(rest)
    if kind == "moved":
        return MovedKey(rest)  # a room ID holds ':' itself: the rest, whole
    if kind == "issue":
        return IssueKey(_int(rest, text))
    if kind == "issue-edit":
        number, revision = _fields(rest, 2, text)
        return IssueEditKey(_int(number, text), _int(revision, text))
    if kind == "issue-redact":
        return IssueRedactKey(_int(rest, text))
    if kind == "desk":
        what, ref = _fields(rest, 2, text, maxsplit=1)
        return DeskKey(what, ref)
    raise ValueError(f"unknown broadcast kind: {text!r}")


def _fields(rest: str, count: int, text: str, maxsplit: int = -1) -> list[str]:
    fields = rest.split(":", maxsplit)
    if len(fields) != count or not all(fields):
        raise ValueError(f"malformed broadcast key: {text!r}")
    return fields


def _int(value: str, text: str) -> int:
    if not _INTEGER.fullmatch(value):
        raise ValueError(f"malformed broadcast key: {text!r}")
    return int(value)
