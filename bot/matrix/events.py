"""What the sync hands to the core: the handlers the core sets, and timeline
events (plain or decrypted) turned into `IncomingMessage`, `IncomingReaction`
and `IncomingRedaction`. The bot's own events are not handed over."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nio import ReactionEvent, RoomMessageText

from bot.chat import (
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    MembersChanged,
    RoomLeft,
    RoomUpgraded,
)
from bot.matrix.login import Session

MessageSink = Callable[[IncomingMessage], Awaitable[None]]


@dataclass
class Handlers:
    """Set by the core before `MatrixChat.run()`."""

    # Where new messages go, in timeline order.
    on_message: MessageSink | None = None
    # Where new reactions and redactions go (same guarantees as messages).
    on_reaction: Callable[[IncomingReaction], Awaitable[None]] | None = None
    on_redaction: Callable[[IncomingRedaction], Awaitable[None]] | None = None
    # Told about an encrypted message that stayed unreadable (body empty).
    on_undecryptable: MessageSink | None = None
    # Awaited after each sync batch, before the next long-poll starts.
    on_batch_end: Callable[[], Awaitable[None]] | None = None
    # Room lifecycle (`bot.matrix.rooms`): the bot left or was removed; members
    # came or went; a room was upgraded by someone the invite rules allow.
    on_left: Callable[[RoomLeft], Awaitable[None]] | None = None
    on_members: Callable[[MembersChanged], Awaitable[None]] | None = None
    on_upgrade: Callable[[RoomUpgraded], Awaitable[None]] | None = None


class IncomingEvents:
    def __init__(self, session: Session, handlers: Handlers) -> None:
        self._session = session
        self._handlers = handlers

    async def deliver(self, room_id: str, event: Any) -> None:
        """Hand a (decrypted or plain) timeline event to the core."""
        user_id = self._session.user_id
        handlers = self._handlers
        source = getattr(event, "source", None) or {}
        if source.get("type") == "m.room.redaction":
            # Rooms v11+ carry `redacts` in the content (Synapse repeats it outside).
            redacts = source.get("redacts") or (source.get("content") or {}).get("redacts")
            sender = source.get("sender")
            if isinstance(redacts, str) and sender != user_id and handlers.on_redaction is not None:
                await handlers.on_redaction(
                    IncomingRedaction(room_id, str(source.get("event_id")), str(sender), redacts)
                )
            return
        if isinstance(event, ReactionEvent):
            if event.sender != user_id and handlers.on_reaction is not None:
                await handlers.on_reaction(
                    IncomingReaction(
                        room_id, event.event_id, event.sender, event.reacts_to, event.key
                    )
                )
            return
        msg = self._incoming(room_id, event)
        if msg is not None and handlers.on_message is not None:
            await handlers.on_message(msg)

    def _incoming(self, room_id: str, event: Any) -> IncomingMessage | None:
        user_id = self._session.user_id
        # m.notice (other bots, ourselves) and m.emote are never commands.
        if not isinstance(event, RoomMessageText) or event.sender == user_id:
            return None
        content = event.source.get("content", {})
        relates = content.get("m.relates_to") or {}
        ts = event.server_timestamp if isinstance(event.server_timestamp, int) else None
        if relates.get("rel_type") == "m.replace":
            return _edit(room_id, event, content, relates, user_id, ts)
        if "m.new_content" in content:
            return None  # malformed edit (no relation): neither a command nor an edit
        thread_root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        mentions = _mentions(content, user_id)
        return IncomingMessage(
            room_id, event.event_id, event.sender, event.body, thread_root, mentions, ts=ts
        )


def _edit(
    room_id: str,
    event: Any,
    content: dict[str, Any],
    relates: dict[str, Any],
    user_id: str,
    ts: int | None,
) -> IncomingMessage | None:
    """An edit (`m.replace`): the new text is in `m.new_content`, not in `body`
    (which is the "* …" fallback for clients that do not know edits)."""
    new = content.get("m.new_content")
    original = relates.get("event_id")
    if not isinstance(new, dict) or not isinstance(original, str):
        return None
    body = new.get("body")
    if new.get("msgtype") != "m.text" or not isinstance(body, str):
        # Turned into an emote, a notice, a file: no command any more.
        body = ""
    return IncomingMessage(
        room_id,
        event.event_id,
        event.sender,
        body,
        mentions=_mentions(new, user_id),
        ts=ts,
        replaces=original,
    )


def _mentions(content: dict[str, Any], user_id: str) -> tuple[str, ...]:
    mentioned = (content.get("m.mentions") or {}).get("user_ids") or []
    return tuple(u for u in mentioned if isinstance(u, str) and u != user_id)[:20]
