"""What the public calendars publish of each session, so that subscribed apps follow it.

Calendar apps (Outlook, Thunderbird, phones) poll a subscribed feed and match
its events by UID. For them to show a move as a move, not as a deleted event
and a new one, and for an unchanged feed to be byte-identical (its ETag then
stays valid):

- a session keeps its UID for life; a session its source moved has a new id
  (start + title, `bot.agenda.model.session_id`) but inherits the old UID,
  paired through the programme change the agenda recorded;
- DTSTAMP, LAST-MODIFIED and SEQUENCE change only when what an app shows
  changes (a fingerprint of those fields), never at each request;
- a cancelled session, or an upcoming one that vanished from its source,
  stays `STATUS:CANCELLED` for `web.cancelled_kept`, then goes: an app that
  polled in between strikes it out instead of silently losing it.

The ledger is one table (`storage.published`), mirrored in memory and brought
up to date by `sync(agenda)` whenever the agenda served is a new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.agenda.edits import fields_to_session_kwargs, session_to_fields
from bot.agenda.model import Agenda, Session
from bot.agenda.query import AgendaQuery
from bot.db.published import PublishedRow
from bot.db.storage import Storage
from bot.views import after_sid

log = logging.getLogger(__name__)

UID_DOMAIN = "bluehats-bot"


def default_uid(sid: str) -> str:
    """A session's UID until it moves (the same as `!agenda ics` files always had)."""
    return f"{sid}@{UID_DOMAIN}"


def fingerprint(s: Session) -> str:
    """What a calendar app shows of a session: a new value means a new SEQUENCE."""
    shown = (
        s.title,
        s.start.timestamp(),
        s.end.timestamp(),
        s.all_day,
        s.description,
        s.location,
        s.url,
        s.speakers,
        s.categories,
        s.event,
    )
    return hashlib.blake2b(repr(shown).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    """A session as a calendar publishes it."""

    session: Session
    uid: str
    stamp: datetime  # DTSTAMP and LAST-MODIFIED: when it last changed
    sequence: int = 0
    cancelled: bool = False


class Published:
    """An immutable view of the ledger for one agenda: what feeds are built from."""

    def __init__(
        self,
        generation: int,
        last_modified: datetime,
        rows: dict[str, PublishedRow],
        gone: list[Session],
        moves: dict[str, str],
    ) -> None:
        self.generation = generation  # changes whenever any published entry changes
        self.last_modified = last_modified
        self._rows = rows
        # Cancelled or vanished sessions, as Agenda entries so that a query
        # selects them exactly as it selects listed ones.
        self._gone = Agenda(replace(s, cancelled=False) for s in gone)
        self._moves = moves

    def entry(self, session: Session) -> Entry:
        row = self._rows.get(session.sid)
        if row is None:  # not synced yet (a moderator's edit a moment ago)
            return Entry(session, default_uid(session.sid), session.start, 0, session.cancelled)
        return Entry(
            session,
            row.uid,
            datetime.fromtimestamp(row.stamp, UTC),
            row.sequence,
            session.cancelled or row.gone_at is not None,
        )

    def entries(self, sessions: Iterable[Session]) -> list[Entry]:
        return [self.entry(s) for s in sessions]

    def cancelled(self, query: AgendaQuery, now: datetime, tz: ZoneInfo) -> list[Entry]:
        """Sessions cancelled or vanished lately that `query` would have listed."""
        return [replace(self.entry(s), cancelled=True) for s in query.select(self._gone, now, tz)]

    def gone(self, sid: str) -> Entry | None:
        """A session cancelled or vanished lately, by id."""
        session = self._gone.get(sid)
        return None if session is None else replace(self.entry(session), cancelled=True)

    def moved_to(self, sid: str) -> str | None:
        """The id a session moved by its source has now (following several moves)."""
        seen = {sid}
        current = self._moves.get(sid)
        while current is not None and current in self._moves and current not in seen:
            seen.add(current)
            current = self._moves[current]
        return current


class PublishedLedger:
    def __init__(self, storage: Storage, *, kept: timedelta, now: Callable[[], datetime]) -> None:
        self._storage = storage
        self._kept = kept
        self._now = now
        self._lock = asyncio.Lock()
        self._rows: dict[str, PublishedRow] | None = None
        self._agenda: Agenda | None = None
        self._snapshot: Published | None = None
        self._generation = 0
        self._last_change = 0
        self._next_expiry: float | None = None

    async def sync(self, agenda: Agenda) -> Published:
        """The published view of `agenda`; stored changes first when it is a new agenda."""
        now = self._now()
        snapshot = self._snapshot
        if snapshot is not None and agenda is self._agenda and not self._expired(now):
            return snapshot
        async with self._lock:
            if self._snapshot is not None and agenda is self._agenda and not self._expired(now):
                return self._snapshot
            return await self._sync(agenda, now)

    def _expired(self, now: datetime) -> bool:
        """A cancelled entry is due to go."""
        return self._next_expiry is not None and now.timestamp() >= self._next_expiry

    async def _sync(self, agenda: Agenda, now: datetime) -> Published:
        if self._rows is None:
            self._rows = {r.sid: r for r in await self._storage.published.all()}
            self._last_change = max(
                (max(r.stamp, r.gone_at or 0) for r in self._rows.values()), default=0
            )
        since = int((now - self._kept - timedelta(days=1)).timestamp())
        moves: dict[str, str] = {}
        for record in await self._storage.agenda.changes_since(since):
            if record.kind == "moved" and (new := after_sid(record)) and new != record.sid:
                moves[record.sid] = new
        # Fingerprinting 10,000 sessions takes ~40 ms: off the event loop, on a copy
        # that replaces the rows only once saved.
        rows = dict(self._rows)
        ts = int(now.timestamp())
        upserts, deletes = await asyncio.to_thread(
            _reconcile, rows, agenda, self._agenda, moves, now, self._kept
        )
        if upserts or deletes:
            await self._storage.published.save(upserts.values(), deletes)
            self._generation += 1
            self._last_change = ts
            log.debug(
                "published calendars: %d entries written, %d forgotten", len(upserts), len(deletes)
            )
        self._rows = rows
        gone = [
            Session(sid=r.sid, cancelled=True, **fields_to_session_kwargs(r.payload))
            for r in rows.values()
            if r.gone_at is not None and r.payload is not None
        ]
        kept = self._kept.total_seconds()
        self._next_expiry = min(
            (r.gone_at + kept for r in rows.values() if r.gone_at is not None), default=None
        )
        self._agenda = agenda
        self._snapshot = Published(
            self._generation,
            datetime.fromtimestamp(self._last_change or ts, UTC),
            rows,  # a new dict at each sync: the snapshot owns it
            gone,
            moves,
        )
        return self._snapshot


def _reconcile(
    rows: dict[str, PublishedRow],
    agenda: Agenda,
    previous: Agenda | None,
    moves: dict[str, str],
    now: datetime,
    kept: timedelta,
) -> tuple[dict[str, PublishedRow], set[str]]:
    """`rows` brought up to `agenda` in place; the rows to write and the ids to forget.

    `previous`: the agenda last published, whose sessions that vanished since
    are kept (their last state) to be served as cancelled.
    """
    came_from = {new: old for old, new in moves.items()}
    ts = int(now.timestamp())
    listed = {s.sid: s for s in agenda}
    cancelled = {s.sid: s for s in agenda.cancelled}
    upserts: dict[str, PublishedRow] = {}
    deletes: set[str] = set()

    for sid, s in listed.items():
        fp = fingerprint(s)
        row = rows.get(sid)
        if row is None:
            old = came_from.get(sid)
            before = rows.get(old) if old is not None and old not in listed else None
            if before is not None and old is not None:
                row = PublishedRow(sid, before.uid, fp, before.sequence + 1, ts)
                deletes.add(old)
                rows.pop(old)
            else:
                row = PublishedRow(sid, default_uid(sid), fp, 0, ts)
        elif row.fingerprint != fp or row.gone_at is not None:
            row = replace(
                row,
                fingerprint=fp,
                sequence=row.sequence + 1,
                stamp=ts,
                gone_at=None,
                payload=None,
            )
        else:
            continue
        rows[sid] = upserts[sid] = row

    limit = ts - int(kept.total_seconds())
    for sid, row in list(rows.items()):
        if sid in listed:
            continue
        if row.gone_at is None:
            last = cancelled.get(sid) or (previous.get(sid) if previous else None)
            if last is None or last.start <= now:
                # Over, or dropped behind the agenda's window: not a cancellation.
                deletes.add(sid)
                rows.pop(sid)
                continue
            fields = session_to_fields(last)
            rows[sid] = upserts[sid] = replace(
                row, sequence=row.sequence + 1, stamp=ts, gone_at=ts, payload=fields
            )
        elif row.gone_at <= limit:
            deletes.add(sid)
            rows.pop(sid)
    return upserts, deletes
