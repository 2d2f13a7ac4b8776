"""What arrives, recorded once: commands, their edits, reactions, and the limits.

A command is written to the inbox table in the sync callback, before the
sync token moves on, then handed to `bot.answers`, which answers it exactly
once (and again after a crash, with the same transaction id). An edit of a
command (`m.replace`, by its sender, within `bot.edit_window`) is recorded
the same way, with its own row. A 🔔 on a post presenting sessions runs
`!rappelle-moi` (taking it back, `!oublie`), a ✅ on a gazette preview
approves it (taking it back withdraws the approval): recorded like commands.

Before anything is stored, a command (typed, edited, or a reaction that runs
one) must fit in its sender's and its room's limits (`bot.limits`): past
them it is dropped, and the first one dropped gets one short "doucement"
notice.
"""

from __future__ import annotations

import logging
import time

from bot.answers import APPROVE_COMMAND, SETTLE_GRACE, Answers, txn_id_for
from bot.chat import (
    ChatClient,
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    Reply,
    SendError,
)
from bot.commands.core import Registry, Services
from bot.commands.gazette import PREVIEW_MARK, WITHDRAW_MARK
from bot.commands.personal import forget_command, remind_me_command
from bot.commands.runner import Invocation, Runner, parsed
from bot.db.inbox import InboxItem
from bot.db.storage import Storage
from bot.delivery import Sender
from bot.limits import Clock, CommandLimits, Over
from bot.ops import Metrics
from bot.permissions import Rights
from bot.render import Message

log = logging.getLogger(__name__)

# A reaction with this emoji to a post presenting sessions runs this command.
BELL = "🔔"
REACTION_COMMAND = remind_me_command.name
# Taking the reaction back runs this one.
FORGET_COMMAND = forget_command.name
# A reaction with this emoji to a gazette preview approves what it shows.
APPROVE = "✅"


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
        sender = Sender(chat, storage, retry_delay=retry_delay, metrics=self.metrics)
        self.answers = Answers(
            self.runner, chat, storage, sender, self.metrics, limits.answers_at_once
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
        await self._record(reaction.room_id, reaction.event_id, reaction.sender, invocation)

    async def accept_redaction(self, redaction: IncomingRedaction) -> None:
        """A 🔔 taken back: `!oublie` the reminders it asked for, answered in private.
        A ✅ taken back: its approval withdrawn (`_accept_withdrawal`)."""
        if await self._accept_withdrawal(redaction):
            return
        bell = await self._pending_bell(redaction)
        if bell is not None:
            # Taken back before its answer (both in one sync batch, or while
            # it is answered): what it asks for is not stored yet. Answered
            # after it, the reminders it did ask for are then forgotten.
            await self._accept_private(
                redaction.room_id,
                redaction.event_id,
                redaction.sender,
                FORGET_COMMAND,
                bell.body.split(),
                follows=bell.event_id,
            )
            return
        # [] when not one of the reactions that asked for reminders.
        sids = await self.storage.personal.via(redaction.sender, redaction.redacts)
        await self._accept_private(
            redaction.room_id, redaction.event_id, redaction.sender, FORGET_COMMAND, sids
        )

    async def _pending_bell(self, redaction: IncomingRedaction) -> InboxItem | None:
        """The 🔔 its sender just redacted, if it is still waiting for its answer."""
        item = await self.storage.inbox.get(redaction.redacts)
        if (
            item is None
            or item.command != REACTION_COMMAND
            or not item.direct
            or item.sender != redaction.sender
            or item.room_id != redaction.room_id
            or await self.storage.inbox.status(item.event_id) != "pending"
        ):
            return None
        return item

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
        await self._record(room_id, redaction.event_id, redaction.sender, invocation)
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
        self,
        room_id: str,
        event_id: str,
        sender: str,
        command: str,
        sids: list[str],
        *,
        follows: str | None = None,
    ) -> None:
        """`command sids…` on behalf of `sender`, answered in their direct room
        (after the command `follows`, when given).

        Stored as the command and its arguments: nothing to parse again, and
        no text that a change of `bot.prefix` could make unreadable.
        """
        if not sids or sender == self.chat.user_id:
            return
        invocation = Invocation(command, " ".join(sids))
        if not self._admit(sender, room_id, event_id):
            return
        await self._record(room_id, event_id, sender, invocation, direct=True, follows=follows)

    async def _record(
        self,
        room_id: str,
        event_id: str,
        sender: str,
        invocation: Invocation,
        *,
        direct: bool = False,
        follows: str | None = None,
    ) -> None:
        """A command run by a reaction (or by taking one back): stored as its
        name and arguments, answered once, in the room or (`direct`) in private."""
        if not await self.storage.inbox.add(
            event_id,
            room_id,
            sender,
            invocation.args,
            None,
            direct=direct,
            command=invocation.name,
            device_id=self.chat.device_id,
            follows=follows,
        ):
            log.debug("reaction %s already recorded, not answering again", event_id)
            return
        # As `bot.answers` rebuilds it from the inbox after a restart.
        msg = IncomingMessage(room_id, event_id, sender, "", direct=direct, reaction=not direct)
        self.answers.hold(msg, invocation, follows)

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
        async with self.answers.slot:
            try:
                await self.chat.send_message(
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
        await self.chat.send_message(
            msg.room_id, message, txn_id=txn_id_for(msg.event_id), reply_to=msg.event_id
        )
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
