"""`!agenda [aujourd'hui|demain|semaine] [mots…]`: the next sessions."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby

from bot.agenda.model import Session
from bot.agenda.query import AgendaQuery
from bot.chat import FileUpload, Reply
from bot.commands.core import Context, command, echo
from bot.i18n import N_
from bot.reminders import presenting
from bot.render import Message, Renderer
from bot.views import views
from bot.web import links

# An .ics answer holds at most this many sessions (about 1 kB each).
MAX_EXPORT = 2000


def render_agenda(
    sessions: list[Session],
    *,
    now: datetime,
    renderer: Renderer,
    limit: int,
    prefix: str,
    kind: str | None = None,
    words: list[str] | None = None,
    web: str | None = None,
) -> Message:
    """`web`: the same agenda's page, when the public agenda has an address."""
    shown = views(sessions[:limit], now, renderer)
    days = [(day, list(items)) for day, items in groupby(shown, key=lambda v: v.day)]
    message = renderer.render(
        "agenda",
        prefix=prefix,
        days=days,
        today=renderer.local(now).date(),
        total=len(sessions),
        more=max(0, len(sessions) - limit),
        window=kind,
        words=echo(" ".join(words or [])),
        web=web,
    )
    upcoming = tuple(v.session.sid for v in shown if v.session.start > now)
    return presenting(message, upcoming)


@command(
    "agenda",
    "programme",
    "calendrier",
    "calendar",
    usage=N_("[today|tomorrow|week] [words…] [ics]"),
    about=N_(
        "the upcoming BlueHats sessions (days, webinars); filter by period or words, "
        "e.g. %(prefix)sagenda tomorrow, %(prefix)sagenda superset; "
        'add "ics" to get a file to import into your calendar'
    ),
)
async def agenda_command(ctx: Context) -> Reply:
    services = ctx.services
    query = AgendaQuery.parse(ctx.args)
    now = services.now()
    agenda = services.agenda.agenda
    sessions = query.select(agenda, now, services.renderer.tz)
    if query.export and sessions:
        # Off the event loop, and once per agenda and selection.
        data = await services.exports.file(
            agenda,
            sessions[:MAX_EXPORT],
            tz=services.renderer.tz,
            now=now,
            language=services.renderer.language,
        )
        return FileUpload(filename="agenda-bluehats.ics", mimetype="text/calendar", data=data)
    return render_agenda(
        sessions,
        now=now,
        renderer=services.renderer,
        limit=services.config.agenda.max_items,
        prefix=ctx.prefix,
        kind=query.window,
        words=list(query.words),
        web=links.agenda_url(public, query) if (public := services.config.web.public_url) else None,
    )
