"""Loading agenda sources (iCalendar or YAML, files or http(s) URLs) into one `Agenda`.

The agenda is rebuilt from three layers: every source's last good copy,
then moderators' edits (in order), then compared with the previous agenda to
find programme changes. New copies, an edit and the changes it makes are
saved in one transaction, so a change notice is neither lost nor doubled by
a crash.

A source that fails keeps its last good copy (in memory, and in the database
across restarts); the failure is logged once when it starts and once when it
ends, not at every refresh. Start-up uses the saved copies and never waits
for the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import aiohttp

from bot.agenda.changes import Change, diff
from bot.agenda.ics import CalendarError, parse_ics
from bot.agenda.model import Agenda, Session
from bot.agenda.programme import ProgrammeError, parse_programme
from bot.db.agenda import ChangeRecord, Edit, SourceBody
from bot.db.storage import Storage
from bot.fetch import RETRY_DELAYS, SourceError, describe, fetch, is_url
from bot.ops import Metrics

log = logging.getLogger(__name__)

# Occurrences already over by more than this are not kept in memory.
LOOKBEHIND = timedelta(days=1)
# An unchanged source is parsed again after this long anyway: recurring
# events are expanded up to `horizon` from the time of parsing.
REPARSE_AFTER = timedelta(hours=12)
MODERATOR_SOURCE = "modérateurs"


class EditError(Exception):
    """A moderator's edit cannot apply (unknown id…); the message is for logs."""


def source_format(source: str, body: bytes) -> str:
    """'ics' or 'yaml': by the name's extension, else by the content."""
    path = urlparse(source).path if is_url(source) else source
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix in (".ics", ".ical", ".icalendar"):
        return "ics"
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper()
    return "ics" if head.startswith(b"BEGIN:VCALENDAR") else "yaml"


def parse_source(
    body: bytes,
    source: str,
    *,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
) -> list[Session]:
    """Sessions of one source's content; SourceError when it is unusable."""
    parser = parse_ics if source_format(source, body) == "ics" else parse_programme
    try:
        return parser(
            body,
            source=describe(source),
            tz=tz,
            window_start=window_start,
            window_end=window_end,
        )
    except (CalendarError, ProgrammeError) as exc:
        raise SourceError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Loaded:
    sessions: list[Session]
    fresh: SourceBody | None  # a new copy to save, None when unchanged (304, same file)


# -- moderators' edits --------------------------------------------------------

EDITABLE = ("title", "start", "end", "all_day", "location", "url", "speakers", "description")


def fields_to_session_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored edit fields (JSON) → Session keyword arguments."""
    out: dict[str, Any] = {}
    for key in EDITABLE:
        if key not in fields:
            continue
        value = fields[key]
        if key in ("start", "end"):
            value = datetime.fromisoformat(value).astimezone(UTC)
        elif key == "speakers":
            value = tuple(value)
        out[key] = value
    return out


def session_to_fields(session: Session) -> dict[str, Any]:
    """A session's editable fields as JSON-ready values (edits, change records)."""
    return {
        "title": session.title,
        "start": session.start.isoformat(),
        "end": session.end.isoformat(),
        "all_day": session.all_day,
        "location": session.location,
        "url": session.url,
        "speakers": list(session.speakers),
        "description": session.description,
    }


def apply_edits(sessions: Iterable[Session], edits: Sequence[Edit]) -> list[Session]:
    """Sessions after moderators' edits, in order. Modified sessions keep their id."""
    by_sid: dict[str, Session] = {}
    for s in sessions:
        known = by_sid.get(s.sid)
        # The same session from several sources: first wins, active over cancelled.
        if known is None or (known.cancelled and not s.cancelled):
            by_sid[s.sid] = s
    for edit in edits:
        if edit.action == "add":
            kwargs = fields_to_session_kwargs(edit.fields)
            by_sid[edit.target] = Session(
                **kwargs, source=MODERATOR_SOURCE, uid=f"edit:{edit.target}", sid=edit.target
            )
            continue
        current = by_sid.get(edit.target)
        if current is None:
            # Its source moved or removed it since: the edit no longer applies.
            log.debug("agenda: edit %d targets %s, no longer in the agenda", edit.id, edit.target)
            continue
        if edit.action == "modify":
            kwargs = fields_to_session_kwargs(edit.fields)
            by_sid[edit.target] = replace(current, **kwargs, sid=edit.target, search_key="")
        elif edit.action == "cancel":
            by_sid[edit.target] = replace(current, cancelled=True)
    return list(by_sid.values())


def change_record(change: Change) -> ChangeRecord:
    after = change.after
    return ChangeRecord(
        key=change.key,
        kind=change.kind.value,
        sid=change.before.sid,
        payload={
            "before": session_to_fields(change.before),
            "after": None if after is None else session_to_fields(after),
        },
        created_at=0,
    )


class AgendaService:
    def __init__(
        self,
        sources: list[str],
        storage: Storage,
        http: aiohttp.ClientSession,
        tz: ZoneInfo,
        horizon: timedelta,
        now: Callable[[], datetime],
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._sources = sources
        self._storage = storage
        self._http = http
        self._tz = tz
        self._horizon = horizon
        self._now = now
        self._retry_delays = tuple(retry_delays)
        self._good: dict[str, list[Session]] = {}
        self._parsed_at: dict[str, datetime] = {}
        self._failing: set[str] = set()
        self._edits: list[Edit] = []
        self._lock = asyncio.Lock()  # guards the agenda, the edits and the copies
        self._refreshing = asyncio.Lock()
        self.agenda = Agenda()
        # Called after programme changes are stored (wakes the broadcaster).
        self.on_recorded: Callable[[], None] | None = None

    # -- building -------------------------------------------------------------

    async def start(self) -> Agenda:
        """The agenda from saved copies and edits, without any network access.

        Files never read before are read now (they are local); URLs never
        fetched wait for the first refresh.
        """
        async with self._lock:
            now = self._now()
            self._edits = await self._storage.agenda.edits()
            fresh = []
            for source in self._sources:
                cached = await self._storage.agenda.source(source)
                if cached is not None:
                    try:
                        self._good[source] = await self._parse(cached.body, source, now)
                        continue
                    except SourceError as exc:
                        log.warning("agenda: saved copy of %s unusable: %s", describe(source), exc)
                if not is_url(source):
                    try:
                        loaded = await self._load(source, now)
                    except SourceError as exc:
                        self._report_failure(source, str(exc))
                        continue
                    self._good[source] = loaded.sessions
                    if loaded.fresh is not None:
                        fresh.append(loaded.fresh)
            if fresh:
                await self._storage.agenda.commit(fresh, [])
            self.agenda = self._build()
            self._log_size()
            return self.agenda

    def _build(self) -> Agenda:
        merged = [s for src in self._sources for s in self._good.get(src, [])]
        return Agenda(apply_edits(merged, self._edits))

    def _log_size(self) -> None:
        log.info(
            "agenda: %d sessions from %d/%d sources and %d edit(s)",
            len(self.agenda),
            sum(1 for s in self._sources if s in self._good),
            len(self._sources),
            len(self._edits),
        )

    async def _commit(
        self,
        new: Agenda,
        bodies: list[SourceBody],
        edit: tuple[str, str, dict[str, Any], str] | None = None,
        drop_edits: Sequence[int] = (),
    ) -> int | None:
        """Diff against the current agenda, save everything at once, then switch."""
        found = diff(self.agenda, new, now=self._now())
        if found.suppressed:
            log.warning(
                "agenda: %d upcoming sessions vanished at once; not announced as cancelled "
                "(a broken publication is more likely than a mass cancellation)",
                len(found.suppressed),
            )
        records = [change_record(c) for c in found.changes]
        edit_id = await self._storage.agenda.commit(bodies, records, edit, drop_edits)
        self.agenda = new
        # Stored changes are the queue of notices for subscribed rooms.
        for c in found.changes:
            log.info("agenda: programme change (%s): %s [%s]", c.kind, c.before.title, c.before.sid)
        if records and self.on_recorded is not None:
            self.on_recorded()
        return edit_id

    # -- refreshing -----------------------------------------------------------

    async def refresh(self) -> Agenda:
        """Reload every source (in parallel); on failure keep its last good copy."""
        async with self._refreshing:
            now = self._now()
            results = await asyncio.gather(
                *(self._load(source, now) for source in self._sources), return_exceptions=True
            )
            async with self._lock:
                bodies = []
                for source, result in zip(self._sources, results, strict=True):
                    if isinstance(result, SourceError):
                        self._report_failure(source, str(result))
                        continue
                    if isinstance(result, BaseException):
                        log.error(
                            "agenda: source %s: unexpected error",
                            describe(source),
                            exc_info=result,
                        )
                        continue
                    if source in self._failing:
                        self._failing.discard(source)
                        log.info("agenda: source %s is readable again", describe(source))
                    self._good[source] = result.sessions
                    if result.fresh is not None:
                        bodies.append(result.fresh)
                await self._commit(self._build(), bodies)
                self._log_size()
                return self.agenda

    def _report_failure(self, source: str, reason: str) -> None:
        self._metrics.source_failures.labels("calendar").inc()
        if source in self._failing:
            log.debug("agenda: source %s still failing: %s", describe(source), reason)
            return
        self._failing.add(source)
        kept = "keeping its last good copy" if source in self._good else "no copy yet"
        log.warning("agenda: source %s failed: %s (%s)", describe(source), reason, kept)

    async def _load(self, source: str, now: datetime) -> _Loaded:
        if is_url(source):
            cached = await self._storage.agenda.source(source)
            got = await fetch(
                self._http,
                source,
                etag=cached.etag if cached else None,
                last_modified=cached.last_modified if cached else None,
                retry_delays=self._retry_delays,
            )
            if got.body is None and cached is not None:  # 304
                body, etag, last_modified, fresh = cached.body, got.etag, got.last_modified, False
            elif got.body is None:
                raise SourceError("HTTP 304 without a saved copy", retryable=False)
            else:
                body, etag, last_modified, fresh = got.body, got.etag, got.last_modified, True
        else:
            try:
                body = await asyncio.to_thread(Path(source).read_bytes)
            except OSError as exc:
                raise SourceError(f"cannot read file ({exc.strerror})") from None
            cached = await self._storage.agenda.source(source)
            etag = last_modified = None
            fresh = cached is None or cached.body != body
        parsed_at = self._parsed_at.get(source)
        if not fresh and source in self._good and parsed_at and now - parsed_at < REPARSE_AFTER:
            return _Loaded(self._good[source], None)
        # Parse before saving: a garbage answer must not replace a good copy.
        sessions = await self._parse(body, source, now)
        return _Loaded(sessions, SourceBody(source, body, etag, last_modified) if fresh else None)

    async def _parse(self, body: bytes, source: str, now: datetime) -> list[Session]:
        sessions = await asyncio.to_thread(
            parse_source,
            body,
            source,
            tz=self._tz,
            window_start=now - LOOKBEHIND,
            window_end=now + self._horizon,
        )
        self._parsed_at[source] = now
        return sessions

    # -- moderators' edits ----------------------------------------------------

    async def add(self, session: Session, author: str) -> Session:
        """Add a session; it keeps the id computed from its start and title."""
        fields = session_to_fields(session)
        await self._edit("add", session.sid, fields, author)
        return self._require(session.sid)

    async def modify(self, sid: str, fields: dict[str, Any], author: str) -> Session:
        """Change some fields of a session; it keeps its id."""
        await self._edit("modify", sid, fields, author)
        return self._require(sid)

    async def cancel(self, sid: str, author: str) -> Session:
        await self._edit("cancel", sid, {}, author)
        return self._require(sid)

    async def restore(self, sid: str, author: str) -> Session:
        """Undo moderators' cancellations of a session (not a source's)."""
        async with self._lock:
            drop = [e.id for e in self._edits if e.action == "cancel" and e.target == sid]
            if not drop:
                raise EditError(f"no cancellation of {sid} by a moderator")
            kept = self._edits
            self._edits = [e for e in kept if e.id not in drop]
            try:
                await self._commit(self._build(), [], drop_edits=drop)
            except BaseException:
                self._edits = kept
                raise
            log.info("agenda: %s restored %s", author, sid)
        return self._require(sid)

    def _require(self, sid: str) -> Session:
        session = self.agenda.get(sid)
        if session is None:  # pragma: no cover - edits always leave their target
            raise EditError(f"session {sid} not found after the edit")
        return session

    async def _edit(self, action: str, target: str, fields: dict[str, Any], author: str) -> None:
        async with self._lock:
            if action != "add" and self.agenda.get(target) is None:
                raise EditError(f"unknown session {target}")
            pending = Edit(-1, action, target, fields, author, 0)
            kept = self._edits
            self._edits = [*kept, pending]
            try:
                edit_id = await self._commit(
                    self._build(), [], edit=(action, target, fields, author)
                )
            except BaseException:
                self._edits = kept
                raise
            self._edits = [*kept, replace(pending, id=edit_id or -1)]
            log.info("agenda: %s: %s %s", author, action, target)
