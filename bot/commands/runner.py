"""Running a command: what a message asks for, routing, roles, one error boundary.

`parse` finds the command in a message; `Runner.answer` runs it and turns
every outcome into a reply: the command's answer, its usage, a problem
worded for the person, a refusal, or (any exception) an error with a
reference for the logs, never the exception's text. Nothing here sends or
stores: `bot.dispatch` decides when and where the reply goes, once.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from bot.chat import ChatClient, IncomingMessage, Reply, Triggered
from bot.commands.core import (
    Command,
    Context,
    Handler,
    PermissionDenied,
    Problem,
    Registry,
    Services,
    UsageError,
    echo,
)
from bot.db.storage import Storage
from bot.ops import Metrics
from bot.permissions import ModeratorRooms, Permissions, Rights, Role
from bot.textnorm import fold

log = logging.getLogger(__name__)

MAX_COMMAND_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command to run, as typed in a message (a reaction's is `IncomingMessage.trigger`)."""

    name: str  # as typed (folded), or the registered name
    args: str


def parsed(body: str, prefix: str) -> Invocation | None:
    """The command in `body`, as an Invocation (None: conversation)."""
    parsed = parse(body, prefix)
    return None if parsed is None else Invocation(*parsed)


def parse(body: str, prefix: str) -> tuple[str, str] | None:
    """(command name, arguments) when `body` is a command, else None.

    Only the first line counts. `!` followed by a space or punctuation
    ("! oui", "!!!") is conversation, not a command.
    """
    text = strip_reply_fallback(body).lstrip()
    if not text.startswith(prefix):
        return None
    line = text[len(prefix) :].split("\n", 1)[0][:MAX_COMMAND_CHARS]
    if not line or not line[0].isalnum():
        return None
    name, _, args = line.partition(" ")
    return fold(name), " ".join(args.split())


def strip_reply_fallback(body: str) -> str:
    """Rich replies from older clients quote the parent as '> ' lines first."""
    if not body.startswith("> "):
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    return "\n".join(lines[i:]).lstrip("\n")


class Runner:
    def __init__(
        self,
        registry: Registry,
        services: Services,
        chat: ChatClient,
        storage: Storage,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.services = services
        self.chat = chat
        self.storage = storage
        self.metrics = metrics

    @property
    def prefix(self) -> str:
        return self.services.config.bot.prefix

    def private(self, invocation: Invocation | None) -> bool:
        """Whether the command is answered in the sender's direct room."""
        cmd = None if invocation is None else self.registry.find(invocation.name)
        return cmd is not None and cmd.private

    async def answer(
        self, msg: IncomingMessage, invocation: Invocation | None = None
    ) -> Reply | None:
        """The reply to a message: the one error boundary of every command.

        `invocation`: the command to run, when already known (else parsed
        from the message's text; None when it holds no command). A message
        run by a reaction (`msg.trigger`) runs what the trigger declares.
        """
        if msg.trigger is not None:
            name, args = msg.trigger.name, ""
        else:
            invocation = invocation or parsed(msg.body, self.prefix)
            if invocation is None:
                return None
            name, args = invocation.name, invocation.args
        services = self.services
        ctx = Context(
            msg=msg,
            args=args,
            services=services,
            registry=self.registry,
            lookup_rights=lambda: self.rights_of(msg.room_id, msg.sender),
            storage=self.storage,
            chat=self.chat,
        )
        try:
            if msg.trigger is not None:
                return await self._run_triggered(ctx, msg.trigger)
            return await self._run(ctx, name, args)
        except Exception:
            ref = secrets.token_hex(2)
            log.exception("command %s failed (ref %s, event %s)", name, ref, msg.event_id)
            try:
                return ctx.render("error", ref=ref)
            except Exception:
                log.exception("the error template itself failed (ref %s)", ref)
                return ctx.services.renderer.internal_error(ref)

    async def _run(self, ctx: Context, name: str, args: str) -> Reply | None:
        """Route to the command declared, check the rights it asks, word what went wrong."""
        cmd = self.registry.find(name)
        # Label by registered name only: typed names would grow without bound.
        self.metrics.commands.labels(cmd.name if cmd else "(unknown)").inc()
        if cmd is None:
            return ctx.render("unknown", command=echo(name))
        target, typed, ctx.args = cmd.route(args)
        # Names what was refused as typed: "session ajouter", not "session".
        return await self._checked(ctx, target, target, f"{cmd.name} {typed}".strip())

    async def _run_triggered(self, ctx: Context, trigger: Triggered) -> Reply | None:
        """The command a reaction runs (or, taken back, its undo), as declared."""
        found = self.registry.trigger(trigger.name)
        if found is None:  # declared by an earlier version of the bot
            log.info("reaction %s: no trigger %r any more", ctx.msg.event_id, trigger.name)
            return None
        reaction, declared = found
        root = declared.parent or declared
        self.metrics.commands.labels(root.name).inc()
        # Named as it would be typed: "gazette valider".
        sub = self.services.renderer.gettext(declared.name) if declared.parent else ""
        what = f"{root.name} {sub}".strip()
        handler: Handler = declared
        command = declared
        if trigger.undo:
            assert reaction.undo is not None  # only undoable triggers record an undo
            handler = reaction.undo
            if isinstance(handler, Command):  # its own role and usage
                command, what = handler, handler.name
        return await self._checked(ctx, command, handler, what)

    async def _checked(
        self, ctx: Context, target: Command, handler: Handler, what: str
    ) -> Reply | None:
        """Run `handler` if the sender has the role `target` declares; word what went wrong."""
        try:
            if target.role > Role.ANYONE and not (await ctx.rights()).allows(target.role):
                raise PermissionDenied(what, target.role)
            return await handler(ctx)
        except UsageError:
            return ctx.render("usage", command=target, rights=await ctx.rights())
        except Problem as problem:
            return ctx.render(
                "problem",
                problem=problem.code,
                value=problem.value,
                command=target,
                rights=await ctx.rights(),
            )
        except PermissionDenied as exc:
            log.info("refused %s to %s in %s", exc, ctx.msg.sender, ctx.msg.room_id)
            return ctx.render("refused", command=str(exc), community=exc.role is Role.COMMUNITY)

    @property
    def permissions(self) -> Permissions:
        bot = self.services.config.bot
        rooms = self.services.moderator_rooms or ModeratorRooms(bot.moderator_rooms)
        return Permissions(bot.moderators, rooms, self.chat)

    async def rights_of(self, room_id: str, user_id: str) -> Rights:
        return await self.permissions.rights(room_id, user_id)
