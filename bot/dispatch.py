"""What arrives, recorded once: commands, their edits, reactions, and the limits.

A command is written to the inbox table in the sync callback, before the
sync token moves on, then handed to `bot.answers`, which answers it exactly
once (and again after a crash, with the same transaction id). An edit of a
command (`m.replace`, by its sender, within `bot.edit_window`) is recorded
the same way, with its own row. A reaction runs the command that declared
its emoji (`bot.commands.core.Reaction`), taking it back the undo declared
with it: recorded like commands, with what the reaction resolved to. No
command is known here. Every notice goes out through the one sender.

Before anything is stored, a command (typed, edited, or a reaction that runs
one) must fit in its sender's and its room's limits (`bot.limits`): past
them it is dropped, and the first one dropped gets one short "doucement"
notice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from bot.answers import SETTLE_GRACE, Answers, txn_id_for
from bot.chat import (
    ChatClient,
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    Reply,
    SendError,
    Triggered,
)
from bot.commands.core import Registry, Services
from bot.commands.runner import Invocation, Runner, parsed
from bot.db.storage import Storage
from bot.delivery import Kind, Outgoing, Sender
from bot.limits import Clock, CommandLimits, Over
from bot.ops import Metrics
from bot.permissions import Rights
from bot.render import Message

log = logging.getLogger(__name__)


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
        limits = services.config.bot.limits
        self.limits = CommandLimits(limits.per_sender.rate, limits.per_room.rate, clock)
        self.sender = Sender(chat, storage, retry_delay=retry_delay, metrics=self.metrics)
        self.answers = Answers(
            self.runner, chat, storage, self.sender, self.metrics, limits.answers_at_once
        )

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
            device_id=self.chat.device_id,
        ):
            log.debug("command %s already recorded, not answering again", msg.event_id)
            return
        self.answers.hold(msg, invocation)

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
            device_id=self.chat.device_id,
        ):
            log.debug("edit %s already recorded, not answering again", edit.event_id)
            return
        self.answers.hold(edit, None)

    async def accept_reaction(self, reaction: IncomingReaction) -> None:
        """A reaction: the command a trigger declared for its emoji, if the post
        reacted to means something to that trigger (`Registry.reacting`).

        Recorded in the inbox like a typed command (same exactly-once path),
        with what it resolved to; answered in the room, or in the sender's
        direct room when the trigger is private.
        """
        if reaction.sender == self.chat.user_id:
            return
        for trigger in self.registry.reacting(reaction.key):
            values = await trigger.resolved(self.storage, reaction.target, reaction.room_id)
            if not values:
                continue
            if not self._admit(reaction.sender, reaction.room_id, reaction.event_id):
                return
            triggered = Triggered(trigger.name, reaction.event_id, values)
            await self._record(reaction.room_id, reaction.event_id, reaction.sender, triggered)
            return

    async def accept_redaction(self, redaction: IncomingRedaction) -> None:
        """A reaction taken back by its sender: the undo its trigger declared.

        Taken back before its answer (both in one sync batch, or while it is
        answered), what it gives is not stored yet: the undo is answered after
        it, and asks then (`Answers`). Otherwise the trigger says now what it
        gave (nothing: nothing to do). Someone else's redaction (a moderator
        removing a reaction) takes nothing back. Not subject to the limits:
        each follows a reaction that was.
        """
        if redaction.sender == self.chat.user_id:
            return
        pending = await self._pending_reaction(redaction)
        if pending is not None:
            await self._record(
                redaction.room_id,
                redaction.event_id,
                redaction.sender,
                replace(pending, reaction=redaction.redacts, undo=True),
                follows=redaction.redacts,
            )
            return
        for trigger in self.registry.undoable():
            assert trigger.given is not None
            given = await trigger.given(
                self.storage, redaction.redacts, redaction.room_id, redaction.sender
            )
            if given is not None:
                triggered = Triggered(trigger.name, redaction.redacts, given, undo=True)
                await self._record(
                    redaction.room_id, redaction.event_id, redaction.sender, triggered
                )
                return

    async def _pending_reaction(self, redaction: IncomingRedaction) -> Triggered | None:
        """What the reaction its sender just redacted resolved to, if it ran a
        command with an undo and still waits for its answer."""
        item = await self.storage.inbox.get(redaction.redacts)
        if (
            item is None
            or item.trigger is None
            or item.trigger.undo
            or item.sender != redaction.sender
            or item.room_id != redaction.room_id
        ):
            return None
        found = self.registry.trigger(item.trigger.name)
        if found is None or found[0].undo is None:
            return None
        if await self.storage.inbox.status(item.event_id) != "pending":
            return None
        return item.trigger

    async def _record(
        self,
        room_id: str,
        event_id: str,
        sender: str,
        trigger: Triggered,
        *,
        follows: str | None = None,
    ) -> None:
        """A command run by a reaction (or by taking one back): stored with what
        the reaction resolved to, answered once, where its trigger says."""
        found = self.registry.trigger(trigger.name)
        assert found is not None
        reaction, command = found
        direct = reaction.private
        if not await self.storage.inbox.add(
            event_id,
            room_id,
            sender,
            "",
            None,
            direct=direct,
            command=(command.parent or command).name,
            device_id=self.chat.device_id,
            follows=follows,
            trigger=trigger,
        ):
            log.debug("reaction %s already recorded, not answering again", event_id)
            return
        # As `bot.answers` rebuilds it from the inbox after a restart.
        msg = IncomingMessage(room_id, event_id, sender, "", direct=direct, trigger=trigger)
        self.answers.hold(msg, None, follows)

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
        self.answers.background(
            self._slow_down(room_id, message, txn_id_for(event_id + "#slow"), reply_to, thread_root)
        )
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
        label = f"slow-down notice in {room_id}"
        out = Outgoing(Kind.REPLY, room_id, message, txn_id, label, reply_to, thread_root)
        async with self.answers.slot:
            try:
                await self.sender.send_once(out)
            except SendError as exc:
                log.info("slow-down notice in %s not sent: %s", room_id, exc)

    async def undecryptable(self, msg: IncomingMessage) -> None:
        """Answer once an encrypted message that could not be decrypted.

        Its transaction id derives from the event: sent twice (a crash before
        it was marked), the homeserver keeps one. One attempt: SendError goes
        to the caller, which decides whether to try again.
        """
        message = self.services.renderer.render("undecryptable", prefix=self.prefix)
        label = f"undecryptable notice for {msg.event_id} in {msg.room_id}"
        txn_id = txn_id_for(msg.event_id)
        out = Outgoing(Kind.REPLY, msg.room_id, message, txn_id, label, reply_to=msg.event_id)
        await self.sender.send_once(out)
        self.metrics.undecryptable.inc()

    async def resume_pending(self) -> int:
        """Answer the commands recorded but not answered before the last stop."""
        return await self.answers.resume_pending()

    async def settle(self, grace: float = SETTLE_GRACE) -> None:
        """At the end of each sync batch: its answers start (see `Answers.settle`)."""
        await self.answers.settle(grace)

    async def drain(self, grace: float = 10.0) -> None:
        """Let in-flight answers finish (they stay pending in the DB if cut)."""
        await self.answers.drain(grace)

    async def answer(
        self, msg: IncomingMessage, invocation: Invocation | None = None
    ) -> Reply | None:
        """The reply to a message (see `Runner.answer`); nothing is sent."""
        return await self.runner.answer(msg, invocation)

    async def rights_of(self, room_id: str, user_id: str) -> Rights:
        return await self.runner.rights_of(room_id, user_id)
