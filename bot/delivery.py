"""The one sender: attempts, backoff, permanent errors, pacing and metrics.

Answers to commands and posts to rooms leave the bot through `Sender.deliver`.
Each item carries a transaction id fixed before the first attempt (derived
from the command's event, or stored in the outbox row), so a resend after a
crash or a timeout is deduplicated by the homeserver. What to send, and where,
is decided by the callers (the dispatcher routes answers, the broadcaster
decides what is due); whether it went out is decided here, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.chat import ChatClient, FileUpload, Redaction, Reply, SendError
from bot.db.storage import Storage
from bot.ops import Metrics
from bot.render import Message

log = logging.getLogger(__name__)

# Attempts per item, over all runs of the bot: an item that kills the bot
# while being sent is not retried at every restart forever.
SEND_ATTEMPTS = 5


class Kind(StrEnum):
    REPLY = "reply"
    BROADCAST = "broadcast"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send, with the transaction id that makes a resend harmless."""

    kind: Kind
    room_id: str
    reply: Reply
    txn_id: str
    # What the logs call it: "answer to $event", "reminder:… to !room".
    label: str
    reply_to: str | None = None
    thread_root: str | None = None
    # A message of the bot's that this one edits in place (`m.replace`); files
    # cannot be edited, so this is for messages only.
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Attempts:
    """What is stored about an item's attempts.

    `made`: attempts already started (by this run or an earlier one).
    `record`: stores one more attempt; called BEFORE it is made, so that a
    crash during the send counts. `first_recorded`: the next attempt was
    stored with the item itself (a command is recorded with one attempt,
    sparing a write before its first answer).
    """

    made: int
    record: Callable[[], Awaitable[None]]
    first_recorded: bool = False


@dataclass(frozen=True, slots=True)
class Delivered:
    sent: bool
    event_id: str | None = None


class Sender:
    """Sends items with retries; one instance per pace (answers are not paced).

    `pace`: at least this many seconds between two sends of this sender,
    across all rooms. `in_flight`: sends at once, so that a rate limit (429,
    which the Matrix adapter waits out) does not pile requests up.
    """

    def __init__(
        self,
        chat: ChatClient,
        storage: Storage,
        *,
        retry_delay: float,
        metrics: Metrics | None = None,
        pace: float = 0.0,
        in_flight: int | None = None,
    ) -> None:
        self._chat = chat
        self._storage = storage
        self._retry_delay = retry_delay
        self._metrics = metrics or Metrics()
        self._pace = pace
        self._pacer = asyncio.Lock()
        self._last_send = 0.0
        self._in_flight = asyncio.Semaphore(in_flight) if in_flight else None

    async def deliver(self, out: Outgoing, attempts: Attempts) -> Delivered:
        """Send `out` until it is sent, a permanent error, or SEND_ATTEMPTS in all."""
        made = attempts.made
        reason = ""
        while made < SEND_ATTEMPTS:
            made += 1
            if not (attempts.first_recorded and made == 1):
                await attempts.record()
            try:
                event_id = await self._send_once(out)
            except SendError as exc:
                if exc.permanent:
                    reason = str(exc)
                    break
                delay = self._retry_delay * 2 ** (made - 1)
                log.warning("%s not sent (%s), retrying in %.0fs", out.label, exc, delay)
                await asyncio.sleep(delay)
                continue
            if out.replaces and isinstance(out.reply, Message):
                # Reactions go to the post edited, now presenting these sessions.
                await self._storage.posts.edited(out.replaces, out.room_id, out.reply.sessions)
            elif event_id and isinstance(out.reply, Message) and out.reply.sessions:
                # A 🔔 reaction to this post asks for reminders of its sessions.
                await self._storage.posts.record(event_id, out.room_id, out.reply.sessions)
            if event_id and isinstance(out.reply, Message) and out.reply.approves:
                # A ✅ on this preview approves what it shows.
                await self._storage.gazette.previewed(event_id, out.room_id, out.reply.approves)
            self._count(out.kind, "sent")
            return Delivered(sent=True, event_id=event_id)
        log.error("giving up %s: %s", out.label, reason or f"{made} attempt(s) failed")
        self._count(out.kind, "failed")
        return Delivered(sent=False)

    def skipped(self, kind: Kind) -> None:
        """An item that will not be sent (it no longer makes sense)."""
        self._count(kind, "skipped")

    def _count(self, kind: Kind, outcome: str) -> None:
        if kind is Kind.BROADCAST:
            self._metrics.broadcasts.labels(outcome).inc()

    async def _send_once(self, out: Outgoing) -> str | None:
        if self._in_flight is None:
            return await self._post(out)
        async with self._in_flight:
            await self._wait_turn()
            return await self._post(out)

    async def _post(self, out: Outgoing) -> str | None:
        if isinstance(out.reply, Redaction):
            await self._chat.redact(
                out.room_id, out.reply.event_id, reason=out.reply.reason, txn_id=out.txn_id
            )
            return None
        if isinstance(out.reply, FileUpload):
            if out.replaces:  # a caller's mistake, not the network's: no retry
                raise SendError("a file cannot edit a message", permanent=True)
            await self._chat.send_file(
                out.room_id,
                out.reply,
                txn_id=out.txn_id,
                reply_to=out.reply_to,
                thread_root=out.thread_root,
            )
            return None
        return await self._chat.send_message(
            out.room_id,
            out.reply,
            txn_id=out.txn_id,
            reply_to=out.reply_to,
            thread_root=out.thread_root,
            replaces=out.replaces,
        )

    async def _wait_turn(self) -> None:
        """At most one send every `pace` seconds, across all rooms."""
        if self._pace <= 0:
            return
        async with self._pacer:
            delay = self._last_send + self._pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._last_send = time.monotonic()
