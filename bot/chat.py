"""What the core needs from a chat network, without importing nio.

`bot.matrix.client` implements `ChatClient` for Matrix; unit tests use a recording
fake. Commands and rendering only ever see these types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self

from bot.render import Message


@dataclass(frozen=True, slots=True)
class Triggered:
    """A command run by a reaction, or by taking one back: what it resolved to.

    `name`: the reaction trigger declared with the command
    (`bot.commands.core.Reaction`); `reaction`: the reaction's event (when
    taken back: the reaction taken back; "" if not known); `values`: what the
    post reacted to means to that trigger (the sessions it presents, the
    revision a preview shows), or, taken back, what the reaction gave.
    Stored with the inbox row, so that an answer after a crash runs the same.
    """

    name: str
    reaction: str
    values: tuple[str, ...] = ()
    undo: bool = False

    def dumps(self) -> str:
        return json.dumps(
            {"name": self.name, "reaction": self.reaction, "values": self.values, "undo": self.undo}
        )

    @classmethod
    def loads(cls, text: str) -> Self:
        data: dict[str, Any] = json.loads(text)
        values = tuple(str(v) for v in data.get("values", ()))
        return cls(str(data["name"]), str(data["reaction"]), values, bool(data.get("undo")))


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    room_id: str
    event_id: str
    sender: str
    body: str
    thread_root: str | None = None
    # Users the sender mentioned with pills (`m.mentions`): clients put the
    # display name in `body`, the Matrix ID only here. Not kept in the inbox.
    mentions: tuple[str, ...] = ()
    # Answer in the sender's direct room rather than in the room (a reaction
    # whose trigger is declared private).
    direct: bool = False
    # When it was sent (origin_server_ts, ms since the epoch); None if unknown.
    ts: int | None = None
    # Set on an edit (`m.replace`): the event id of the message it edits;
    # `body` is then the new text.
    replaces: str | None = None
    # Run by a reaction (or by taking one back) rather than typed: what it
    # resolved to. The answer is then not a reply to the reaction event.
    trigger: Triggered | None = None


@dataclass(frozen=True, slots=True)
class IncomingReaction:
    """Someone reacted `key` (an emoji) to the event `target`."""

    room_id: str
    event_id: str
    sender: str
    target: str
    key: str


@dataclass(frozen=True, slots=True)
class IncomingRedaction:
    """Someone removed the event `redacts` (a message, or a reaction taken back)."""

    room_id: str
    event_id: str
    sender: str
    redacts: str


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """The bot is no longer in the room: `how` it went, and who did it (`by`)."""

    room_id: str
    how: Literal["kicked", "banned", "left"]
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Membership changed in a room the bot is in (or the room was seen at start)."""

    room_id: str
    # Members other than the bot, joined or invited (an invitee is expected:
    # a direct room waiting for its person is not empty). None: not known
    # (lazy-loaded members, no counts in this sync): nothing to conclude.
    others: int | None
    # People who left, or were kicked or banned, in this batch.
    departed: tuple[str, ...] = ()
    # The bot itself joined in this batch.
    bot_joined: bool = False


@dataclass(frozen=True, slots=True)
class RoomUpgraded:
    """A room the bot is in was upgraded (`m.room.tombstone` sent by `sender`)."""

    old_room: str
    new_room: str
    sender: str


@dataclass(frozen=True, slots=True)
class FileUpload:
    """A file to post in the room (an `.ics` export…), instead of a message."""

    filename: str
    mimetype: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Redaction:
    """Remove an event the bot posted (a retracted gazette's copy)."""

    event_id: str
    reason: str = ""


# What a command answers: a message, or a file; a post may also be a redaction.
Reply = Message | FileUpload | Redaction


@dataclass(frozen=True, slots=True)
class SentCheck:
    """What the room shows of a message the bot may have sent already (`find_sent`).

    `event_id`: found, this is it. Otherwise `conclusive` says whether the
    room proved it absent (False: some of the bot's own events could not be
    read, or the room could not be asked).
    """

    event_id: str | None
    conclusive: bool = True


class ChatClient(Protocol):
    @property
    def user_id(self) -> str: ...

    @property
    def device_id(self) -> str:
        """The bot's device: transaction ids are deduplicated per device."""
        ...

    async def find_sent(self, room_id: str, txn_id: str, *, since: float) -> SentCheck:
        """Whether the bot's recent events in the room hold the message sent
        with `txn_id` (its marker), looking back to `since` (epoch seconds)."""

    async def send_message(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
        replaces: str | None = None,
    ) -> str | None:
        """Send a message; the same `txn_id` never posts twice. Its event id.

        A message that calls no one (`Message.rings`) is a quiet notice; one
        that calls people or the room rings for them. `replaces`: a message of
        the bot's own that this one edits in place (`reply_to` and
        `thread_root` are then not used: an edit keeps the relations of the
        message it edits); an edit never rings again.
        """

    async def send_file(
        self,
        room_id: str,
        upload: FileUpload,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> None:
        """Upload a file (encrypted in encrypted rooms) and post it as `m.file`."""

    async def redact(self, room_id: str, event_id: str, *, reason: str, txn_id: str) -> None:
        """Redact an event; the same `txn_id` never redacts twice. SendError on failure."""

    async def open_direct_room(self, user_id: str) -> str:
        """Create a direct room with this user (invited); its id. SendError on failure."""

    async def display_name(self, user_id: str) -> str | None:
        """The user's display name (None if unset); UnknownUser if no such user."""

    async def power_level(self, room_id: str, user_id: str) -> float:
        """The user's power level in the room (creators of v12 rooms: infinity)."""

    async def notification_level(self, room_id: str, key: str = "room") -> float:
        """The power level a sender needs in the room to call `key` (`room`:
        everyone, @room): its power levels' `notifications`, 50 by default;
        infinity when they cannot be read."""

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        """Whether the user is joined to the room now (False when it cannot be read)."""

    async def resolve_alias(self, alias: str) -> str | None:
        """The room ID an alias points to; None (logged) when it cannot be resolved."""

    async def join_room(self, room_id: str, *, via: Sequence[str] = ()) -> bool:
        """Join (through the servers `via`); False, logged, if refused or failed."""

    async def predecessor(self, room_id: str) -> str | None:
        """The room this one replaces, as the homeserver's `m.room.create` of it
        says (`predecessor.room_id`; "" when it names none). None when it cannot
        be read now (a room the bot is not in, a failure: logged)."""

    async def leave_room(self, room_id: str) -> None:
        """Leave the room (a failure is logged: leaving again later is harmless)."""

    def others_in_rooms(self) -> dict[str, int | None]:
        """Each room the bot is in (as synced): how many others are joined or
        invited (None: not known now)."""

    async def joined_rooms(self) -> set[str] | None:
        """The rooms the homeserver says the bot is in; None if it could not tell."""


class SendError(Exception):
    """A message could not be sent; `permanent` says whether retrying is pointless."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


class UnknownUser(Exception):
    """The homeserver says this user does not exist."""
