"""`!abonner rappels`, `!desabonner rappels`, `!abonnements`: what a room receives.

Subscribed to `rappels`, a room receives the programme-change notices
("⚠️ Changement de programme …"), each exactly once (see `bot.broadcast`).
"""

from __future__ import annotations

from datetime import datetime

from bot.agenda.model import Session
from bot.commands.core import Context, command, echo
from bot.db.subscriptions import GAZETTE, REMINDERS
from bot.gazette.desk import Desk
from bot.gazette.schedule import GazetteSchedule
from bot.i18n import N_
from bot.permissions import Role
from bot.reminders import ReminderRule
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
    """The next reminders due: (when, session), soonest first (the broadcaster's rule)."""
    rule = ReminderRule.of(ctx.services.config.reminders)
    return rule.next_times(ctx.services.agenda.agenda, ctx.services.now(), NEXT_POSTS)


async def next_gazette(ctx: Context) -> datetime | None:
    """When the next issue of the gazette goes out, as its schedule decides."""
    services = ctx.services
    config = services.config.gazette
    if config.schedule is None or config.editors_room is None:
        return None
    desk = Desk(
        ctx.storage, services.renderer, services.agenda, config, prefix=ctx.prefix, now=services.now
    )
    return await GazetteSchedule(desk, config.editors_room).next_publication()


@command("abonnements", "subscriptions", about=N_("what this room receives"))
async def subscriptions_command(ctx: Context) -> Message:
    kinds = await ctx.storage.subscriptions.kinds(ctx.msg.room_id)
    planned = next_reminders(ctx) if REMINDERS in kinds else []
    renderer = ctx.services.renderer
    now = ctx.services.now()
    today = renderer.local(now).date()
    gazette = ctx.services.config.gazette
    fire = await next_gazette(ctx) if GAZETTE in kinds else None
    when_gazette = None
    if fire is not None:
        when_gazette = (
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
        next_gazette=when_gazette,
        feed=GAZETTE in kinds and gazette.feed is not None,
    )
