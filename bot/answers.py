"""Exactly-once answers: when a recorded command is answered, and where the answer goes.

`bot.dispatch` records what arrives (commands, their edits, reactions) in
the inbox and hands it here; running a command (parsing, routing, rights,
the error boundary) is `bot.commands.runner`.

A command is answered with a transaction id derived from its event id, then
marked done. A crash anywhere in between leaves a pending row that is
answered again at start with the same transaction id, which the homeserver
deduplicates: no command is lost, none is answered twice (past the
homeserver's memory of that id, `bot.delivery` looks for the answer in the
room first). An edit of a
command is answered as an edit of the bot's answer (`m.replace` of the
answer's event, whose id the inbox keeps), or as a first answer when the
command had none yet (the bot was down) or when its answer was a file. The
newest text wins; an edit that leaves no command turns the answer into a
short "command withdrawn" notice.

A command and its edits are answered one at a time, in order; at most
`bot.limits.answers_at_once` commands are answered at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from bot.chat import ChatClient, IncomingMessage, Reply
from bot.commands.core import Services
from bot.commands.runner import Invocation, Runner, parsed
from bot.db.inbox import InboxItem
from bot.db.storage import Storage
from bot.delivery import Attempts, Kind, Outgoing, Sender
from bot.direct_rooms import ensure_direct_room
from bot.ops import Metrics
from bot.render import Message

log = logging.getLogger(__name__)

SETTLE_GRACE = 2.0
# Commands received outside a sync batch (none is expected) start after this.
HOLD_S = 0.5


@dataclass(frozen=True, slots=True)
class Tried:
    """What the inbox row says of the attempts to answer it (`bot.delivery.Attempts`).

    `made`: attempts counted; `first_counted`: the next one is counted
    already (a row is recorded with one); `since`: when it was received
    (epoch seconds); `device_id`: the bot's device of the attempts made.
    """

    made: int
    first_counted: bool
    since: float
    device_id: str | None

    @property
    def resumed(self) -> bool:
        """Tried by an earlier run (recorded with one attempt, made or not)."""
        return not self.first_counted


class Answers:
    def __init__(
        self,
        runner: Runner,
        chat: ChatClient,
        storage: Storage,
        sender: Sender,
        metrics: Metrics,
        answers_at_once: int,
    ) -> None:
        self.runner = runner
        self.chat = chat
        self.storage = storage
        self.sender = sender
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        # A command and its edits are answered one at a time, in order.
        self._busy: dict[str, tuple[asyncio.Lock, int]] = {}
        # Received in this sync batch, answered once the batch is recorded:
        # (message, its command, the row it follows).
        self._held: list[tuple[IncomingMessage, Invocation | None, str | None]] = []
        self._hold_timer: asyncio.TimerHandle | None = None
        # Taken inside `_one_at_a_time` (never the other way round): a command
        # waiting for its turn holds no slot an earlier edit of it would need.
        self.slot = asyncio.Semaphore(answers_at_once)

    @property
    def prefix(self) -> str:
        return self.runner.prefix

    @property
    def services(self) -> Services:
        return self.runner.services

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as an answer in flight (`settle` and `drain` wait for it)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume_pending(self) -> int:
        """Answer the commands recorded but not answered before the last stop."""
        pending = await self.storage.inbox.pending()
        resumed = 0
        for item in pending:
            msg = _message(item)
            tried = Tried(item.attempts, False, item.received_at, item.device_id)
            if item.replaces is not None or item.trigger is not None:
                # An edit (its text is parsed when answered), or run by a reaction.
                self._spawn(msg, None, tried, item.follows)
                resumed += 1
                continue
            invocation = parsed(msg.body, self.prefix)
            if invocation is None:  # typed under another prefix: nothing to answer now
                await self.storage.inbox.finish(item.event_id)
                continue
            self._spawn(msg, invocation, tried, item.follows)
            resumed += 1
        if resumed:
            log.info("answering %d command(s) left pending by the last run", resumed)
        return resumed

    def hold(
        self, msg: IncomingMessage, invocation: Invocation | None, follows: str | None = None
    ) -> None:
        """Answer once the sync batch is recorded (`settle`), not at once.

        A command and its edit in one batch (sent while the bot was away)
        are then both in the inbox when the command's turn comes: the edit
        answers, once, instead of an answer to the old text then its edit.
        Waiting costs the rest of the batch, a few milliseconds. `follows`:
        the reaction this one takes back, still waiting for its answer.
        """
        self._held.append((msg, invocation, follows))
        if self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(HOLD_S, self._release)

    def _release(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        held, self._held = self._held, []
        for msg, invocation, follows in held:
            # Recorded with its first attempt, by this device, just now.
            tried = Tried(0, True, time.time(), self.chat.device_id)
            self._spawn(msg, invocation, tried, follows)

    def _spawn(
        self,
        msg: IncomingMessage,
        invocation: Invocation | None,
        tried: Tried,
        follows: str | None = None,
    ) -> None:
        """Answer in the background: `invocation` for a typed command, None for
        an edit or for a command run by a reaction (`msg.trigger`)."""
        self.background(self._process(msg, invocation, tried, follows))

    async def settle(self, grace: float = SETTLE_GRACE) -> None:
        """Give in-flight answers up to `grace` seconds; they go on after that.

        Called at the end of each sync batch, whose answers start here (see
        `hold`). Answering before the next /sync long-poll starts spares the
        homeserver that request ahead of our send (measured with
        bench/agenda_latency.py: p50 1.12x the echo floor without, 1.0x
        with). A slow room delays syncing by `grace` at most.
        """
        self._release()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    async def drain(self, grace: float = 10.0) -> None:
        """Let in-flight answers finish (they stay pending in the DB if cut)."""
        self._release()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, command_id: str) -> AsyncIterator[None]:
        """A command and its edits, in the order they came: each sees what the
        one before stored (the answer to replace, or that none was sent)."""
        lock, users = self._busy.get(command_id) or (asyncio.Lock(), 0)
        self._busy[command_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._busy[command_id]
            if users == 1:
                del self._busy[command_id]
            else:
                self._busy[command_id] = (lock, users - 1)

    async def _process(
        self,
        msg: IncomingMessage,
        invocation: Invocation | None,
        tried: Tried,
        follows: str | None,
    ) -> None:
        # A reaction taken back is answered after the reaction, one at a time.
        undoes = msg.trigger.reaction if msg.trigger is not None and msg.trigger.undo else None
        key = msg.replaces or undoes or msg.event_id
        async with self._one_at_a_time(key), self.slot:
            if msg.replaces is not None:
                await self._process_edit(msg, tried)
            elif follows is not None:
                await self._process_taken_back(msg, tried)
            elif invocation is not None or msg.trigger is not None:
                await self._process_command(msg, invocation, tried)

    async def _process_taken_back(self, msg: IncomingMessage, tried: Tried) -> None:
        """A reaction taken back before its answer, answered after it: its undo
        takes back what it did give, as its trigger now says (nothing: nothing
        to say)."""
        assert msg.trigger is not None
        found = self.runner.registry.trigger(msg.trigger.name)
        given = None
        if found is not None and found[0].given is not None:
            given = await found[0].given(
                self.storage, msg.trigger.reaction, msg.room_id, msg.sender
            )
        if given is None:
            await self.storage.inbox.finish(msg.event_id)
            return
        msg = replace(msg, trigger=replace(msg.trigger, values=given))
        await self._process_command(msg, None, tried)

    async def _process_command(
        self, msg: IncomingMessage, invocation: Invocation | None, tried: Tried
    ) -> None:
        if not msg.direct and await self.storage.inbox.latest_edit(msg.event_id) is not None:
            # Edited before it was answered (the bot was away): the newest
            # edit answers, once, with the text the sender now shows.
            log.debug("command %s edited before it was answered: the edit answers", msg.event_id)
            await self.storage.inbox.finish(msg.event_id)
            return
        started = time.perf_counter()
        reply = await self.answer(msg, invocation)
        await self._deliver(msg, msg, invocation, reply, None, tried, started)

    async def _process_edit(self, edit: IncomingMessage, tried: Tried) -> None:
        """The newest edit of a command: the command's answer edited in place,
        or a first answer when there is none to edit."""
        assert edit.replaces is not None
        started = time.perf_counter()
        command = await self.storage.inbox.get(edit.replaces)
        newest = None if command is None else await self.storage.inbox.latest_edit(edit.replaces)
        if command is None or newest != edit.event_id:
            log.debug("edit %s overtaken by a newer one: the newer one answers", edit.event_id)
            await self.storage.inbox.finish(edit.event_id)
            return
        # The command as it now reads: its room and thread, the edit's text.
        msg = replace(_message(command), body=edit.body, mentions=edit.mentions)
        invocation = parsed(edit.body, self.prefix)
        reply: Reply | None
        if invocation is not None:
            reply = await self.answer(msg, invocation)
        elif command.answer_id is not None:
            reply = self.services.renderer.render("edit_removed")
        else:  # withdrawn before any answer we could edit: nothing to say
            reply = None
        # A private answer (in the direct room) is not an edit of the room's notice.
        edits = (
            command.answer_id
            if isinstance(reply, Message) and not self.runner.private(invocation)
            else None
        )
        await self._deliver(msg, edit, invocation, reply, edits, tried, started)

    async def _deliver(
        self,
        msg: IncomingMessage,
        row: IncomingMessage,
        invocation: Invocation | None,
        reply: Reply | None,
        edits: str | None,
        tried: Tried,
        started: float,
    ) -> None:
        """Send the answer to `msg` for the inbox row `row` (the command, or its
        edit), as an edit of the bot's notice `edits` when given, then mark it."""
        rendered = time.perf_counter()
        if reply is None:
            await self.storage.inbox.finish(row.event_id)
            return
        # The answer in the command's room: what a later edit of the command replaces.
        answer_id = None
        made, first_counted = tried.made, tried.first_counted
        for out in await self._outgoing(msg, invocation, reply, row.event_id, edits):
            attempts = Attempts(
                made=made,
                record=lambda device: self.storage.inbox.attempt(row.event_id, device),
                first_recorded=first_counted,
                since=tried.since,
                device_id=tried.device_id,
                # The second message went out with the first, in an earlier run too.
                tried=made > 0 or tried.resumed,
            )
            delivered = await self.sender.deliver(out, attempts)
            if not delivered.sent:  # failed, or abandoned (it may have gone out)
                await self.storage.inbox.finish(row.event_id, failed=True)
                return
            if out.room_id == msg.room_id:
                answer_id = delivered.event_id
            # A second message (a private answer's notice) counts its own attempts.
            made, first_counted = 0, False
        if edits is None:  # a new answer: the one later edits replace
            await self.storage.inbox.finish(
                row.event_id, answered=msg.event_id, answer_id=answer_id
            )
        else:
            await self.storage.inbox.finish(row.event_id)
        sent = time.perf_counter()
        self.metrics.reply_seconds.observe(sent - started)
        log.debug(
            "answered %s: %.1f ms (answer %.1f ms, send %.1f ms)",
            row.event_id,
            (sent - started) * 1000,
            (rendered - started) * 1000,
            (sent - rendered) * 1000,
        )

    async def _outgoing(
        self,
        msg: IncomingMessage,
        invocation: Invocation | None,
        reply: Reply,
        row_id: str,
        edits: str | None,
    ) -> list[Outgoing]:
        """Where and how the answer goes: a reply in the room (its thread), in
        private, or an edit of an earlier answer.

        The transaction id derives from the inbox row (the command, or its
        edit): answering it again after a crash posts nothing new. A private
        command typed in a room answers in the sender's direct room and says
        so in the room: two messages, each with its own transaction id.
        What goes to the sender's direct room calls them (it rings, as a
        message from a person would); the rest calls only whom the answer
        names itself (a new mentor).
        """
        txn_id = txn_id_for(row_id)
        direct = await self.storage.personal.direct_room(msg.sender)
        if edits is not None:
            label = f"edit of {edits} answering {row_id} in {msg.room_id}"
            # Called as the answer it edits was: the edit keeps its kind.
            if msg.room_id == direct:
                reply = calling(reply, msg.sender)
            return [Outgoing(Kind.REPLY, msg.room_id, reply, txn_id, label, replaces=edits)]
        label = f"answer to {row_id} in {msg.room_id}"
        if msg.direct:
            if direct is None:
                # No direct room (it could not be opened): the answer saying so
                # goes to the room, or the person would hear nothing.
                return [Outgoing(Kind.REPLY, msg.room_id, reply, txn_id, label)]
            return [Outgoing(Kind.REPLY, direct, calling(reply, msg.sender), txn_id, label)]
        in_room = Outgoing(
            Kind.REPLY,
            msg.room_id,
            calling(reply, msg.sender) if msg.room_id == direct else reply,
            txn_id,
            label,
            # A reaction is not a message to reply to.
            reply_to=None if msg.trigger is not None else msg.event_id,
            thread_root=msg.thread_root,
        )
        if msg.trigger is not None or not self.runner.private(invocation):
            return [in_room]  # a reaction's trigger said where (`msg.direct`)
        dm = await ensure_direct_room(self.chat, self.storage, msg.sender)
        if dm == msg.room_id:  # typed in the direct room itself
            return [in_room]
        notice = self.services.renderer.render("private", prefix=self.prefix, opened=dm is not None)
        said = replace(in_room, reply=notice, txn_id=txn_id_for(row_id + "#room"))
        if dm is None:
            return [said]
        private = calling(reply, msg.sender)
        return [Outgoing(Kind.REPLY, dm, private, txn_id, f"private {label}"), said]

    async def answer(
        self, msg: IncomingMessage, invocation: Invocation | None = None
    ) -> Reply | None:
        """The reply to a message (see `Runner.answer`); nothing is sent."""
        return await self.runner.answer(msg, invocation)


def txn_id_for(event_id: str) -> str:
    """The answer's transaction id, derived from the command: resends deduplicate."""
    return "bh-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def calling(reply: Reply, user_id: str) -> Reply:
    """The answer, calling `user_id` too: it rings for them (`Message.rings`)."""
    if isinstance(reply, Message) and user_id not in reply.mentions:
        return replace(reply, mentions=(*reply.mentions, user_id))
    return reply


def _message(item: InboxItem) -> IncomingMessage:
    return IncomingMessage(
        item.room_id,
        item.event_id,
        item.sender,
        item.body,
        item.thread_root,
        direct=item.direct,
        ts=item.sent_ms,
        replaces=item.replaces,
        trigger=item.trigger,
    )
