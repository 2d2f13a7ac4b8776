"""`!abonner rappels`, `!desabonner rappels`, `!abonnements`: what a room receives.

Subscribed to `rappels`, a room receives the programme-change notices
("⚠️ Changement de programme …"), each exactly once (see `bot.broadcast`).
"""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

from bot.agenda.model import Session
from bot.commands.core import Context, command, echo
from bot.db.subscriptions import GAZETTE, REMINDERS
from bot.i18n import N_
from bot.permissions import Role
from bot.render import Message
from bot.textnorm import fold

KINDS = {
    "rappels": REMINDERS,
    "rappel": REMINDERS,
    "reminders": REMINDERS,
    "gazette": GAZETTE,
}


def _kind(ctx: Context) -> str | None:
    return KINDS.get(fold(ctx.args))


def _render(ctx: Context, outcome: str, kind: str | None) -> Message:
    return ctx.render(
        "subscription",
        outcome=outcome,
        kind=kind,
        typed=echo(ctx.args),
        kinds=sorted(set(KINDS.values())),
    )


@command(
    "abonner",
    "subscribe",
    role=Role.ROOM,
    usage="rappels",
    about=N_("this room receives a reminder before each session and programme-change notices"),
)
async def subscribe_command(ctx: Context) -> Message:
    kind = _kind(ctx)
    if kind is None:
        return _render(ctx, "unknown_kind", None)
    added = await ctx.storage.subscriptions.add(ctx.msg.room_id, kind, ctx.msg.sender)
    return _render(ctx, "subscribed" if added else "already", kind)


@command(
    "desabonner",
    "unsubscribe",
    role=Role.ROOM,
    usage="rappels",
    about=N_("this room stops receiving them"),
)
async def unsubscribe_command(ctx: Context) -> Message:
    kind = _kind(ctx)
    if kind is None:
        return _render(ctx, "unknown_kind", None)
    removed = await ctx.storage.subscriptions.remove(ctx.msg.room_id, kind, ctx.msg.sender)
    return _render(ctx, "unsubscribed" if removed else "not_subscribed", kind)


NEXT_POSTS = 3


def next_reminders(ctx: Context) -> list[tuple[datetime, Session]]:
    """The next reminders due: (when, session), soonest first."""
    now = ctx.services.now()
    offsets = ctx.services.config.reminders.offsets
    due: list[tuple[datetime, Session]] = []
    for session in ctx.services.agenda.agenda.between(now):
        if session.start <= now:
            continue
        if len(due) >= NEXT_POSTS and session.start - max(offsets) > due[-1][0]:
            break  # sorted by start: nothing later can come sooner
        due.extend((session.start - off, session) for off in offsets if session.start - off > now)
        due.sort(key=lambda d: d[0])
        del due[NEXT_POSTS:]
    return due


@command("abonnements", "subscriptions", about=N_("what this room receives"))
async def subscriptions_command(ctx: Context) -> Message:
    kinds = await ctx.storage.subscriptions.kinds(ctx.msg.room_id)
    planned = next_reminders(ctx) if REMINDERS in kinds else []
    renderer = ctx.services.renderer
    now = ctx.services.now()
    today = renderer.local(now).date()
    gazette = ctx.services.config.gazette
    next_gazette = None
    if GAZETTE in kinds and gazette.schedule:
        trigger = CronTrigger.from_crontab(gazette.schedule, timezone=renderer.tz)
        fire = trigger.get_next_fire_time(None, now)
        if fire is not None:
            next_gazette = (
                renderer.day_label(renderer.local(fire).date(), today),
                renderer.time_label(fire),
            )
    return ctx.render(
        "subscriptions",
        kinds=kinds,
        planned=[
            (renderer.day_label(renderer.local(when).date(), today), renderer.time_label(when), s)
            for when, s in planned
        ],
        next_gazette=next_gazette,
        feed=GAZETTE in kinds and gazette.feed is not None,
    )
