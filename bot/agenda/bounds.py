"""How many sessions a source may bring: per source and per recurring series.

One `RRULE:FREQ=MINUTELY` event is about 527,000 occurrences in a year; a
calendar of 60,000 events is 60,000 sessions. Neither is a community agenda:
a source keeps at most `max_sessions` sessions (the earliest within the
window), a series at most `max_per_series` occurrences (its first ones).
Parsers stop a series at its cap without computing the rest, and keep only
the earliest `max_sessions` of a source in memory while they read it; what
was cut is written in `notes`, which the bot logs (and alerts) once.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from bot.agenda.model import Session

# Defaults of `agenda.max_sessions` and `agenda.max_per_series`.
MAX_SESSIONS = 20_000
# A daily series over the default horizon (366 days) is 366 occurrences; a
# community's busiest weekly or daily rhythm stays far below 1,000.
MAX_PER_SERIES = 1_000


@dataclass(slots=True)
class Bounds:
    """The caps of one parse, and what was cut (one line per series or source)."""

    max_sessions: int = MAX_SESSIONS
    max_per_series: int = MAX_PER_SERIES
    notes: list[str] = field(default_factory=list)


class Earliest:
    """The `cap` earliest sessions of a stream (ties: the first offered), in the order
    offered, holding no more than `cap` of them at any time; and how many were offered."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.offered = 0
        # A max-heap by (start, arrival): its top is the latest session kept.
        self._heap: list[tuple[float, int, Session]] = []

    def add(self, session: Session) -> None:
        self.offered += 1
        item = (-session.start.timestamp(), -self.offered, session)
        if len(self._heap) < self.cap:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:  # earlier than the latest kept
            heapq.heapreplace(self._heap, item)

    def sessions(self) -> list[Session]:
        return [s for _, _, s in sorted(self._heap, key=lambda item: -item[1])]

    def note(self, source: str, setting: str = "agenda.max_sessions") -> str | None:
        """What was cut, for the operator; None when nothing was."""
        if self.offered <= self.cap:
            return None
        return (
            f"source {source}: {self.offered} sessions in the window, over {setting} "
            f"({self.cap}): the earliest {self.cap} kept"
        )
