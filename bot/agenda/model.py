"""Sessions and the in-memory agenda index."""

from __future__ import annotations

import base64
import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.textnorm import fold, identity_fold


def session_id(start: datetime, title: str) -> str:
    """Short id stable across rebuilds of a calendar.

    The code.gouv.fr calendar draws new UIDs at every site build, so the UID
    cannot identify a session: its start instant and its (folded) title do.
    """
    key = f"{start.astimezone(UTC):%Y%m%dT%H%M}|{identity_fold(title)}".encode()
    digest = hashlib.sha256(key).digest()
    return base64.b32encode(digest).decode("ascii")[:6].lower()


@dataclass(frozen=True, slots=True)
class Session:
    title: str
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC, > start for all-day events, >= start otherwise
    all_day: bool = False
    description: str = ""
    location: str = ""
    url: str = ""
    speakers: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    event: str = ""  # the event it belongs to (a BlueHats day), when known
    source: str = ""  # where it comes from, as shown in logs
    # The source's own identifier (iCalendar UID, YAML id): only a hint to
    # pair a moved session with its old self, never its identity.
    uid: str = field(default="", compare=False)
    cancelled: bool = False
    sid: str = field(default="", compare=False)
    search_key: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("session times must be timezone-aware")
        if not self.sid:
            object.__setattr__(self, "sid", session_id(self.start, self.title))
        if not self.search_key:
            text = " ".join(
                (self.title, self.description, self.location, *self.categories, *self.speakers)
            )
            object.__setattr__(self, "search_key", fold(text))


class Agenda:
    """Immutable, start-sorted index of sessions; queries never mutate it.

    Cancelled sessions are kept aside: never listed, but `get` still finds
    them, so that `!session <id>` can say the session was cancelled.
    """

    def __init__(self, sessions: Iterable[Session] = ()) -> None:
        unique: dict[str, Session] = {}
        cancelled: dict[str, Session] = {}
        for s in sessions:
            # The same session from two sources (or twice in one) is listed once.
            if s.cancelled:
                cancelled.setdefault(s.sid, s)
            else:
                unique.setdefault(s.sid, s)
        self._by_sid = unique
        self._cancelled = {sid: s for sid, s in cancelled.items() if sid not in unique}
        self._sessions = sorted(unique.values(), key=lambda s: (s.start, s.title))
        self._starts = [s.start for s in self._sessions]
        self._keys = [s.search_key for s in self._sessions]
        self._longest = max((s.end - s.start for s in self._sessions), default=timedelta(0))

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(self._sessions)

    @property
    def cancelled(self) -> list[Session]:
        return sorted(self._cancelled.values(), key=lambda s: (s.start, s.title))

    def get(self, sid: str) -> Session | None:
        """A session (or a cancelled one) by its short id, any case."""
        key = sid.strip().lower()
        return self._by_sid.get(key) or self._cancelled.get(key)

    def next(
        self, now: datetime, words: Iterable[str] = (), *, timed: bool = False
    ) -> Session | None:
        """The first session starting at or after `now` (matching every word).

        `timed`: skip all-day events (a BlueHats day frames the sessions in it).
        """
        first = bisect_left(self._starts, now)
        folded = [f for f in (fold(w) for w in words) if f]
        for i in range(first, len(self._sessions)):
            if timed and self._sessions[i].all_day:
                continue
            if all(word in self._keys[i] for word in folded):
                return self._sessions[i]
        return None

    def framing(self, session: Session) -> list[Session]:
        """The all-day events under way when `session` starts (the day it is part of)."""
        return [
            s
            for s in self.between(session.start, session.start + timedelta(microseconds=1))
            if s.all_day and s.sid != session.sid
        ]

    def between(
        self,
        start: datetime,
        end: datetime | None = None,
        words: Iterable[str] = (),
    ) -> list[Session]:
        """Sessions not yet over at `start`, starting before `end`, matching every word."""
        folded = [f for f in (fold(w) for w in words) if f]
        # Sessions that began before `start` can still be running: look back
        # by the longest duration known, no further. Those starting at or
        # after `start` are not over: a slice, no per-session test.
        lookback = bisect_left(self._starts, start - self._longest)
        first = bisect_left(self._starts, start)
        last = len(self._starts) if end is None else bisect_left(self._starts, end, lo=first)
        indices = [i for i in range(lookback, first) if self._sessions[i].end > start]
        if not folded:
            return [self._sessions[i] for i in indices] + self._sessions[first:last]
        keys, sessions = self._keys, self._sessions
        indices.extend(range(first, last))
        for word in folded:  # narrowing word by word: plain substring tests, no calls
            indices = [i for i in indices if word in keys[i]]
        return [sessions[i] for i in indices]
