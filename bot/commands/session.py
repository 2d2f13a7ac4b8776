"""`!session <id>`, `!prochain`, and moderators' edits of the programme.

    !session <id> [ics]
    !session ajouter <date> <début>-<fin> "<titre>" [salle=…] [intervenants=…] [lien=…]
    !session modifier <id> [<date>] [<début>[-<fin>]] [titre=…] [salle=…] [intervenants=…] [lien=…]
    !session annuler <id>
    !session rétablir <id>
    !prochain [mots…]

Bad input gets one line saying what is wrong and the syntax expected; the
wording lives in the templates (`problem`), keyed by a problem code; the syntax
comes from the declarations below.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot.agenda.clock import time_of_day, time_range
from bot.agenda.edits import session_to_fields
from bot.agenda.export import safe_filename, to_ics
from bot.agenda.model import Session
from bot.agenda.query import MAX_WORDS
from bot.agenda.sources import EditError
from bot.chat import FileUpload, Reply
from bot.commands.core import Context, Problem, UsageError, command, echo
from bot.i18n import N_
from bot.permissions import Role
from bot.reminders import presenting
from bot.render import Message
from bot.textnorm import fold
from bot.views import views
from bot.web import links

ICS_MIMETYPE = "text/calendar"

OPTIONS = {
    "titre": "title",
    "title": "title",
    "salle": "location",
    "lieu": "location",
    "room": "location",
    "location": "location",
    "intervenants": "speakers",
    "intervenant": "speakers",
    "intervenantes": "speakers",
    "speakers": "speakers",
    "lien": "url",
    "url": "url",
    "link": "url",
    "description": "description",
    "date": "date",
    "jour": "date",
    "heure": "time",
    "horaire": "time",
    "time": "time",
}
_QUOTES = str.maketrans({"«": '"', "»": '"', "“": '"', "”": '"', "„": '"', "\u00a0": " "})
_DMY_RE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2}|\d{4}))?$")
_ISO_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
MAX_FIELD = 300


@dataclass
class EditArgs:
    day: date | None = None
    start: time | None = None
    end: time | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def tokens(text: str) -> list[str]:
    """Words, with "double quotes" (or « guillemets ») grouping; apostrophes are text."""
    lexer = shlex.shlex(text.translate(_QUOTES), posix=True)
    lexer.whitespace_split = True
    lexer.quotes = '"'
    lexer.escape = ""
    lexer.commenters = ""
    try:
        return [t.strip() for t in lexer if t.strip()]
    except ValueError:
        raise Problem("quote") from None


def parse_day(text: str, today: date) -> date | None:
    """A date typed by a person; None when `text` is not one."""
    folded = fold(text)
    if folded in ("aujourd'hui", "aujourdhui", "today"):
        return today
    if folded in ("demain", "tomorrow"):
        return today + timedelta(days=1)
    if folded in ("apres-demain",):
        return today + timedelta(days=2)
    try:
        if m := _ISO_RE.match(text):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DMY_RE.match(text):
            day, month = int(m[1]), int(m[2])
            if m[3] is None:  # no year: the next such date
                found = date(today.year, month, day)
                return found if found >= today else date(today.year + 1, month, day)
            year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
            return date(year, month, day)
    except ValueError:
        raise Problem("bad_date", text) from None
    return None


def parse_times(text: str) -> tuple[time, time | None] | None:
    """'14h-15h30' → (14:00, 15:30); '14h' → (14:00, None); None when not a time."""
    try:
        if found := time_range(text):
            return found
        start = time_of_day(text, bare_hour=False)
    except ValueError:
        raise Problem("bad_time", text) from None
    return None if start is None else (start, None)


def parse_edit(words: list[str], today: date) -> EditArgs:
    """Date, times, title and key=value options, in any order.

    Bare words after an option continue its value (`salle=Salle B`), unless
    they are the date or times; other bare words make the title.
    """
    args = EditArgs()
    title: list[str] = []
    options: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in words:
        key, sep, value = word.partition("=")
        name = OPTIONS.get(fold(key)) if sep else None
        if sep and name is None and current is None:
            raise Problem("unknown_option", key)
        if name is not None:
            current = options.setdefault(name, [])
            current.clear()
            if value.strip():
                current.append(value.strip())
            continue
        if args.day is None and (found := parse_day(word, today)) is not None:
            args.day = found
        elif args.start is None and (times := parse_times(word)) is not None:
            args.start, args.end = times
        elif current is not None:
            current.append(word)
        else:
            title.append(word)
    for name, parts in options.items():
        value = " ".join(" ".join(parts).split())[:MAX_FIELD]
        if name == "date":
            if (found := parse_day(value, today)) is None:
                raise Problem("bad_date", value)
            args.day = found
        elif name == "time":
            if (times := parse_times(value)) is None:
                raise Problem("bad_time", value)
            args.start, args.end = times
        elif name == "speakers":
            args.fields["speakers"] = [s.strip() for s in value.split(",") if s.strip()]
        elif name == "url":
            if value and not value.startswith(("https://", "http://")):
                raise Problem("bad_link", value)
            args.fields["url"] = value
        else:
            args.fields[name] = value
    if title:
        args.fields["title"] = " ".join(" ".join(title).split())[:MAX_FIELD]
    if "title" in args.fields and not args.fields["title"]:
        raise Problem("no_title")
    return args


def _instant(day: date, at: time, ctx: Context) -> datetime:
    return datetime.combine(day, at, ctx.services.renderer.tz)


def _detail(ctx: Context, session: Session, heading: str, **extra: Any) -> Message:
    now = ctx.services.now()
    renderer = ctx.services.renderer
    (view,) = views([session], now, renderer)
    extra.setdefault("before", None)
    extra.setdefault("ongoing", [])
    extra.setdefault("part_of", [])
    public = ctx.services.config.web.public_url
    message = ctx.render(
        "session",
        v=view,
        heading=heading,
        today=renderer.local(now).date(),
        until=renderer.until(session.start, now) if session.start > now else "",
        web=links.session_url(public, session.sid) if public else None,
        **extra,
    )
    if session.start <= now or session.cancelled:
        return message
    return presenting(message, (session.sid,))


def export(ctx: Context, sessions: list[Session], name: str, filename: str) -> FileUpload:
    renderer = ctx.services.renderer
    data = to_ics(
        sessions, tz=renderer.tz, now=ctx.services.now(), name=name, language=renderer.language
    )
    return FileUpload(filename=f"{filename}.ics", mimetype=ICS_MIMETYPE, data=data)


@command(
    "session",
    "seance",
    usage=N_("<id> [ics]"),
    about=N_(
        "one session in full (its id is shown by %(prefix)sagenda); "
        '"ics" to add it to your calendar'
    ),
)
async def session_command(ctx: Context) -> Reply:
    """`!session <id> [ics]`: a session in full, or as a calendar file."""
    words = ctx.args.split()
    if not words:
        raise UsageError
    session = ctx.services.agenda.agenda.get(words[0])
    if session is None:
        raise Problem("unknown_id", words[0])
    if len(words) > 1 and fold(words[1]) in ("ics", "ical", "calendrier", "calendar"):
        if session.cancelled:
            return _detail(ctx, session, "show")
        return export(ctx, [session], session.title, safe_filename(session.title))
    return _detail(ctx, session, "show")


def _target(ctx: Context, words: list[str]) -> Session:
    """The session a moderator's edit is about: its id is the first word."""
    if not words:
        raise Problem("no_id")
    session = ctx.services.agenda.agenda.get(words[0])
    if session is None:
        raise Problem("unknown_id", words[0])
    return session


@session_command.sub(
    N_("add"),
    "ajouter",
    "creer",
    "nouvelle",
    role=Role.COMMUNITY,
    usage=N_('<date> <start>-<end> "<title>" [room=…] [speakers=…] [link=…]'),
    example=N_('%(prefix)ssession add 04/12 14h-15h "Grist workshop" room="Room B" (day/month)'),
)
async def add_command(ctx: Context) -> Message:
    return await _add(ctx, tokens(ctx.args))


@session_command.sub(
    N_("edit"),
    "modifier",
    "modify",
    "deplacer",
    role=Role.COMMUNITY,
    usage=N_("<id> [<date>] [<start>-<end>] [title=…] [room=…] [speakers=…] [link=…]"),
    example=N_("%(prefix)ssession edit abc123 15h-16h"),
)
async def modify_command(ctx: Context) -> Message:
    words = tokens(ctx.args)
    return await _modify(ctx, _target(ctx, words), words[1:])


@session_command.sub(N_("cancel"), "annuler", role=Role.COMMUNITY, usage=N_("<id>"))
async def cancel_command(ctx: Context) -> Message:
    return await _cancel(ctx, _target(ctx, tokens(ctx.args)))


@session_command.sub(N_("restore"), "rétablir", role=Role.COMMUNITY, usage=N_("<id>"))
async def restore_command(ctx: Context) -> Message:
    return await _restore(ctx, _target(ctx, tokens(ctx.args)))


@session_command.sub(N_("log"), "journal", role=Role.COMMUNITY)
async def log_command(ctx: Context) -> Message:
    """Who changed the agenda, what, when, from which room."""
    agenda = ctx.services.agenda.agenda
    label = ctx.services.renderer.moment_label
    entries = []
    for e in await ctx.storage.agenda.audit():
        session = agenda.get(e.target)
        entries.append((e, label(e.at), session.title if session else ""))
    return ctx.render("session_log", entries=entries)


async def _add(ctx: Context, words: list[str]) -> Message:
    today = ctx.services.renderer.local(ctx.services.now()).date()
    args = parse_edit(words, today)
    if args.day is None:
        raise Problem("no_date")
    if args.start is None or args.end is None:
        raise Problem("no_time")
    if "title" not in args.fields:
        raise Problem("no_title")
    start, end = _instant(args.day, args.start, ctx), _instant(args.day, args.end, ctx)
    if end <= start:
        raise Problem("end_before_start", f"{args.start:%H:%M}-{args.end:%H:%M}")
    if end <= ctx.services.now():
        raise Problem("past", f"{args.day:%d/%m/%Y}")
    fields = dict(args.fields)
    session = Session(
        title=fields.pop("title"),
        start=start,
        end=end,
        location=fields.get("location", ""),
        url=fields.get("url", ""),
        speakers=tuple(fields.get("speakers", ())),
        description=fields.get("description", ""),
    )
    if (known := ctx.services.agenda.agenda.get(session.sid)) and not known.cancelled:
        raise Problem("exists", known.sid)
    added = await ctx.services.agenda.add(session, ctx.msg.sender, ctx.msg.room_id)
    return _detail(ctx, added, "added")


async def _modify(ctx: Context, session: Session, words: list[str]) -> Message:
    if session.cancelled:
        raise Problem("cancelled", session.sid)
    renderer = ctx.services.renderer
    start_local = renderer.local(session.start)
    args = parse_edit(words, start_local.date())
    fields = dict(args.fields)
    if args.day is not None or args.start is not None:
        day = args.day or start_local.date()
        start = _instant(day, args.start or start_local.time(), ctx)
        if args.end is not None:
            end = _instant(day, args.end, ctx)
        else:  # same duration
            end = start + (session.end - session.start)
        if end <= start:
            raise Problem("end_before_start", f"{args.start or start_local:%H:%M}")
        if end <= ctx.services.now():
            raise Problem("past", f"{day:%d/%m/%Y}")
        fields["start"] = start.astimezone(UTC).isoformat()
        fields["end"] = end.astimezone(UTC).isoformat()
    current = session_to_fields(session)
    fields = {k: v for k, v in fields.items() if current.get(k) != v}
    if not fields:
        raise Problem("nothing")
    try:
        changed = await ctx.services.agenda.modify(
            session.sid, fields, ctx.msg.sender, ctx.msg.room_id
        )
    except EditError:
        raise Problem("unknown_id", session.sid) from None
    (before,) = views([session], ctx.services.now(), renderer)
    return _detail(ctx, changed, "modified", before=before)


async def _cancel(ctx: Context, session: Session) -> Message:
    if session.cancelled:
        raise Problem("cancelled", session.sid)
    try:
        cancelled = await ctx.services.agenda.cancel(session.sid, ctx.msg.sender, ctx.msg.room_id)
    except EditError:
        raise Problem("unknown_id", session.sid) from None
    return _detail(ctx, cancelled, "cancelled")


async def _restore(ctx: Context, session: Session) -> Message:
    try:
        restored = await ctx.services.agenda.restore(session.sid, ctx.msg.sender, ctx.msg.room_id)
    except EditError:
        raise Problem("not_cancelled", session.sid) from None
    return _detail(ctx, restored, "restored")


@command(
    "prochain",
    "next",
    "suivant",
    "prochaine",
    usage=N_("[words…]"),
    about=N_("the next session in full, and how long until it starts"),
)
async def next_command(ctx: Context) -> Message:
    words = ctx.args.split()[:MAX_WORDS]
    now = ctx.services.now()
    agenda = ctx.services.agenda.agenda
    # A timed session first: the all-day event of a BlueHats day is named
    # with it, not given instead of it. Only all-day events left: the next one.
    session = agenda.next(now, words, timed=True) or agenda.next(now, words)
    ongoing = agenda.between(now, now, words)
    if session is None:
        return ctx.render("next_none", words=echo(" ".join(words)), ongoing=ongoing)
    part_of = [] if session.all_day else [s.title for s in agenda.framing(session)]
    return _detail(ctx, session, "next", ongoing=ongoing, part_of=part_of)
