"""Sessions → an `.ics` file that Outlook and Thunderbird import as is.

METHOD:PUBLISH (Outlook needs it to import several events), a VTIMEZONE for
the bot's zone and local wall times with TZID, stable UIDs derived from the
session id (re-importing updates events instead of doubling them), no
ATTENDEE (Outlook would treat the file as a meeting invitation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from bot.agenda.model import Session
from bot.render import DEFAULT_LANGUAGE, safe_url, translations
from bot.textnorm import fold

PRODID = "-//BlueHats//bluehats-bot//FR"
UID_DOMAIN = "bluehats-bot"
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def safe_filename(text: str, limit: int = 60) -> str:
    """'Atelier Grist : données & tableaux' → 'atelier-grist-donnees-tableaux'."""
    ascii_only = fold(text).encode("ascii", "ignore").decode()
    name = _NOT_WORD.sub("-", ascii_only).strip("-")[:limit].rstrip("-")
    return name or "agenda"


def _description(session: Session, language: str) -> str:
    _ = translations(language).gettext
    parts = [session.description] if session.description else []
    if session.speakers:
        parts.append(_("Speakers: %(speakers)s") % {"speakers": ", ".join(session.speakers)})
    if session.event:
        parts.append(_("Event: %(event)s") % {"event": session.event})
    return "\n\n".join(parts)


def to_ics(
    sessions: Sequence[Session],
    *,
    tz: ZoneInfo,
    now: datetime,
    name: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> bytes:
    # Translators: the name of an exported calendar.
    name = name or translations(language).gettext("BlueHats agenda")
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", "PUBLISH")
    cal.add("X-WR-CALNAME", name)
    cal.add("X-WR-TIMEZONE", tz.key)
    stamp = now.astimezone(UTC)
    first: date | None = None
    last: date | None = None
    for s in sessions:
        if s.cancelled:
            continue
        event = icalendar.Event()
        event.add("UID", f"{s.sid}@{UID_DOMAIN}")
        event.add("DTSTAMP", stamp)
        start, end = s.start.astimezone(tz), s.end.astimezone(tz)
        if s.all_day:
            event.add("DTSTART", start.date())
            event.add("DTEND", max(end.date(), start.date() + timedelta(days=1)))
        else:
            event.add("DTSTART", start)
            event.add("DTEND", end)
        event.add("SUMMARY", s.title)
        if description := _description(s, language):
            event.add("DESCRIPTION", description)
        if s.location:
            event.add("LOCATION", s.location)
        if url := safe_url(s.url):
            event.add("URL", url)
        if s.categories:
            event.add("CATEGORIES", list(s.categories))
        cal.add_component(event)
        first = min(first or start.date(), start.date())
        last = max(last or end.date(), end.date())
    if first is not None and last is not None:
        # Only the rules in force around the exported dates: a short VTIMEZONE.
        cal.add_missing_timezones(first - timedelta(days=366), last + timedelta(days=366))
    return bytes(cal.to_ical())
