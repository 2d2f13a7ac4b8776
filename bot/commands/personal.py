"""Personal reminders: `!rappelle-moi <id>`, `!mes-rappels`, `!oublie <id>`.

The bot sends a direct message `reminders.personal` before the session (the
delivery goes through the outbox, see `bot.broadcast`). Stored: who, which
session (id, title, start as asked), and the direct room opened with them.

A 🔔 on a post presenting sessions (`bot.reminders.presenting`) runs `!rappelle-moi` with
them, answered in private; taking the 🔔 back runs `!oublie` with what it asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.commands.core import Context, Reaction, UsageError, command, echo
from bot.db.storage import Storage
from bot.direct_rooms import ensure_direct_room
from bot.i18n import N_
from bot.reminders import REMIND
from bot.render import Message

# Sessions one `!rappelle-moi` (or one 🔔) may ask for.
MAX_AT_ONCE = 20


async def _reminded(
    storage: Storage, reaction: str, _room_id: str, sender: str
) -> tuple[str, ...] | None:
    """The sessions `sender`'s 🔔 `reaction` asked reminders for (None: none)."""
    return tuple(await storage.personal.via(sender, reaction)) or None


def _when(ctx: Context, timestamp: int) -> tuple[str, str]:
    renderer = ctx.services.renderer
    moment = datetime.fromtimestamp(timestamp, UTC)
    today = renderer.local(ctx.services.now()).date()
    return renderer.day_label(renderer.local(moment).date(), today), renderer.time_label(moment)


@dataclass(frozen=True)
class Wanted:
    outcome: str  # added, already, unknown
    sid: str
    title: str = ""
    day: str = ""
    hour: str = ""


async def forget(ctx: Context) -> Message:
    """`!oublie <id> [id…]`; taking a 🔔 back runs it with the sessions that 🔔 asked for."""
    typed = ctx.args.lower().split() if ctx.trigger is None else ctx.trigger.values
    ids = list(dict.fromkeys(typed))[:MAX_AT_ONCE]
    if not ids:
        raise UsageError
    removed = [sid for sid in ids if await ctx.storage.personal.remove(ctx.msg.sender, sid)]
    missing = [echo(sid) for sid in ids if sid not in removed]
    return ctx.render("personal", outcome="forgotten", removed=removed, missing=missing, items=[])


@command(
    "rappelle-moi",
    "remind-me",
    "rappellemoi",
    usage=N_("<id>"),
    about=N_(
        "a direct message before a session (or react 🔔 to a session; "
        "%(prefix)smy-reminders, %(prefix)sforget <id>)"
    ),
    reactions=[Reaction("🔔", REMIND, undo=forget, given=_reminded, private=True)],
)
async def remind_me_command(ctx: Context) -> Message:
    """`!rappelle-moi <id> [id…]`; a 🔔 reaction runs it with the post's sessions."""
    trigger = ctx.trigger
    ids = list(dict.fromkeys(ctx.args.lower().split() if trigger is None else trigger.values))
    if not ids:
        raise UsageError
    now = ctx.services.now()
    sessions = []
    items: list[Wanted] = []
    for sid in ids[:MAX_AT_ONCE]:
        session = ctx.services.agenda.agenda.get(sid)
        if session is None or session.cancelled or session.start <= now:
            items.append(Wanted("unknown", echo(sid)))
        else:
            sessions.append(session)
    user_id = ctx.msg.sender
    if sessions and await ensure_direct_room(ctx.chat, ctx.storage, user_id) is None:
        return ctx.render("personal", outcome="no_room", items=[])
    for session in sessions:
        start = int(session.start.timestamp())
        via = None if trigger is None else trigger.reaction  # a 🔔: taking it back forgets
        added = await ctx.storage.personal.add(user_id, session.sid, session.title, start, via=via)
        day, hour = _when(ctx, start)
        items.append(Wanted("added" if added else "already", session.sid, session.title, day, hour))
    personal = ctx.services.config.reminders.personal
    before = ctx.services.renderer.duration(personal) if sessions else ""
    return ctx.render(
        "personal",
        outcome="asked",
        items=sorted(items, key=lambda i: i.outcome != "unknown"),
        before=before,
    )


@command(
    "mes-rappels",
    "my-reminders",
    "mesrappels",
    about=N_("your personal reminders (answered in private)"),
    private=True,
)
async def my_reminders_command(ctx: Context) -> Message:
    """Which sessions a person follows is theirs, as with `!mes-donnees`: answered
    in their direct room, the room told only where to look."""
    items = await ctx.storage.personal.reminders(ctx.msg.sender)
    return ctx.render(
        "personal_list",
        items=[(r, *_when(ctx, r.start)) for r in items],
    )


forget_command = command(
    "oublie", "forget", "oublier", usage=N_("<id>"), about=N_("cancel a personal reminder")
)(forget)
