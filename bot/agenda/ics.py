"""iCalendar → sessions, with icalendar + recurring-ical-events.

Pitfalls handled here come from real calendars, code.gouv.fr first: all-day
events (VALUE=DATE), UTC times with DURATION and no DTEND, TZID times, RRULE
series with EXDATE and moved or cancelled occurrences, HTML entities in text
(`&#39;`, even `&#92;,` for an escaped comma), HTML markup in descriptions.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from bot.agenda.model import Session
from bot.render import data_text

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>")
_ICS_ESCAPES = re.compile(r"\\([\\,;nN])")


class CalendarError(Exception):
    """The data is not a usable iCalendar file."""


class _TextExtractor(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "ul", "ol"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def clean_text(value: Any, *, markup: bool = False) -> str:
    """Plain text from an iCalendar text value.

    Entities are decoded everywhere; markup is turned into text only in
    descriptions, so that a title such as `<script>` stays visible as text
    (and is escaped when rendered).
    """
    if value is None:
        return ""
    text = html.unescape(str(value))
    # An entity-encoded backslash leaves an iCalendar escape behind.
    text = _ICS_ESCAPES.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)
    if markup and _TAG_RE.search(text):
        parser = _TextExtractor()
        parser.feed(text)
        parser.close()
        text = "".join(parser.parts)
    lines = (" ".join(line.split()) for line in text.splitlines())
    if markup:
        return "\n".join(line for line in lines if line)
    return " ".join(line for line in lines if line)


def _as_utc(value: date | datetime, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: the bot's zone
            value = value.replace(tzinfo=tz)
        return value.astimezone(UTC)
    return datetime.combine(value, time(0), tz).astimezone(UTC)


def _speakers(event: icalendar.Event) -> tuple[str, ...]:
    attendees = event.get("ATTENDEE")
    if attendees is None:
        return ()
    if not isinstance(attendees, list):
        attendees = [attendees]
    names = []
    for a in attendees:
        cn = getattr(a, "params", {}).get("CN")
        if cn:
            names.append(clean_text(cn))
    return tuple(names)


def _categories(event: icalendar.Event) -> tuple[str, ...]:
    try:
        return tuple(clean_text(c) for c in event.categories if c)
    except (AttributeError, ValueError):
        return ()


def _session(event: icalendar.Event, tz: ZoneInfo, source: str) -> Session | None:
    start_value = event.get("DTSTART")
    if start_value is None:
        return None
    start_raw = start_value.dt
    all_day = not isinstance(start_raw, datetime)
    try:
        end_raw = event.end
    except (icalendar.InvalidCalendar, ValueError, TypeError):
        end_raw = start_raw + timedelta(days=1) if all_day else start_raw
    start = _as_utc(start_raw, tz)
    end = max(_as_utc(end_raw, tz), start)
    title = clean_text(event.get("SUMMARY")) or data_text("(untitled)")
    location = clean_text(event.get("LOCATION"))
    url = clean_text(event.get("URL"))
    if not url and location.startswith(("http://", "https://")) and " " not in location:
        # Webinars put their link in LOCATION.
        url, location = location, ""
    return Session(
        title=title,
        start=start,
        end=end,
        all_day=all_day,
        description=clean_text(event.get("DESCRIPTION"), markup=True),
        location=location,
        url=url,
        speakers=_speakers(event),
        categories=_categories(event),
        source=source,
        uid=clean_text(event.get("UID")),
        cancelled=str(event.get("STATUS", "")).upper() == "CANCELLED",
    )


def parse_ics(
    data: bytes,
    *,
    source: str,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
) -> list[Session]:
    """Every occurrence overlapping the window (cancelled ones flagged `cancelled`).

    Runs in a worker thread: a large calendar must not block the event loop.
    """
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # any parser failure means the same to the operator
        raise CalendarError(f"not an iCalendar file ({type(exc).__name__}: {exc})") from None
    if calendar.name != "VCALENDAR":
        raise CalendarError("not an iCalendar file (no VCALENDAR)")
    try:
        occurrences = recurring_ical_events.of(calendar, skip_bad_series=True).between(
            window_start, window_end
        )
    except Exception as exc:  # the library raises many kinds on broken data
        raise CalendarError(f"cannot expand events ({type(exc).__name__}: {exc})") from None
    sessions = []
    for event in occurrences:
        try:
            session = _session(event, tz, source)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("agenda: %s: skipping an unreadable event (%s)", source, exc)
            continue
        if session is not None:
            sessions.append(session)
    return sessions
