"""Personal reminders: `!rappelle-moi <id>`, `!mes-rappels`, `!oublie <id>`.

The bot sends a direct message `reminders.personal` before the session (the
delivery goes through the outbox, see `bot.broadcast`). Stored: who, which
session (id, title, start as asked), and the direct room opened with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.commands.core import Context, UsageError, command, echo
from bot.direct_rooms import ensure_direct_room
from bot.i18n import N_
from bot.render import Message

# Sessions one `!rappelle-moi` (or one 🔔) may ask for.
MAX_AT_ONCE = 20


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


@command(
    "rappelle-moi",
    "remind-me",
    "rappellemoi",
    usage=N_("<id>"),
    about=N_(
        "a direct message before a session (or react 🔔 to a session; "
        "%(prefix)smy-reminders, %(prefix)sforget <id>)"
    ),
)
async def remind_me_command(ctx: Context) -> Message:
    """`!rappelle-moi <id> [id…]`; a 🔔 reaction runs it with the post's sessions."""
    ids = list(dict.fromkeys(ctx.args.lower().split()))
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
        via = ctx.msg.event_id if ctx.msg.direct else None  # a 🔔 reaction
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


@command("oublie", "forget", "oublier", usage=N_("<id>"), about=N_("cancel a personal reminder"))
async def forget_command(ctx: Context) -> Message:
    """`!oublie <id> [id…]`; removing a 🔔 reaction runs it with that reaction's sessions."""
    ids = list(dict.fromkeys(ctx.args.lower().split()))[:MAX_AT_ONCE]
    if not ids:
        raise UsageError
    removed = [sid for sid in ids if await ctx.storage.personal.remove(ctx.msg.sender, sid)]
    missing = [echo(sid) for sid in ids if sid not in removed]
    return ctx.render("personal", outcome="forgotten", removed=removed, missing=missing, items=[])
