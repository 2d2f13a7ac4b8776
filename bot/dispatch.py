"""Exactly-once answers: the inbox, edits, reactions, and where answers go.

Running a command (parsing, routing, roles, the error boundary) is
`bot.commands.runner`; this module decides when and where its reply goes.

A command is first written to the inbox table (in the sync callback, before
the sync token moves on), then answered with a transaction id derived from
its event id, then marked done. A crash anywhere in between leaves a pending
row that is answered again at start with the same transaction id, which the
homeserver deduplicates: no command is lost, none is answered twice.

An edit of a command (`m.replace`, by its sender, within `bot.edit_window`)
is recorded and answered the same way, with its own transaction id, as an
edit of the bot's answer (`m.replace` of the answer's event, whose id the
inbox keeps), or as a first answer when the command had none yet (the bot
was down) or when its answer was a file (files cannot be edited). The newest
text wins: a command or edit for which a newer edit is recorded is dropped,
the newer one answers. An edit that leaves no command (conversation, or the
command erased) turns the answer into a short "command withdrawn" notice:
an answer to a command no one can see any more would puzzle the room.

Before anything is stored, a command (typed, edited, or a reaction that runs
one) must fit in its sender's and its room's limits (`bot.limits`): past
them it is dropped, and the first one dropped gets one short "doucement"
notice. At most `bot.limits.answers_at_once` commands are answered at the
same time; the others wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from bot.chat import (
    ChatClient,
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    Reply,
    SendError,
)
from bot.commands.core import Registry, Services
from bot.commands.gazette import PREVIEW_MARK, WITHDRAW_MARK, gazette_command
from bot.commands.personal import forget_command, remind_me_command
from bot.commands.runner import Invocation, Runner, parsed
from bot.db.inbox import InboxItem
from bot.db.storage import Storage
from bot.delivery import Attempts, Kind, Outgoing, Sender
from bot.direct_rooms import ensure_direct_room
from bot.limits import Clock, CommandLimits, Over
from bot.ops import Metrics
from bot.permissions import Rights
from bot.render import Message

log = logging.getLogger(__name__)

SETTLE_GRACE = 2.0
# Commands received outside a sync batch (none is expected) start after this.
HOLD_S = 0.5
# A reaction with this emoji to a post presenting sessions runs this command.
BELL = "🔔"
REACTION_COMMAND = remind_me_command.name
# Taking the reaction back runs this one.
FORGET_COMMAND = forget_command.name
# A reaction with this emoji to a gazette preview approves what it shows.
APPROVE = "✅"
APPROVE_COMMAND = gazette_command.name


def txn_id_for(event_id: str) -> str:
    """The answer's transaction id, derived from the command: resends deduplicate."""
    return "bh-" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        services: Services,
        chat: ChatClient,
        storage: Storage,
        retry_delay: float = 1.0,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.runner = Runner(registry, services, chat, storage, self.metrics)
        self.chat = chat
        self.storage = storage
        self.sender = Sender(chat, storage, retry_delay=retry_delay, metrics=self.metrics)
        self._tasks: set[asyncio.Task[None]] = set()
        # A command and its edits are answered one at a time, in order.
        self._busy: dict[str, tuple[asyncio.Lock, int]] = {}
        # Received in this sync batch, answered once the batch is recorded.
        self._held: list[tuple[IncomingMessage, Invocation | None]] = []
        self._hold_timer: asyncio.TimerHandle | None = None
        limits = services.config.bot.limits
        self.limits = CommandLimits(limits.per_sender.rate, limits.per_room.rate, clock)
        # Taken inside `_one_at_a_time` (never the other way round): a command
        # waiting for its turn holds no slot an earlier edit of it would need.
        self._answering = asyncio.Semaphore(limits.answers_at_once)

    @property
    def prefix(self) -> str:
        return self.runner.prefix

    @property
    def registry(self) -> Registry:
        return self.runner.registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self.runner.registry = registry

    @property
    def services(self) -> Services:
        return self.runner.services

    @services.setter
    def services(self, services: Services) -> None:
        self.runner.services = services

    async def accept(self, msg: IncomingMessage) -> None:
        """Called for each new message, in timeline order, before the sync token moves."""
        if msg.sender == self.chat.user_id:
            return
        if msg.replaces is not None:
            await self._accept_edit(msg)
            return
        invocation = parsed(msg.body, self.prefix)
        if invocation is None:
            return
        if not self._admit(msg.sender, msg.room_id, msg.event_id, msg.event_id, msg.thread_root):
            return
        if not await self.storage.inbox.add(
            msg.event_id,
            msg.room_id,
            msg.sender,
            msg.body,
            msg.thread_root,
            direct=msg.direct,
            sent_ms=msg.ts,
        ):
            log.debug("command %s already recorded, not answering again", msg.event_id)
            return
        self._hold(msg, invocation)

    async def _accept_edit(self, edit: IncomingMessage) -> None:
        """An edit of a command: recorded like one (its own row, its own
        transaction id), answered by `_process_edit`."""
        assert edit.replaces is not None
        command = await self.storage.inbox.get(edit.replaces)
        if command is None or command.command is not None or command.replaces is not None:
            # Conversation is not recorded: an edit of it is not told apart
            # from conversation either (a command is typed anew, not edited in).
            log.debug("edit %s of a message that held no command: ignored", edit.event_id)
            return
        if edit.sender != command.sender or edit.room_id != command.room_id:
            # The spec: an edit by anyone else than the original sender is invalid.
            log.debug("edit %s by someone else than the command's sender: ignored", edit.event_id)
            return
        sent_ms = edit.ts if edit.ts is not None else int(time.time() * 1000)
        command_ms = command.sent_ms if command.sent_ms is not None else command.received_at * 1000
        late_s = (sent_ms - command_ms) / 1000
        window = self.services.config.bot.edit_window.total_seconds()
        if window <= 0 or late_s > window:  # 0: edits are not followed
            log.debug(
                "edit %s made %.0fs after its command (window %.0fs): ignored",
                edit.event_id,
                late_s,
                window,
            )
            return
        # The notice, if any, answers the command edited (a reply to an edit
        # event shows oddly in clients).
        if not self._admit(
            edit.sender, edit.room_id, edit.event_id, command.event_id, command.thread_root
        ):
            return
        if not await self.storage.inbox.add(
            edit.event_id,
            edit.room_id,
            edit.sender,
            edit.body,
            command.thread_root,
            sent_ms=sent_ms,
            replaces=command.event_id,
        ):
            log.debug("edit %s already recorded, not answering again", edit.event_id)
            return
        self._hold(edit, None)

    async def accept_reaction(self, reaction: IncomingReaction) -> None:
        """A 🔔 on a post of the bot presenting sessions: `!rappelle-moi` those, in private.

        Recorded in the inbox like a typed command (same exactly-once path),
        answered in the sender's direct room rather than in the room.
        """
        if reaction.sender == self.chat.user_id:
            return
        key = reaction.key.strip("\ufe0f ")
        if key == APPROVE:
            await self._accept_approval(reaction)
            return
        if key != BELL:
            return
        # [] when not a post of ours, or one without sessions.
        sids = await self.storage.posts.sessions(reaction.target, reaction.room_id)
        await self._accept_private(
            reaction.room_id, reaction.event_id, reaction.sender, REACTION_COMMAND, sids
        )

    async def _accept_approval(self, reaction: IncomingReaction) -> None:
        """A ✅ on a gazette preview: `!gazette valider` what it showed, answered in the room.

        Recorded in the inbox like a typed command; whether the preview is
        still current, and who may approve, is the command's to decide.
        """
        shown = await self.storage.gazette.preview(reaction.target, reaction.room_id)
        if shown is None:
            return  # not a preview: a ✅ like any other
        invocation = Invocation(APPROVE_COMMAND, f"valider {PREVIEW_MARK}{shown}")
        if not self._admit(reaction.sender, reaction.room_id, reaction.event_id):
            return
        if not await self.storage.inbox.add(
            reaction.event_id,
            reaction.room_id,
            reaction.sender,
            invocation.args,
            None,
            command=invocation.name,
        ):
            log.debug("reaction %s already recorded, not answering again", reaction.event_id)
            return
        msg = IncomingMessage(
            reaction.room_id, reaction.event_id, reaction.sender, "", reaction=True
        )
        self._hold(msg, invocation)

    async def accept_redaction(self, redaction: IncomingRedaction) -> None:
        """A 🔔 taken back: `!oublie` the reminders it asked for, answered in private.
        A ✅ taken back: its approval withdrawn (`_accept_withdrawal`)."""
        if await self._accept_withdrawal(redaction):
            return
        # [] when not one of the reactions that asked for reminders.
        sids = await self.storage.personal.via(redaction.sender, redaction.redacts)
        await self._accept_private(
            redaction.room_id, redaction.event_id, redaction.sender, FORGET_COMMAND, sids
        )

    async def _accept_withdrawal(self, redaction: IncomingRedaction) -> bool:
        """Its sender redacted a ✅ that approved a gazette preview (or is still
        waiting for its answer): `!gazette valider` withdraws that approval,
        recorded and answered in the room like the ✅ itself. False: not one.

        Only the ✅'s own sender withdraws it: a moderator removing someone
        else's reaction leaves their approval in place.
        """
        if redaction.sender == self.chat.user_id:
            return False
        target, room_id = redaction.redacts, redaction.room_id
        approver = await self.storage.gazette.approved_by_reaction(target, room_id)
        if approver is None:
            # Taken back before its answer (both in one sync batch): it waits
            # for that answer (`_answers_after`), then withdraws what it gave.
            approver = await self._pending_approval(target, room_id)
        if approver != redaction.sender:
            return False
        invocation = Invocation(APPROVE_COMMAND, f"valider {WITHDRAW_MARK}{target}")
        if not await self.storage.inbox.add(
            redaction.event_id,
            room_id,
            redaction.sender,
            invocation.args,
            None,
            command=invocation.name,
        ):
            log.debug("redaction %s already recorded, not answering again", redaction.event_id)
            return True
        msg = IncomingMessage(room_id, redaction.event_id, redaction.sender, "", reaction=True)
        self._hold(msg, invocation)
        return True

    async def _pending_approval(self, event_id: str, room_id: str) -> str | None:
        """The sender of `event_id` if it is a ✅ on a preview not answered yet."""
        item = await self.storage.inbox.get(event_id)
        if (
            item is None
            or item.room_id != room_id
            or item.command != APPROVE_COMMAND
            or item.direct
            or not item.body.startswith(f"valider {PREVIEW_MARK}")
            or await self.storage.inbox.status(event_id) != "pending"
        ):
            return None
        return item.sender

    async def _accept_private(
        self, room_id: str, event_id: str, sender: str, command: str, sids: list[str]
    ) -> None:
        """`command sids…` on behalf of `sender`, answered in their direct room.

        Stored as the command and its arguments: nothing to parse again, and
        no text that a change of `bot.prefix` could make unreadable.
        """
        if not sids or sender == self.chat.user_id:
            return
        invocation = Invocation(command, " ".join(sids))
        if not self._admit(sender, room_id, event_id):
            return
        if not await self.storage.inbox.add(
            event_id, room_id, sender, invocation.args, None, direct=True, command=command
        ):
            log.debug("reaction %s already recorded, not answering again", event_id)
            return
        msg = IncomingMessage(room_id, event_id, sender, "", direct=True)
        self._hold(msg, invocation)

    def _admit(
        self,
        sender: str,
        room_id: str,
        event_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> bool:
        """Whether the command `event_id` fits in its sender's and room's limits.

        Dropped, the first one over gets the "doucement" notice (a reply to
        `reply_to`, when the command is a message: a reaction is not one),
        in the background; the next ones nothing until the bucket is full.
        """
        verdict = self.limits.admit(sender, room_id)
        if verdict.allowed:
            return True
        assert verdict.over is not None
        self.metrics.commands_limited.labels(verdict.over.value).inc()
        if not verdict.warn:
            log.debug("command %s dropped: %s over its limit", event_id, verdict.over.value)
            return False
        who = sender if verdict.over is Over.SENDER else room_id
        log.warning(
            "%s sends commands faster than allowed (%s limit): told once, then ignored "
            "until it calms down",
            who,
            verdict.over.value,
        )
        message = self.services.renderer.render(
            "slow_down", prefix=self.prefix, room=verdict.over is Over.ROOM
        )
        task = asyncio.create_task(
            self._slow_down(room_id, message, txn_id_for(event_id + "#slow"), reply_to, thread_root)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return False

    async def _slow_down(
        self,
        room_id: str,
        message: Message,
        txn_id: str,
        reply_to: str | None,
        thread_root: str | None,
    ) -> None:
        """One attempt: a lost "doucement" is not worth a retry."""
        async with self._answering:
            try:
                await self.chat.send_notice(
                    room_id, message, txn_id=txn_id, reply_to=reply_to, thread_root=thread_root
                )
            except SendError as exc:
                log.info("slow-down notice in %s not sent: %s", room_id, exc)

    async def undecryptable(self, msg: IncomingMessage) -> None:
        """Answer once an encrypted message that could not be decrypted.

        Its transaction id derives from the event: sent twice (a crash before
        it was marked), the homeserver keeps one. SendError goes to the caller.
        """
        message = self.services.renderer.render("undecryptable", prefix=self.prefix)
        await self.chat.send_notice(
            msg.room_id, message, txn_id=txn_id_for(msg.event_id), reply_to=msg.event_id
        )
        self.metrics.undecryptable.inc()

    async def resume_pending(self) -> int:
        """Answer the commands recorded but not answered before the last stop."""
        pending = await self.storage.inbox.pending()
        resumed = 0
        for item in pending:
            msg = _message(item)
            if item.replaces is not None:  # an edit: its text is parsed when answered
                self._spawn(msg, None, attempts=item.attempts, first_counted=False)
                resumed += 1
                continue
            invocation = (
                Invocation(item.command, item.body)
                if item.command is not None
                else parsed(msg.body, self.prefix)
            )
            if invocation is None:  # typed under another prefix: nothing to answer now
                await self.storage.inbox.finish(item.event_id)
                continue
            self._spawn(msg, invocation, attempts=item.attempts, first_counted=False)
            resumed += 1
        if resumed:
            log.info("answering %d command(s) left pending by the last run", resumed)
        return resumed

    def _hold(self, msg: IncomingMessage, invocation: Invocation | None) -> None:
        """Answer once the sync batch is recorded (`settle`), not at once.

        A command and its edit in one batch (sent while the bot was away)
        are then both in the inbox when the command's turn comes: the edit
        answers, once, instead of an answer to the old text then its edit.
        Waiting costs the rest of the batch, a few milliseconds.
        """
        self._held.append((msg, invocation))
        if self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(HOLD_S, self._release)

    def _release(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        held, self._held = self._held, []
        for msg, invocation in held:
            self._spawn(msg, invocation, attempts=0, first_counted=True)

    def _spawn(
        self,
        msg: IncomingMessage,
        invocation: Invocation | None,
        attempts: int,
        first_counted: bool,
    ) -> None:
        """Answer in the background: `invocation` for a command, None for an edit."""
        task = asyncio.create_task(self._process(msg, invocation, attempts, first_counted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, grace: float = SETTLE_GRACE) -> None:
        """Give in-flight answers up to `grace` seconds; they go on after that.

        Called at the end of each sync batch, whose answers start here (see
        `_hold`). Answering before the next /sync long-poll starts spares the
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
        attempts: int,
        first_counted: bool,
    ) -> None:
        async with (
            self._one_at_a_time(msg.replaces or _answers_after(invocation) or msg.event_id),
            self._answering,
        ):
            if msg.replaces is not None:
                await self._process_edit(msg, attempts, first_counted)
            elif invocation is not None:
                await self._process_command(msg, invocation, attempts, first_counted)

    async def _process_command(
        self, msg: IncomingMessage, invocation: Invocation, attempts: int, first_counted: bool
    ) -> None:
        if not msg.direct and await self.storage.inbox.latest_edit(msg.event_id) is not None:
            # Edited before it was answered (the bot was away): the newest
            # edit answers, once, with the text the sender now shows.
            log.debug("command %s edited before it was answered: the edit answers", msg.event_id)
            await self.storage.inbox.finish(msg.event_id)
            return
        started = time.perf_counter()
        reply = await self.answer(msg, invocation)
        await self._deliver(msg, msg, invocation, reply, None, attempts, first_counted, started)

    async def _process_edit(
        self, edit: IncomingMessage, attempts: int, first_counted: bool
    ) -> None:
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
        await self._deliver(msg, edit, invocation, reply, edits, attempts, first_counted, started)

    async def _deliver(
        self,
        msg: IncomingMessage,
        row: IncomingMessage,
        invocation: Invocation | None,
        reply: Reply | None,
        edits: str | None,
        attempts: int,
        first_counted: bool,
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
        for out in await self._outgoing(msg, invocation, reply, row.event_id, edits):
            delivered = await self.sender.deliver(
                out,
                Attempts(
                    made=attempts,
                    record=lambda: self.storage.inbox.attempt(row.event_id),
                    first_recorded=first_counted,
                ),
            )
            if not delivered.sent:
                await self.storage.inbox.finish(row.event_id, failed=True)
                return
            if out.room_id == msg.room_id:
                answer_id = delivered.event_id
            # A second message (a private answer's notice) counts its own attempts.
            attempts, first_counted = 0, False
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
        """
        txn_id = txn_id_for(row_id)
        if edits is not None:
            label = f"edit of {edits} answering {row_id} in {msg.room_id}"
            return [Outgoing(Kind.REPLY, msg.room_id, reply, txn_id, label, replaces=edits)]
        label = f"answer to {row_id} in {msg.room_id}"
        if msg.direct:
            # No direct room (it could not be opened): the answer saying so
            # goes to the room, or the person would hear nothing.
            room_id = await self.storage.personal.direct_room(msg.sender) or msg.room_id
            return [Outgoing(Kind.REPLY, room_id, reply, txn_id, label)]
        in_room = Outgoing(
            Kind.REPLY,
            msg.room_id,
            reply,
            txn_id,
            label,
            # A reaction is not a message to reply to.
            reply_to=None if msg.reaction else msg.event_id,
            thread_root=msg.thread_root,
        )
        if not self.runner.private(invocation):
            return [in_room]
        dm = await ensure_direct_room(self.chat, self.storage, msg.sender)
        if dm == msg.room_id:  # typed in the direct room itself
            return [in_room]
        notice = self.services.renderer.render("private", prefix=self.prefix, opened=dm is not None)
        said = replace(in_room, reply=notice, txn_id=txn_id_for(row_id + "#room"))
        if dm is None:
            return [said]
        return [Outgoing(Kind.REPLY, dm, reply, txn_id, f"private {label}"), said]

    async def answer(
        self, msg: IncomingMessage, invocation: Invocation | None = None
    ) -> Reply | None:
        """The reply to a message (see `Runner.answer`); nothing is sent."""
        return await self.runner.answer(msg, invocation)

    async def rights_of(self, room_id: str, user_id: str) -> Rights:
        return await self.runner.rights_of(room_id, user_id)


def _answers_after(invocation: Invocation | None) -> str | None:
    """The ✅ whose withdrawal this is (answered after it, one at a time, so
    that a ✅ taken back at once is recorded before it is withdrawn)."""
    if invocation is None or invocation.name != APPROVE_COMMAND:
        return None
    mark = f"valider {WITHDRAW_MARK}"
    return invocation.args[len(mark) :] if invocation.args.startswith(mark) else None


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
        # Stored with its command by a reaction in a room (a ✅): not typed.
        reaction=item.command is not None and not item.direct,
    )
