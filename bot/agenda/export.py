"""Sessions → an `.ics` file that Outlook and Thunderbird import as is.

METHOD:PUBLISH (Outlook needs it to import several events), a VTIMEZONE for
the bot's zone and local wall times with TZID, stable UIDs derived from the
session id (re-importing updates events instead of doubling them), no
ATTENDEE (Outlook would treat the file as a meeting invitation).
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.agenda.model import Agenda, Session
from bot.agenda.published import Entry, default_uid
from bot.cache import BuildCache
from bot.render import DEFAULT_LANGUAGE, safe_url, translations
from bot.textnorm import fold

# icalendar (~40 ms to import) is imported where a file is written, not at start.
if TYPE_CHECKING:
    import icalendar

PRODID = "-//BlueHats//bluehats-bot//FR"
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


def _event(entry: Entry, tz: ZoneInfo, language: str) -> icalendar.Event:
    import icalendar

    s = entry.session
    event = icalendar.Event()
    event.add("UID", entry.uid)
    event.add("DTSTAMP", entry.stamp)
    event.add("LAST-MODIFIED", entry.stamp)
    if entry.sequence:
        event.add("SEQUENCE", entry.sequence)
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
    if entry.cancelled:
        event.add("STATUS", "CANCELLED")
    return event


class CalendarWriter:
    """Calendars (`.ics`) from published entries, each event serialised once.

    A feed of 10,000 sessions is then a join of cached bytes, whatever its
    filter: an event is serialised again only when it changes (its UID,
    SEQUENCE or status), and the VTIMEZONE once per span of years.
    """

    def __init__(self, tz: ZoneInfo, language: str = DEFAULT_LANGUAGE) -> None:
        self.tz = tz
        self.language = language
        self._events: dict[tuple[str, str, int, bool], bytes] = {}
        # The events of the previous generation: reused while still published,
        # dropped at the next one (memory stays bounded by two generations).
        self._previous: dict[tuple[str, str, int, bool], bytes] = {}
        self._zones: dict[tuple[int, int], bytes] = {}

    def event(self, entry: Entry) -> bytes:
        key = (entry.session.sid, entry.uid, entry.sequence, entry.cancelled)
        data = self._events.get(key)
        if data is None:
            data = self._previous.get(key) or bytes(_event(entry, self.tz, self.language).to_ical())
            self._events[key] = data
        return data

    def new_generation(self) -> None:
        """The published entries changed: events not served since are dropped next time."""
        self._previous, self._events = self._events, {}

    def _zone(self, first: int, last: int) -> bytes:
        data = self._zones.get((first, last))
        if data is None:
            import icalendar

            # Only the rules in force around the dates: a short VTIMEZONE,
            # the same for every feed spanning the same years.
            zone = icalendar.Timezone.from_tzid(
                self.tz.key, first_date=date(first - 1, 1, 1), last_date=date(last + 1, 12, 31)
            )
            data = self._zones[(first, last)] = bytes(zone.to_ical())
        return data

    def calendar(self, entries: Sequence[Entry], *, name: str | None = None) -> bytes:
        # Translators: the name of an exported calendar.
        import icalendar

        name = name or translations(self.language).gettext("BlueHats agenda")
        cal = icalendar.Calendar()
        cal.add("PRODID", PRODID)
        cal.add("VERSION", "2.0")
        cal.add("CALSCALE", "GREGORIAN")
        cal.add("METHOD", "PUBLISH")
        cal.add("X-WR-CALNAME", name)
        cal.add("X-WR-TIMEZONE", self.tz.key)
        head = bytes(cal.to_ical())
        end = b"END:VCALENDAR\r\n"
        parts = [head.removesuffix(end)]
        if entries:
            years = [e.session.start.astimezone(self.tz).year for e in entries]
            parts.append(self._zone(min(years), max(years)))
        parts.extend(self.event(e) for e in entries)
        parts.append(end)
        return b"".join(parts)


def to_ics(
    sessions: Sequence[Session],
    *,
    tz: ZoneInfo,
    now: datetime,
    name: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> bytes:
    """A one-off file of sessions (cancelled ones left out)."""
    stamp = now.astimezone(UTC)
    entries = [Entry(s, default_uid(s.sid), stamp) for s in sessions if not s.cancelled]
    return CalendarWriter(tz, language).calendar(entries, name=name)


class IcsExports:
    """The files of `!agenda … ics`: built in a thread, once per agenda and selection.

    Serialising 2,000 sessions takes about a second (bench/agenda_core.py):
    on the event loop it would hold every room's answers and posts. The
    agenda is immutable and replaced whenever it changes (a refresh, a
    moderator's edit), so the agenda object is the generation: the files of
    the current one are kept (a few, LRU), all dropped when it changes. The
    key is the selection itself (the session ids), not the filter typed:
    `!agenda ics` asked again later, with a session over since, is another
    file; two filters selecting the same sessions share one.
    """

    def __init__(self, size: int = 8, build: Callable[..., bytes] = to_ics) -> None:
        self._files: BuildCache[bytes] = BuildCache(size)
        self._agenda: weakref.ref[Agenda] | None = None
        self._build = build

    async def file(
        self,
        agenda: Agenda,
        sessions: Sequence[Session],
        *,
        tz: ZoneInfo,
        now: datetime,
        language: str = DEFAULT_LANGUAGE,
    ) -> bytes:
        """The `.ics` of `sessions`, taken from `agenda` (DTSTAMP: the first build)."""
        if self._agenda is None or self._agenda() is not agenda:
            self._agenda = weakref.ref(agenda)  # not kept alive by this cache
            self._files.clear()
        chosen = list(sessions)
        key = (tz.key, language, tuple(s.sid for s in chosen))
        return await self._files.get(
            key,
            lambda: asyncio.to_thread(self._build, chosen, tz=tz, now=now, language=language),
        )
