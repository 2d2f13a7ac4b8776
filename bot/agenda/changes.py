"""What changed in the programme between two agendas: one notice per real change.

Identity is start + title (`Session.sid`), so a moved session is, by
identity, a removed one plus a new one. Pairing them back takes, in order:
the same id (nothing moved, maybe the end or the room), the source's own UID
(stable in most calendars, and in moderators' edits), then the same title at
a near date (the code.gouv.fr calendar draws new UIDs at every build, so
UIDs cannot be trusted alone). Only sessions not yet started count; new
sessions are additions, not changes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.agenda.model import Agenda, Session
from bot.textnorm import fold

# Two same-title sessions farther apart than this are different occurrences.
PAIRING_WINDOW = timedelta(days=14)
# Vanished sessions are reported as cancelled unless at least this many AND
# more than half of the upcoming ones vanished at once.
MASS_VANISH_MIN = 5


class ChangeKind(StrEnum):
    MOVED = "moved"  # start or end changed (title or place may have too)
    RELOCATED = "relocated"  # same times, new place or link
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    before: Session
    after: Session | None  # None when the session vanished without a cancellation

    @property
    def key(self) -> str:
        """Same change found twice (after a restart…) → same key."""
        after = self.after
        state = "" if after is None else f"{after.start.isoformat()}|{after.end.isoformat()}"
        if after is not None:
            state += f"|{after.location}|{after.url}"
        raw = f"{self.kind}|{self.before.sid}|{self.before.start.isoformat()}|{state}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Diff:
    changes: list[Change] = field(default_factory=list)
    # Vanished but not announced: too many at once (see MASS_VANISH_MIN).
    suppressed: list[Session] = field(default_factory=list)


def _compare(before: Session, after: Session) -> Change | None:
    if (before.start, before.end) != (after.start, after.end):
        return Change(ChangeKind.MOVED, before, after)
    if (before.location, before.url) != (after.location, after.url):
        return Change(ChangeKind.RELOCATED, before, after)
    return None


def diff(old: Agenda, new: Agenda, *, now: datetime) -> Diff:
    upcoming = [s for s in old if s.start > now]
    new_active = {s.sid: s for s in new}
    new_cancelled = {s.sid: s for s in new.cancelled}
    changes: list[Change] = []
    unmatched: list[Session] = []
    used: set[str] = set()

    # (a) same id
    for before in upcoming:
        if (after := new_active.get(before.sid)) is not None:
            used.add(after.sid)
            if (change := _compare(before, after)) is not None:
                changes.append(change)
        elif (cancelled := new_cancelled.get(before.sid)) is not None:
            changes.append(Change(ChangeKind.CANCELLED, before, cancelled))
        else:
            unmatched.append(before)

    free = [s for s in new if s.sid not in used]
    # (b) same source UID, when both sides have one
    by_uid: dict[str, list[Session]] = defaultdict(list)
    for s in free:
        if s.uid:
            by_uid[s.uid].append(s)
    remaining: list[Session] = []
    for before in unmatched:
        candidates = (
            [s for s in by_uid.get(before.uid, []) if s.sid not in used] if before.uid else []
        )
        if candidates:
            after = min(candidates, key=lambda s: abs(s.start - before.start))
            used.add(after.sid)
            if (change := _compare(before, after)) is not None:
                changes.append(change)
        else:
            remaining.append(before)

    # (c) same title, nearest in time, within the pairing window
    by_title: dict[str, list[Session]] = defaultdict(list)
    for s in free:
        if s.sid not in used:
            by_title[fold(s.title)].append(s)
    vanished: list[Session] = []
    for before in sorted(remaining, key=lambda s: s.start):
        candidates = [
            s
            for s in by_title.get(fold(before.title), [])
            if s.sid not in used and abs(s.start - before.start) <= PAIRING_WINDOW
        ]
        if candidates:
            after = min(candidates, key=lambda s: (abs(s.start - before.start), s.start))
            used.add(after.sid)
            if (change := _compare(before, after)) is not None:
                changes.append(change)
        else:
            vanished.append(before)

    # (d) gone: cancelled, unless it looks like a broken publication
    suppressed: list[Session] = []
    if len(vanished) >= MASS_VANISH_MIN and len(vanished) * 2 > len(upcoming):
        suppressed = vanished
    else:
        changes.extend(Change(ChangeKind.CANCELLED, s, None) for s in vanished)
    changes.sort(key=lambda c: (c.before.start, c.before.title, c.kind))
    return Diff(changes=changes, suppressed=suppressed)
