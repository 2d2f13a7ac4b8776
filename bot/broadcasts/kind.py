"""A kind of broadcast: declared next to its feature, registered once (`bot.broadcasts.registry`).

An outbox row names its broadcast by a text key, `<prefix>:<field>:<field>…`,
stored and read back after an upgrade (the texts are listed in the
registry). A kind declares, as a `Kind`:

- its key: a frozen dataclass subclassing `Key`, with its `prefix` and its
  fields (str or int), written in order; the last field takes the rest of
  the text, colons included (a user ID, a room ID);
- how a due row renders (`render`): a `Message`, a `Post` (an edit, a
  redaction), or None when it no longer makes sense (skipped);
- whether it is an announcement (`broadcasts.notify: room` makes it call the
  room) or calls a person (`person`: their user ID);
- what happens once a copy was sent (`sent`, with its event id).

A key also gives the transaction id of its post to a room: deterministic (a
resend after a crash reuses it, the homeserver drops the duplicate) and
distinct per room. Rows already queued keep the id stored with them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

if TYPE_CHECKING:
    from bot.agenda.sources import AgendaService
    from bot.chat import Redaction
    from bot.db.storage import Storage
    from bot.gazette.schedule import GazetteSchedule
    from bot.render import Message, Renderer

# Transaction ids of broadcasts (apart from the "bh-" + 32 hex of replies).
TXN_PREFIX = "bh-o-"

_INTEGER = re.compile(r"-?[0-9]+")


class Key:
    """A broadcast's key; subclasses are frozen dataclasses with a `prefix`."""

    __slots__ = ()
    prefix: ClassVar[str]
    txn_prefix: ClassVar[str] = TXN_PREFIX

    def __str__(self) -> str:
        values = (str(getattr(self, f.name)) for f in _fields(type(self)))
        return ":".join((self.prefix, *values))

    def txn_id(self, room_id: str) -> str:
        """The transaction id of this broadcast's post to `room_id` (37 characters)."""
        digest = hashlib.sha256(f"{self}\n{room_id}".encode()).hexdigest()[:32]
        return self.txn_prefix + digest

    @classmethod
    def parse(cls, rest: str) -> Self:
        """The key written `<prefix>:<rest>`; ValueError if `rest` does not fit its fields."""
        fields = _fields(cls)
        values = rest.split(":", len(fields) - 1)
        if len(values) != len(fields) or not all(values):
            raise ValueError(rest)
        args: list[object] = []
        for field, value in zip(fields, values, strict=True):
            if field.type in (int, "int"):
                if not _INTEGER.fullmatch(value):
                    raise ValueError(rest)
                args.append(int(value))
            else:
                args.append(value)
        return cls(*args)


def _fields(cls: type[Key]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Post:
    """What a row sends: a message, an edit of `replaces`, a redaction."""

    reply: Message | Redaction
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Env:
    """What a kind's `render` and `sent` may use: the broadcaster's services."""

    storage: Storage
    renderer: Renderer
    agenda: AgendaService
    prefix: str
    now: Callable[[], datetime]
    # The editorial gazette (None: off).
    gazette: GazetteSchedule | None = None
    # Whether a feed's entries go to `gazette` rooms.
    feed: bool = False


K = TypeVar("K", bound=Key)


@dataclass(frozen=True)
class Kind(Generic[K]):
    """A kind of broadcast, as its feature declares it."""

    key: type[K]
    # The post of a due row to a room (None: skipped, it no longer makes sense).
    render: Callable[[Env, K, str], Awaitable[Message | Post | None]]
    # An announcement to subscribed rooms: `broadcasts.notify: room` calls the room.
    announcement: bool = False
    # The person the post calls (it rings for them), if any.
    person: Callable[[K], str] | None = None
    # Once a copy was sent to a room: (env, key, room ID, its event ID).
    sent: Callable[[Env, K, str, str], Awaitable[None]] | None = None

    @property
    def prefix(self) -> str:
        return self.key.prefix


class Kinds:
    """The registered kinds, by prefix: reads a stored key once, into its kind and key."""

    def __init__(self, *kinds: Kind[Any]) -> None:
        self._kinds: dict[str, Kind[Any]] = {}
        for kind in kinds:
            if kind.prefix in self._kinds:
                raise ValueError(f"two broadcast kinds use the prefix {kind.prefix!r}")
            self._kinds[kind.prefix] = kind

    def __iter__(self) -> Iterator[Kind[Any]]:
        return iter(self._kinds.values())

    def read(self, text: str) -> tuple[Kind[Any], Any]:
        """The kind and key written as `text` by `str(key)`; ValueError if it is not one."""
        prefix, colon, rest = text.partition(":")
        if not colon or not rest:
            raise ValueError(f"not a broadcast key: {text!r}")
        kind = self._kinds.get(prefix)
        if kind is None:
            raise ValueError(f"unknown broadcast kind: {text!r}")
        try:
            return kind, kind.key.parse(rest)
        except ValueError:
            raise ValueError(f"malformed broadcast key: {text!r}") from None
