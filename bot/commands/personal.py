"""Personal reminders: `!rappelle-moi <id>`, `!mes-rappels`, `!oublie <id>`.

The bot sends a direct message `reminders.personal` before the session (the
delivery goes through the outbox, see `bot.broadcast`). Stored: who, which
session (id, title, start as asked), and the direct room opened with them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.chat import SendError
from bot.dispatch import Context, UsageError, command, echo
from bot.render import Message


def _when(ctx: Context, timestamp: int) -> tuple[str, str]:
    renderer = ctx.services.renderer
    moment = datetime.fromtimestamp(timestamp, UTC)
    today = renderer.local(ctx.services.now()).date()
    return renderer.day_label(renderer.local(moment).date(), today), renderer.time_label(moment)


@command("rappelle-moi", "remind-me", "rappellemoi")
async def remind_me_command(ctx: Context) -> Message:
    sid = ctx.args.split(" ", 1)[0]
    if not sid:
        raise UsageError
    session = ctx.services.agenda.agenda.get(sid)
    now = ctx.services.now()
    if session is None or session.cancelled or session.start <= now:
        return ctx.render("personal", outcome="unknown", sid=echo(sid))
    user_id = ctx.msg.sender
    if await ctx.storage.direct_room(user_id) is None:
        try:
            room_id = await ctx.chat.open_direct_room(user_id)
        except SendError:
            return ctx.render("personal", outcome="no_room", sid=session.sid)
        await ctx.storage.set_direct_room(user_id, room_id)
    start = int(session.start.timestamp())
    added = await ctx.storage.personal_add(user_id, session.sid, session.title, start)
    day, hour = _when(ctx, start)
    return ctx.render(
        "personal",
        outcome="added" if added else "already",
        sid=session.sid,
        title=session.title,
        day=day,
        hour=hour,
        before=ctx.services.renderer.until(
            session.start, session.start - ctx.services.config.reminders.personal
        )
        .removeprefix("dans ")
        .removeprefix("in "),
    )


@command("mes-rappels", "my-reminders", "mesrappels")
async def my_reminders_command(ctx: Context) -> Message:
    items = await ctx.storage.personal_list(ctx.msg.sender)
    return ctx.render(
        "personal_list",
        items=[(r, *_when(ctx, r.start)) for r in items],
    )


@command("oublie", "forget", "oublier")
async def forget_command(ctx: Context) -> Message:
    sid = ctx.args.split(" ", 1)[0].lower()
    if not sid:
        raise UsageError
    removed = await ctx.storage.personal_remove(ctx.msg.sender, sid)
    return ctx.render("personal", outcome="forgotten" if removed else "not_found", sid=echo(sid))
