"""iCalendar → sessions, with icalendar + recurring-ical-events.

Pitfalls handled here come from real calendars, code.gouv.fr first: all-day
events (VALUE=DATE), UTC times with DURATION and no DTEND, TZID times, RRULE
series with EXDATE and moved or cancelled occurrences, HTML entities in text
(`&#39;`, even `&#92;,` for an escaped comma), HTML markup in descriptions.

Bounded (`bot.agenda.bounds`): a calendar is read a slice of events at a
time (each slice a small calendar with the original's properties and time
zones, an event and its moved occurrences always in the same slice), so
that the parser's memory follows the slice and the sessions kept, not the
file; a recurring series is expanded window after window, in time order,
and stops at its cap without computing the rest.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from bot.agenda.bounds import Bounds, Earliest
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


# Events per slice of a large calendar: small enough to keep the parser's
# memory flat, large enough that the repeated time zones cost little.
SLICE_EVENTS = 500
# A recurring series is expanded over windows this long at first, doubling.
FIRST_SPAN = timedelta(hours=1)

# Lines that open or close a component, and an event's UID (folded lines
# start with a space or a tab, so these are whole lines).
_MARK_RE = re.compile(
    rb"^(?:(BEGIN|END)[ \t]*:[ \t]*([A-Za-z0-9-]+)[ \t]*\r?$|UID[;:][^\r\n]*)", re.M | re.I
)
_LINE_END_RE = re.compile(rb"\r?\n|$")
_FOLDED_RE = re.compile(rb"(?:\r?\n[ \t][^\r\n]*)*")


def _line_end(data: bytes, pos: int) -> int:
    m = _LINE_END_RE.search(data, pos)
    assert m is not None  # `$` always matches
    return m.end()


def _uid(data: bytes, match: re.Match[bytes]) -> bytes:
    """An event's UID value, unfolded (its parameters left out)."""
    folded = _FOLDED_RE.match(data, match.end())
    line = match.group(0) + (folded.group(0) if folded else b"")
    line = re.sub(rb"\r?\n[ \t]", b"", line)
    return line.partition(b":")[2].strip()


def _slices(data: bytes) -> Iterator[bytes] | None:
    """The calendar as small calendars of at most ~SLICE_EVENTS events each.

    Each slice holds the calendar's own properties and time zones; the events
    sharing a UID (a series and its moved occurrences) stay together; other
    components (tasks, journals) are left out, as the parser ignores them.
    None when the data is not one plain VCALENDAR: it is then parsed whole
    (and its errors reported as before).
    """
    stack: list[bytes] = []
    frame: list[bytes] = []  # the calendar without its components but time zones
    copied = 0  # where the next piece of the frame starts
    cut = 0  # where the component being cut out starts
    uid: bytes | None = None
    unnamed = count()
    groups: dict[bytes | int, list[tuple[int, int]]] = {}
    tail = b""
    for m in _MARK_RE.finditer(data):
        if m.group(1) is None:  # a UID line
            if len(stack) == 2 and stack[-1] == b"VEVENT" and uid is None:
                uid = _uid(data, m)
            continue
        name = m.group(2).upper()
        if m.group(1).upper() == b"BEGIN":
            if not stack and (name != b"VCALENDAR" or tail):
                return None
            stack.append(name)
            if len(stack) == 2 and name != b"VTIMEZONE":
                frame.append(data[copied : m.start()])
                cut, uid = m.start(), None
            continue
        if not stack or stack[-1] != name:
            return None
        stack.pop()
        end = _line_end(data, m.end())
        if len(stack) == 1 and name != b"VTIMEZONE":
            if name == b"VEVENT":
                groups.setdefault(uid or next(unnamed), []).append((cut, end))
            copied = end
        elif not stack:
            frame.append(data[copied : m.start()])
            tail, copied = data[m.start() : end], end
    if stack or not tail:
        return None
    head = b"".join(frame)

    def sliced() -> Iterator[bytes]:
        blocks: list[bytes] = []
        for spans in groups.values():
            blocks.extend(data[a:b] for a, b in spans)
            if len(blocks) >= SLICE_EVENTS:
                yield b"".join((head, *blocks, tail))
                blocks = []
        if blocks or not groups:
            yield b"".join((head, *blocks, tail))

    return sliced()


def _calendar(data: bytes) -> icalendar.Calendar:
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # any parser failure means the same to the operator
        raise CalendarError(f"not an iCalendar file ({type(exc).__name__}: {exc})") from None
    if calendar.name != "VCALENDAR":
        raise CalendarError("not an iCalendar file (no VCALENDAR)")
    return calendar


def _in_order(series: Any, start: datetime, end: datetime) -> Iterator[Any]:
    """A series' occurrences overlapping [start, end), in time order, computed lazily.

    A series without a rule is finite (its event, its RDATEs, its moved
    occurrences): asked at once. A rule may be endless: asked for what comes
    before its first occurrence (moved ones), then window after window from
    it (1 hour, then doubling), so that stopping early stops the work.
    """
    core = getattr(series.recurrence, "core", None)
    if core is None or not core.rrules:
        yield from sorted(series.between(start, end))
        return
    seen: set[Any] = set()
    # A day before DTSTART whatever its zone: no occurrence of the rule before it.
    first = _as_utc(series.recurrence.start, ZoneInfo("UTC"))
    low = min(max(start, first - timedelta(days=1)), end)
    windows = [(start, low)] if low > start else []
    span = FIRST_SPAN
    while windows or low < end:
        if windows:
            window = windows.pop()
        else:
            window = (low, min(low + span, end))
            low, span = window[1], span * 2
        for occurrence in sorted(series.between(*window)):
            key = occurrence.id
            if key not in seen:  # one spanning two windows comes twice
                seen.add(key)
                yield occurrence


def _series_name(series: Any) -> str:
    event = getattr(getattr(series.recurrence, "core", None), "_component", None)
    summary = clean_text(event.get("SUMMARY")) if event is not None else ""
    uid = clean_text(series.uid)
    return f"{uid} ({summary!r})" if summary else uid


def parse_ics(
    data: bytes,
    *,
    source: str,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    bounds: Bounds | None = None,
) -> list[Session]:
    """Every occurrence overlapping the window (cancelled ones flagged `cancelled`),
    in time order, within `bounds` (what was cut is added to `bounds.notes`).

    Runs in the parser process: a large calendar must not block the event loop.
    """
    bounds = bounds if bounds is not None else Bounds()
    kept = Earliest(bounds.max_sessions)
    for piece in _slices(data) or (data,):
        calendar = _calendar(piece)
        try:
            query = recurring_ical_events.of(calendar, skip_bad_series=True)
        except Exception as exc:  # the library raises many kinds on broken data
            raise CalendarError(f"cannot expand events ({type(exc).__name__}: {exc})") from None
        skipped = tuple(query.suppressed_errors)
        for series in query.series:
            taken = 0
            try:
                for occurrence in _in_order(series, window_start, window_end):
                    if taken == bounds.max_per_series:
                        bounds.notes.append(
                            f"source {source}: the series {_series_name(series)} has more "
                            f"than {bounds.max_per_series} occurrences in the window, over "
                            f"agenda.max_per_series: the first {taken} kept"
                        )
                        break
                    taken += 1
                    event = occurrence.as_component(query.keep_recurrence_attributes)
                    try:
                        session = _session(event, tz, source)
                    except (ValueError, TypeError, AttributeError) as exc:
                        log.warning("agenda: %s: skipping an unreadable event (%s)", source, exc)
                        continue
                    if session is not None:
                        kept.add(session)
            except skipped:
                continue  # a broken series, as the library's skip_bad_series does
            except CalendarError:
                raise
            except Exception as exc:  # the library raises many kinds on broken data
                raise CalendarError(f"cannot expand events ({type(exc).__name__}: {exc})") from None
        del calendar, query
    if note := kept.note(source):
        bounds.notes.append(note)
    return kept.sessions()
