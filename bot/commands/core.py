"""Commands declared once: names, aliases, role, sub-commands, usage and help.

A command is declared where its handler is written:

    @command("session", "seance", usage=N_("<id> [ics]"), about=N_("one session…"))
    async def session_command(ctx): ...

    @session_command.sub(N_("add"), "ajouter", role=Role.COMMUNITY, usage=N_("<date> …"))
    async def add(ctx): ...

The dispatcher routes `!session ajouter …` to `add` after checking the role
declared (`bot.permissions`: community moderators for shared data, the
room's moderators for its own settings; a refusal names what was refused,
"session ajouter", and who may run it); `!aide`,
"Utilisation : …" and "Syntaxe : …" are generated from the declarations
(the texts are message ids, translated by the catalogs: see `bot.i18n`).

A command also declares the reactions that run it (`reactions=[Reaction(…)]`):
the emoji, what the post reacted to means (`Message.marked` by whoever posts
it), where the answer goes, and what taking the reaction back runs. The
dispatcher finds them in the registry (`Registry.reacting`) and knows no
command; the command receives the resolved values as `ctx.trigger`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bot.agenda.export import IcsExports
from bot.chat import ChatClient, IncomingMessage, Reply, Triggered
from bot.db.storage import Storage
from bot.permissions import ModeratorRooms, Rights, Role
from bot.render import Message, Renderer
from bot.textnorm import fold

if TYPE_CHECKING:
    from bot.agenda.sources import AgendaService
    from bot.config import Config

# What is echoed back of a user's input, at most.
ECHO_CHARS = 40


def echo(text: str) -> str:
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


class UsageError(Exception):
    """Bad arguments: the dispatcher answers with the command's usage."""


class PermissionDenied(Exception):
    """The sender lacks the rights the command declares (`role`)."""

    def __init__(self, what: str, role: Role) -> None:
        super().__init__(what)
        self.role = role


class Problem(Exception):
    """Bad input, with a code the `problem` template words, and the text at fault.

    The dispatcher answers it with the message and the syntax of the command
    that raised it.
    """

    def __init__(self, code: str, value: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.value = echo(value)


@dataclass(frozen=True)
class Services:
    config: Config
    renderer: Renderer
    agenda: AgendaService
    now: Callable[[], datetime]
    # Wakes the broadcaster: posts were queued (a gazette published, corrected…).
    wake: Callable[[], None] = lambda: None
    # `bot.moderator_rooms` resolved (aliases included); None: the room IDs as
    # written in the config (unit tests).
    moderator_rooms: ModeratorRooms | None = None
    # The `.ics` files of `!agenda … ics`, built once per agenda and selection.
    exports: IcsExports = field(default_factory=IcsExports)


@dataclass
class Context:
    msg: IncomingMessage
    args: str  # after the command (and its sub-command) name
    services: Services
    registry: Registry
    lookup_rights: Callable[[], Awaitable[Rights]]
    storage: Storage
    chat: ChatClient
    _rights: Rights | None = None

    async def rights(self) -> Rights:
        """The sender's rights here; power levels are read only when asked."""
        if self._rights is None:
            self._rights = await self.lookup_rights()
        return self._rights

    @property
    def prefix(self) -> str:
        return self.services.config.bot.prefix

    @property
    def trigger(self) -> Triggered | None:
        """Run by a reaction (or by taking one back): what it resolved to."""
        return self.msg.trigger

    def render(self, template: str, **ctx: Any) -> Message:
        return self.services.renderer.render(template, prefix=self.prefix, **ctx)


# None: nothing to say (only a reaction taken back may answer nothing).
Handler = Callable[[Context], Awaitable[Reply | None]]
# (storage, the event reacted to, its room) → what it means to the trigger; None: nothing.
Resolve = Callable[[Storage, str, str], Awaitable[tuple[str, ...] | None]]
# (storage, a reaction answered, its room, who takes it back) → what it gave that
# the undo takes back; None: nothing (not such a reaction, or not theirs).
Given = Callable[[Storage, str, str, str], Awaitable[tuple[str, ...] | None]]


@dataclass(frozen=True, eq=False)
class Reaction:
    """A reaction that runs the command it is declared on.

    `emoji` (variation selectors ignored); `name`: stable, stored with the
    posts it marks and in the inbox. `resolve`: what the event reacted to
    means (default: what the post was `Message.marked` with under `name`);
    None, or no value: the reaction is not for this trigger. `private`: the
    answer goes to the sender's direct room, not the room. `undo`: run when
    its sender takes the reaction back, after the reaction's own answer;
    `given` says what an answered reaction gave (nothing: no undo). Taken
    back before its answer, `given` is asked once that answer is made.
    """

    emoji: str
    name: str
    undo: Handler | None = None
    given: Given | None = None
    private: bool = False
    resolve: Resolve | None = None

    def __post_init__(self) -> None:
        if (self.undo is None) != (self.given is None):
            raise ValueError(f"reaction {self.name!r}: undo and given go together")

    async def resolved(self, storage: Storage, target: str, room_id: str) -> tuple[str, ...]:
        """What a reaction to `target` asks for (() : nothing, not for this trigger)."""
        if self.resolve is not None:
            return await self.resolve(storage, target, room_id) or ()
        return await storage.posts.mark(target, room_id, self.name)


@dataclass(eq=False)
class Command:
    """A command or a sub-command, as declared.

    `name` is shown (a sub-command's is a message id: "add" reads "ajouter"
    in French); `aliases` are also accepted. `usage`: the arguments, `about`:
    one line of help, `example`: a full command line (message ids; `%(prefix)s`
    stands for the command prefix).
    """

    name: str
    aliases: tuple[str, ...]
    handler: Handler
    role: Role = Role.ANYONE
    usage: str = ""
    about: str = ""
    example: str = ""
    private: bool = False
    parent: Command | None = None
    subcommands: list[Command] = field(default_factory=list)
    reactions: tuple[Reaction, ...] = ()

    async def __call__(self, ctx: Context) -> Reply | None:
        return await self.handler(ctx)

    def sub(
        self,
        name: str,
        *aliases: str,
        role: Role = Role.ANYONE,
        usage: str = "",
        example: str = "",
        reactions: Iterable[Reaction] = (),
    ) -> Callable[[Handler], Command]:
        """Declare a sub-command: `!<command> <name> …`."""

        def declare(fn: Handler) -> Command:
            sub = Command(
                name,
                aliases,
                fn,
                role,
                usage,
                example=example,
                parent=self,
                reactions=tuple(reactions),
            )
            taken = {fold(n) for s in self.subcommands for n in (s.name, *s.aliases)}
            if taken & {fold(n) for n in (name, *aliases)}:
                raise ValueError(f"sub-command name of {name!r} declared twice in {self.name}")
            self.subcommands.append(sub)
            return sub

        return declare

    def route(self, args: str) -> tuple[Command, str, str]:
        """(command to run, sub-command name as typed, its arguments)."""
        first, _, rest = args.partition(" ")
        key = fold(first)
        for sub in self.subcommands:
            if key and key in {fold(n) for n in (sub.name, *sub.aliases)}:
                return sub, first, rest
        return self, "", args

    def visible_to(self, rights: Rights) -> list[Command]:
        return [s for s in self.subcommands if rights.allows(s.role)]


def command(
    name: str,
    *aliases: str,
    role: Role = Role.ANYONE,
    usage: str = "",
    about: str = "",
    private: bool = False,
    reactions: Iterable[Reaction] = (),
) -> Callable[[Handler], Command]:
    """Declare a command; `Registry.collect` finds it in its module.

    `private`: typed in a room, answered in the sender's direct room (the
    room is told so): for answers holding personal data. `reactions`: the
    reactions that run it (`Reaction`).
    """

    def declare(fn: Handler) -> Command:
        return Command(
            name, aliases, fn, role, usage, about, private=private, reactions=tuple(reactions)
        )

    return declare


def emoji_key(key: str) -> str:
    """A reaction's key as declared: variation selectors and spaces ignored."""
    return key.strip("\ufe0f ")


class Registry:
    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}
        self.commands: list[Command] = []
        # Reaction triggers: by name, with the command each runs; names by emoji.
        self._triggers: dict[str, tuple[Reaction, Command]] = {}
        self._by_emoji: dict[str, list[str]] = {}

    def collect(self, *modules: ModuleType) -> Registry:
        for module in modules:
            for value in vars(module).values():
                if isinstance(value, Command) and value.parent is None:
                    self.add(value)
        return self

    def add(self, cmd: Command) -> None:
        for key in (cmd.name, *cmd.aliases):
            if fold(key) in self._by_name:
                raise ValueError(f"command name {key!r} registered twice")
            self._by_name[fold(key)] = cmd
        self.commands.append(cmd)
        for declared in (cmd, *cmd.subcommands):
            for reaction in declared.reactions:
                if reaction.name in self._triggers:
                    raise ValueError(f"reaction trigger {reaction.name!r} registered twice")
                self._triggers[reaction.name] = (reaction, declared)
                self._by_emoji.setdefault(emoji_key(reaction.emoji), []).append(reaction.name)

    def find(self, name: str) -> Command | None:
        return self._by_name.get(fold(name))

    def reacting(self, key: str) -> list[Reaction]:
        """The triggers a reaction with this key may be for (in declaration order)."""
        return [self._triggers[n][0] for n in self._by_emoji.get(emoji_key(key), [])]

    def trigger(self, name: str) -> tuple[Reaction, Command] | None:
        """The trigger declared under `name`, and the command it runs."""
        return self._triggers.get(name)

    def undoable(self) -> list[Reaction]:
        return [r for r, _ in self._triggers.values() if r.undo is not None]

    def visible_to(self, rights: Rights) -> list[Command]:
        return [c for c in self.commands if rights.allows(c.role)]
