"""`!mon-agenda`: a secret calendar address listing one's personal reminders.

    !mon-agenda              the address (made the first time)
    !mon-agenda revoquer     a new address; the old one stops working
    !mon-agenda supprimer    no address any more

The address is `<web.public_url>/moi/<token>.ics`, served by `bot.web`. The
token is a secret shown once, in the person's direct room (the command is
private): only its hash is stored, so an existing address cannot be shown
again. Asked again, the bot says when it was made and how to get a new one,
rather than silently making a new one, which would break the calendars
already subscribed to the old one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.commands.core import Context, UsageError, command
from bot.i18n import N_
from bot.render import Message
from bot.web import links


def _public_url(ctx: Context) -> str | None:
    """Where the web agenda is reached; None when the bot serves none."""
    web = ctx.services.config.web
    return web.public_url if web.http is not None else None


def _show(ctx: Context, outcome: str, public_url: str, token: str) -> Message:
    url = links.personal_feed_url(public_url, token)
    return ctx.render("my_calendar", outcome=outcome, url=url, webcal=links.webcal(url), day="")


def _outcome(ctx: Context, outcome: str, day: str = "") -> Message:
    return ctx.render("my_calendar", outcome=outcome, url="", webcal="", day=day)


@command(
    "mon-agenda",
    "my-calendar",
    "monagenda",
    usage=N_("[revoke | delete]"),
    about=N_(
        "a secret calendar address with the sessions you asked to be reminded of, "
        "for Outlook, Thunderbird or your phone (answered in private)"
    ),
    private=True,
)
async def my_calendar_command(ctx: Context) -> Message:
    if ctx.args.strip():
        raise UsageError
    public_url = _public_url(ctx)
    if public_url is None:
        return _outcome(ctx, "disabled")
    user_id = ctx.msg.sender
    token = await ctx.storage.personal.create_feed(user_id, ctx.services.now().timestamp())
    if token is not None:
        return _show(ctx, "created", public_url, token)
    created = await ctx.storage.personal.feed_created(user_id)
    if created is None:  # deleted in between: the person asked for one
        token = await ctx.storage.personal.renew_feed(user_id, ctx.services.now().timestamp())
        return _show(ctx, "created", public_url, token)
    renderer = ctx.services.renderer
    day = renderer.local(datetime.fromtimestamp(created, UTC)).date()
    today = renderer.local(ctx.services.now()).date()
    return _outcome(ctx, "exists", renderer.day_label(day, today))


@my_calendar_command.sub(N_("revoke"), "revoquer", "renouveler", "renew", "nouveau", "new")
async def revoke_command(ctx: Context) -> Message:
    public_url = _public_url(ctx)
    if public_url is None:
        return _outcome(ctx, "disabled")
    user_id = ctx.msg.sender
    had = await ctx.storage.personal.feed_created(user_id) is not None
    token = await ctx.storage.personal.renew_feed(user_id, ctx.services.now().timestamp())
    return _show(ctx, "renewed" if had else "created", public_url, token)


@my_calendar_command.sub(N_("delete"), "supprimer", "effacer")
async def delete_command(ctx: Context) -> Message:
    # Allowed with the web agenda off too: erasing one's data always works.
    dropped = await ctx.storage.personal.drop_feed(ctx.msg.sender)
    return _outcome(ctx, "deleted" if dropped else "none")
