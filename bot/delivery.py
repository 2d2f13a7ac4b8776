"""The one sender: attempts, backoff, permanent errors, pacing and metrics.

Answers to commands and posts to rooms leave the bot through `Sender.deliver`;
notices sent once (the "doucement" and undecryptable notices) through
`Sender.send_once`. Each item carries a transaction id fixed before the first attempt (derived
from the command's event, or stored in the outbox row), so a resend after a
crash or a timeout is deduplicated by the homeserver. What to send, and where,
is decided by the callers (the dispatcher routes answers, the broadcaster
decides what is due); whether it went out is decided here, once. A post's
marks (what reactions to it mean) are recorded once it is sent.

The homeserver remembers a transaction id for a while, and for the device
that used it only. An item tried before, longer ago than `TXN_MEMORY_S` or
by another device of the bot, is looked for in the room first
(`ChatClient.find_sent`: each message carries its transaction id): found, it
counts as sent; proved absent, it is sent; when the room cannot tell (the
bot's own events there are unreadable to this device), it is abandoned,
counted (`bluehats_outbox_abandoned_total`) and logged: never posted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.chat import ChatClient, FileUpload, Redaction, Reply, SendError, SentCheck
from bot.db.storage import Storage
from bot.ops import Metrics
from bot.render import Message

log = logging.getLogger(__name__)

# Attempts per item, over all runs of the bot: an item that kills the bot
# while being sent is not retried at every restart forever.
SEND_ATTEMPTS = 5
# How long the homeserver is trusted to remember a transaction id. Synapse
# keeps event sends' ids 24 hours in its database, but every PUT (a
# redaction too) only 30 to 60 minutes in memory, lost when it restarts
# (`bot.matrix.sent` cites both); the spec sets no duration, so other
# homeservers owe nothing more. The shortest is taken: an item tried before
# and still pending after that is looked for in the room, which costs one or
# two reads, only after a crash or a long outage.
TXN_MEMORY_S = 30 * 60


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
    `record`: stores one more attempt, and the bot's device making it;
    called BEFORE it is made, so that a crash during the send counts.
    `first_recorded`: the next attempt was stored with the item itself (a
    command is recorded with one attempt, sparing a write before its first
    answer). `since`: when the item was created (epoch seconds: no attempt
    is older); `device_id`: the device of the attempts made (None: not
    known); `tried`: whether an earlier attempt may have sent it (None: when
    `made` counts any; the second message of a private answer counts its
    attempts apart, yet was tried with the first).
    """

    made: int
    record: Callable[[str], Awaitable[None]]
    first_recorded: bool = False
    since: float = 0.0
    device_id: str | None = None
    tried: bool | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    sent: bool
    event_id: str | None = None
    # Not sent because it may have gone out already (the room could not tell).
    abandoned: bool = False


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
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._chat = chat
        self._wall = wall
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
        tried = made > 0 if attempts.tried is None else attempts.tried
        device = attempts.device_id
        reason = ""
        while made < SEND_ATTEMPTS:
            if tried and self._maybe_forgotten(out, attempts.since, device):
                check = await self._look_for(out, attempts.since)
                if check.event_id is not None:
                    return await self._sent(out, check.event_id)
                if not check.conclusive:
                    return self._abandon(out)
            made += 1
            if not (attempts.first_recorded and made == 1):
                await attempts.record(self._chat.device_id)
            tried, device = True, self._chat.device_id
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
            return await self._sent(out, event_id)
        log.error("giving up %s: %s", out.label, reason or f"{made} attempt(s) failed")
        self._count(out.kind, "failed")
        return Delivered(sent=False)

    def _maybe_forgotten(self, out: Outgoing, since: float, device: str | None) -> bool:
        """Whether the homeserver may have forgotten the item's transaction id.

        A redaction is never looked for: made again, it changes nothing.
        """
        if isinstance(out.reply, Redaction):
            return False
        return device != self._chat.device_id or self._wall() - since > TXN_MEMORY_S

    async def _look_for(self, out: Outgoing, since: float) -> SentCheck:
        check = await self._chat.find_sent(out.room_id, out.txn_id, since=since)
        if check.event_id is not None:
            log.info("%s was sent already (%s): not sent again", out.label, check.event_id)
        elif check.conclusive:
            log.info("%s tried before, not found in the room: sending it", out.label)
        return check

    def _abandon(self, out: Outgoing) -> Delivered:
        log.warning(
            "%s abandoned: it was tried before, long ago or by another device, and the room "
            "cannot tell whether it went out (the bot's own events there are unreadable "
            "now); not sent again, so as to post nothing twice",
            out.label,
        )
        self._metrics.abandoned.labels(out.kind.value).inc()
        return Delivered(sent=False, abandoned=True)

    async def _sent(self, out: Outgoing, event_id: str | None) -> Delivered:
        """What a sent item leaves behind (also one found sent already)."""
        if isinstance(out.reply, FileUpload | Redaction):
            event_id = None  # an answer that cannot be edited
        if isinstance(out.reply, Message) and out.replaces:
            # Reactions go to the post edited: they now mean what the edit says.
            await self._storage.posts.edited(out.replaces, out.room_id, out.reply.marks)
        elif isinstance(out.reply, Message) and event_id and out.reply.marks:
            # What a reaction to this post means (`Message.marks`).
            await self._storage.posts.record(event_id, out.room_id, out.reply.marks)
        self._count(out.kind, "sent")
        return Delivered(sent=True, event_id=event_id)

    async def send_once(self, out: Outgoing) -> str | None:
        """One attempt, not stored, no retry: for a notice whose caller decides
        what a failure means (SendError goes to it). Paced, recorded and
        counted like any other send. Its event id."""
        try:
            event_id = await self._send_once(out)
        except SendError:
            self._count(out.kind, "failed")
            raise
        return (await self._sent(out, event_id)).event_id

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
