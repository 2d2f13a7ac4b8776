"""The filter grammar shared by `!agenda` and the web (`/?periode=…&q=…`, `/agenda.ics`).

One parser and one matcher: `!agenda demain superset` and
`/?periode=demain&q=superset` are the same `AgendaQuery`, and select the
same sessions (`Agenda.between`: case- and accent-insensitive words, all
required).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo

from bot.agenda.model import Agenda, Session
from bot.textnorm import fold

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
# The word each window is written with in URLs (`?periode=`).
PERIOD_WORDS = {"today": "aujourdhui", "tomorrow": "demain", "week": "semaine"}
EXPORT_WORDS = frozenset({"ics", "ical", "icalendar", "export", "exporter"})
MAX_WORDS = 8
# A word longer than this matches nothing real: cut (bounded work per query).
MAX_WORD_LENGTH = 64


class QueryError(ValueError):
    """A filter that cannot be understood (an unknown `periode`)."""


@dataclass(frozen=True, slots=True)
class AgendaQuery:
    window: str | None = None  # "today", "tomorrow", "week" or None (everything ahead)
    words: tuple[str, ...] = ()  # as typed (shown back), matched folded
    export: bool = False  # `!agenda … ics`: a file rather than a message

    @classmethod
    def parse(cls, text: str) -> Self:
        """`aujourd'hui superset ics` → window, words, export (the command's grammar)."""
        kind = None
        words: list[str] = []
        export = False
        for word in text.split():
            folded = fold(word)
            if folded in WINDOWS and kind is None:
                kind = WINDOWS[folded]
            elif folded in EXPORT_WORDS and not export:
                export = True
            elif folded:
                words.append(word[:MAX_WORD_LENGTH])
        return cls(kind, tuple(words[:MAX_WORDS]), export)

    @classmethod
    def from_params(cls, periode: str | None, q: str | None) -> Self:
        """The web's `?periode=&q=`: `q` read with the command's grammar, `periode` on top.

        A period word inside `q` (`?q=demain`) filters by period, as it would
        after `!agenda`; `periode` wins when both are given.
        """
        parsed = cls.parse(q or "")
        kind = parsed.window
        if periode is not None and periode.strip():
            kind = WINDOWS.get(fold(periode.strip()))
            if kind is None:
                raise QueryError(periode)
        return cls(kind, parsed.words, False)

    @property
    def period_word(self) -> str | None:
        return None if self.window is None else PERIOD_WORDS[self.window]

    def params(self) -> dict[str, str]:
        """The query as URL parameters (`periode`, `q`), empty ones left out."""
        out = {}
        if self.window is not None:
            out["periode"] = PERIOD_WORDS[self.window]
        if self.words:
            out["q"] = " ".join(self.words)
        return out

    def bounds(self, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
        """[start, end) of the window, days taken in `tz`."""
        if self.window is None:
            return now, None
        today = now.astimezone(tz).date()

        def midnight(d: date) -> datetime:
            return datetime.combine(d, time(0), tz)

        if self.window == "today":
            return now, midnight(today + timedelta(days=1))
        if self.window == "tomorrow":
            return midnight(today + timedelta(days=1)), midnight(today + timedelta(days=2))
        return now, now + timedelta(days=7)

    def select(self, agenda: Agenda, now: datetime, tz: ZoneInfo) -> list[Session]:
        """The sessions this query shows at `now`, by start."""
        start, end = self.bounds(now, tz)
        return agenda.between(start, end, self.words)
