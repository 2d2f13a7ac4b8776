"""`!agenda [aujourd'hui|demain|semaine] [mots…]`: the next sessions."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timedelta
from itertools import groupby

from bot.agenda.export import to_ics
from bot.agenda.model import Session
from bot.chat import FileUpload, Reply
from bot.commands.core import Context, command, echo
from bot.i18n import N_
from bot.render import Message, Renderer
from bot.textnorm import fold
from bot.views import views

# Time-window words, French first; folded (no accents, typographic apostrophes).
WINDOWS = {
    "aujourd'hui": "today",
    "aujourdhui": "today",
    "today": "today",
    "demain": "tomorrow",
    "tomorrow": "tomorrow",
    "semaine": "week",
    "week": "week",
}
EXPORT_WORDS = frozenset({"ics", "ical", "icalendar", "export", "exporter"})
MAX_WORDS = 8
# An .ics answer holds at most this many sessions (about 1 kB each).
MAX_EXPORT = 2000


def window(kind: str | None, now: datetime, renderer: Renderer) -> tuple[datetime, datetime | None]:
    """[start, end) of a named window, in the bot's zone."""
    if kind is None:
        return now, None
    tz = renderer.tz
    today = now.astimezone(tz).date()

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tz)

    if kind == "today":
        return now, midnight(today + timedelta(days=1))
    if kind == "tomorrow":
        return midnight(today + timedelta(days=1)), midnight(today + timedelta(days=2))
    return now, now + timedelta(days=7)


def parse_args(args: str) -> tuple[str | None, list[str], bool]:
    """(window, words, export as .ics?)"""
    kind = None
    words = []
    export = False
    for word in args.split():
        folded = fold(word)
        if folded in WINDOWS and kind is None:
            kind = WINDOWS[folded]
        elif folded in EXPORT_WORDS and not export:
            export = True
        elif folded:
            words.append(word)
    return kind, words[:MAX_WORDS], export


def render_agenda(
    sessions: list[Session],
    *,
    now: datetime,
    renderer: Renderer,
    limit: int,
    prefix: str,
    kind: str | None = None,
    words: list[str] | None = None,
) -> Message:
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
    )
    upcoming = tuple(v.session.sid for v in shown if v.session.start > now)
    return replace(message, sessions=upcoming)


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
    kind, words, export = parse_args(ctx.args)
    now = services.now()
    start, end = window(kind, now, services.renderer)
    sessions = services.agenda.agenda.between(start, end, words)
    if export and sessions:
        data = to_ics(
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
        kind=kind,
        words=words,
    )
