"""Commands: parsing, the registry, one error boundary, exactly-once answers.

A command is first written to the inbox table (in the sync callback, before
the sync token moves on), then answered with a transaction id derived from
its event id, then marked done. A crash anywhere in between leaves a pending
row that is answered again at start with the same transaction id, which the
homeserver deduplicates: no command is lost, none is answered twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, replace

from bot.chat import (
    ChatClient,
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    Reply,
)
from bot.commands.core import (
    Context,
    PermissionDenied,
    Problem,
    Registry,
    Services,
    UsageError,
    echo,
)
from bot.commands.personal import forget_command, remind_me_command
from bot.db.inbox import InboxItem
from bot.db.storage import Storage
from bot.delivery import Attempts, Kind, Outgoing, Sender
from bot.direct_rooms import ensure_direct_room
from bot.ops import Metrics
from bot.permissions import Role, role_for
from bot.textnorm import fold

log = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 2000
SETTLE_GRACE = 2.0
# A reaction with this emoji to a post presenting sessions runs this command.
BELL = "🔔"
REACTION_COMMAND = remind_me_command.name
# Taking the reaction back runs this one.
FORGET_COMMAND = forget_command.name


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command to run: typed in a message, or asked for by a reaction (🔔)."""

    name: str  # as typed (folded), or the registered name
    args: str


def _parsed(body: str, prefix: str) -> Invocation | None:
    parsed = parse(body, prefix)
    return None if parsed is None else Invocation(*parsed)


def parse(body: str, prefix: str) -> tuple[str, str] | None:
    """(command name, arguments) when `body` is a command, else None.

    Only the first line counts. `!` followed by a space or punctuation
    ("! oui", "!!!") is conversation, not a command.
    """
    text = _strip_reply_fallback(body).lstrip()
    if not text.startswith(prefix):
        return None
    line = text[len(prefix) :].split("\n", 1)[0][:MAX_COMMAND_CHARS]
    if not line or not line[0].isalnum():
        return None
    name, _, args = line.partition(" ")
    return fold(name), " ".join(args.split())


def _strip_reply_fallback(body: str) -> str:
    """Rich replies from older clients quote the parent as '> ' lines first."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


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
    ) -> None:
        self.metrics = metrics or Metrics()
        self.registry = registry
        self.services = services
        self.chat = chat
        self.storage = storage
        self.sender = Sender(chat, storage, retry_delay=retry_delay, metrics=self.metrics)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def prefix(self) -> str:
        return self.services.config.bot.prefix

    async def accept(self, msg: IncomingMessage) -> None:
        """Called for each new message, in timeline order, before the sync token moves."""
        if msg.sender == self.chat.user_id:
            return
        invocation = _parsed(msg.body, self.prefix)
        if invocation is None:
            return
        if not await self.storage.inbox.add(
            msg.event_id, msg.room_id, msg.sender, msg.body, msg.thread_root, direct=msg.direct
        ):
            log.debug("command %s already recorded, not answering again", msg.event_id)
            return
        self._spawn(msg, invocation, attempts=0, first_counted=True)

    async def accept_reaction(self, reaction: IncomingReaction) -> None:
        """A 🔔 on a post of the bot presenting sessions: `!rappelle-moi` those, in private.

        Recorded in the inbox like a typed command (same exactly-once path),
        answered in the sender's direct room rather than in the room.
        """
        if reaction.sender == self.chat.user_id or reaction.key.strip("\ufe0f ") != BELL:
            return
        # [] when not a post of ours, or one without sessions.
        sids = await self.storage.posts.sessions(reaction.target, reaction.room_id)
        await self._accept_private(
            reaction.room_id, reaction.event_id, reaction.sender, REACTION_COMMAND, sids
        )

    async def accept_redaction(self, redaction: IncomingRedaction) -> None:
        """A 🔔 taken back: `!oublie` the reminders it asked for, answered in private."""
        # [] when not one of the reactions that asked for reminders.
        sids = await self.storage.personal.via(redaction.sender, redaction.redacts)
        await self._accept_private(
            redaction.room_id, redaction.event_id, redaction.sender, FORGET_COMMAND, sids
        )

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
        if not await self.storage.inbox.add(
            event_id, room_id, sender, invocation.args, None, direct=True, command=command
        ):
            log.debug("reaction %s already recorded, not answering again", event_id)
            return
        msg = IncomingMessage(room_id, event_id, sender, "", direct=True)
        self._spawn(msg, invocation, attempts=0, first_counted=True)

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
            invocation = (
                Invocation(item.command, item.body)
                if item.command is not None
                else _parsed(msg.body, self.prefix)
            )
            if invocation is None:  # typed under another prefix: nothing to answer now
                await self.storage.inbox.finish(item.event_id)
                continue
            self._spawn(msg, invocation, attempts=item.attempts, first_counted=False)
            resumed += 1
        if resumed:
            log.info("answering %d command(s) left pending by the last run", resumed)
        return resumed

    def _spawn(
        self, msg: IncomingMessage, invocation: Invocation, attempts: int, first_counted: bool
    ) -> None:
        task = asyncio.create_task(self._process(msg, invocation, attempts, first_counted))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, grace: float = SETTLE_GRACE) -> None:
        """Give in-flight answers up to `grace` seconds; they go on after that.

        Called at the end of each sync batch: answering before the next /sync
        long-poll starts spares the homeserver that request ahead of our send
        (measured with bench/agenda_latency.py: p50 1.12x the echo floor
        without, 1.0x with). A slow room delays syncing by `grace` at most.
        """
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)

    async def drain(self, grace: float = 10.0) -> None:
        """Let in-flight answers finish (they stay pending in the DB if cut)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()

    async def _process(
        self, msg: IncomingMessage, invocation: Invocation, attempts: int, first_counted: bool
    ) -> None:
        started = time.perf_counter()
        reply = await self.answer(msg, invocation)
        rendered = time.perf_counter()
        if reply is None:
            await self.storage.inbox.finish(msg.event_id)
            return
        sent_all = True
        for out in await self._outgoing(msg, invocation, reply):
            delivered = await self.sender.deliver(
                out,
                Attempts(
                    made=attempts,
                    record=lambda: self.storage.inbox.attempt(msg.event_id),
                    first_recorded=first_counted,
                ),
            )
            sent_all = sent_all and delivered.sent
            # The count covers the whole answer: a second message starts afresh.
            attempts, first_counted = 0, False
        await self.storage.inbox.finish(msg.event_id, failed=not sent_all)
        if not sent_all:
            return
        sent = time.perf_counter()
        self.metrics.reply_seconds.observe(sent - started)
        log.debug(
            "answered %s: %.1f ms (answer %.1f ms, send %.1f ms)",
            msg.event_id,
            (sent - started) * 1000,
            (rendered - started) * 1000,
            (sent - rendered) * 1000,
        )

    async def _outgoing(
        self, msg: IncomingMessage, invocation: Invocation, reply: Reply
    ) -> list[Outgoing]:
        """Where and how the answer goes: a reply in the room (its thread), or in private.

        A private command typed in a room answers in the sender's direct room
        and says so in the room: two messages, each with its own transaction id.
        """
        label = f"answer to {msg.event_id} in {msg.room_id}"
        txn_id = txn_id_for(msg.event_id)
        in_room = Outgoing(
            Kind.REPLY,
            msg.room_id,
            reply,
            txn_id,
            label,
            reply_to=msg.event_id,
            thread_root=msg.thread_root,
        )
        if msg.direct:
            # No direct room (it could not be opened): the answer saying so
            # goes to the room, or the person would hear nothing.
            room_id = await self.storage.personal.direct_room(msg.sender) or msg.room_id
            return [Outgoing(Kind.REPLY, room_id, reply, txn_id, label)]
        cmd = self.registry.find(invocation.name)
        if cmd is None or not cmd.private:
            return [in_room]
        dm = await ensure_direct_room(self.chat, self.storage, msg.sender)
        if dm == msg.room_id:  # typed in the direct room itself
            return [in_room]
        notice = self.services.renderer.render("private", prefix=self.prefix, opened=dm is not None)
        said = replace(in_room, reply=notice, txn_id=txn_id_for(msg.event_id + "#room"))
        if dm is None:
            return [said]
        return [Outgoing(Kind.REPLY, dm, reply, txn_id, f"private {label}"), said]

    async def answer(
        self, msg: IncomingMessage, invocation: Invocation | None = None
    ) -> Reply | None:
        """The reply to a message: the one error boundary of every command.

        `invocation`: the command to run, when already known (else parsed
        from the message's text; None when it holds no command).
        """
        invocation = invocation or _parsed(msg.body, self.prefix)
        if invocation is None:
            return None
        name, args = invocation.name, invocation.args
        services = self.services
        ctx = Context(
            msg=msg,
            args=args,
            services=services,
            registry=self.registry,
            lookup_role=lambda: self.role_of(msg.room_id, msg.sender),
            storage=self.storage,
            chat=self.chat,
        )
        try:
            return await self._run(ctx, name, args)
        except Exception:
            ref = secrets.token_hex(2)
            log.exception("command %s failed (ref %s, event %s)", name, ref, msg.event_id)
            try:
                return ctx.render("error", ref=ref)
            except Exception:
                log.exception("the error template itself failed (ref %s)", ref)
                return ctx.services.renderer.internal_error(ref)

    async def _run(self, ctx: Context, name: str, args: str) -> Reply:
        """Route to the command declared, check its role, word what went wrong."""
        cmd = self.registry.find(name)
        # Label by registered name only: typed names would grow without bound.
        self.metrics.commands.labels(cmd.name if cmd else "(unknown)").inc()
        if cmd is None:
            return ctx.render("unknown", command=echo(name))
        target, typed, ctx.args = cmd.route(args)
        try:
            if target.role > Role.ANYONE and await ctx.role() < target.role:
                # Names what was refused as typed: "session ajouter", not "session".
                raise PermissionDenied(f"{cmd.name} {typed}".strip())
            return await target(ctx)
        except UsageError:
            return ctx.render("usage", command=target, role=await ctx.role())
        except Problem as problem:
            return ctx.render(
                "problem",
                problem=problem.code,
                value=problem.value,
                command=target,
                role=await ctx.role(),
            )
        except PermissionDenied as exc:
            log.info("refused %s to %s in %s", exc, ctx.msg.sender, ctx.msg.room_id)
            return ctx.render("refused", command=str(exc))

    async def role_of(self, room_id: str, user_id: str) -> Role:
        admins = self.services.config.bot.moderators
        if user_id in admins:
            return Role.ADMIN
        level = await self.chat.power_level(room_id, user_id)
        return role_for(user_id, admins, level)


def _message(item: InboxItem) -> IncomingMessage:
    return IncomingMessage(
        item.room_id, item.event_id, item.sender, item.body, item.thread_root, direct=item.direct
    )
