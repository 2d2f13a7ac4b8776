"""Loading agenda sources (iCalendar, programmes: `kinds`; files or http(s) URLs) into one `Agenda`.

The agenda is rebuilt from three layers: every source's last good copy,
then moderators' edits (in order), then compared with the previous agenda to
find programme changes. New copies, their sessions, an edit and the changes
it makes are saved in one transaction, so a change notice is neither lost
nor doubled by a crash.

A source that fails keeps its last good copy (in memory, and in the database
across restarts); the failure is logged once when it starts and once when it
ends, not at every refresh. Start-up serves the sessions saved by the last
good refresh (one query, no parsing) and never waits for the network; only
a database from before they were saved, or other settings (time zone,
horizon, version), parse the saved copies once.

Parsing and the diff of a refresh run in a separate process (`worker`): the
event loop only decodes the result, a slice at a time. They run under the
parser's limits (time, memory) and the sources' caps (`bounds`): a source
over a cap keeps its earliest sessions (one warning while it is over), one
past a limit keeps its last good copy (one error). A refresh takes the lock
that moderators' edits need only to switch to its result: an edit made
while it compared the agendas is never lost, the comparison is made again
with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from bot import __version__
from bot.agenda.bounds import MAX_PER_SERIES, MAX_SESSIONS
from bot.agenda.edits import apply_edits
from bot.agenda.kinds import SourceRef
from bot.agenda.model import Agenda, Session
from bot.agenda.moderation import EditError as EditError  # re-exported for commands
from bot.agenda.moderation import ModeratorEdits
from bot.agenda.packed import FORMAT, unpack_async
from bot.agenda.reports import SourceReports
from bot.agenda.worker import (
    Diffed,
    DiffJob,
    ParseJob,
    Parser,
    ParserLimit,
    ThreadParser,
    relog,
)
from bot.db.agenda import ChangeRecord, Edit, SourceBody, StoredSessions
from bot.db.storage import Storage
from bot.fetch import RETRY_DELAYS, SourceError, describe, fetch, is_url
from bot.ops import Metrics

log = logging.getLogger(__name__)

# Occurrences already over by more than this are not kept in memory.
LOOKBEHIND = timedelta(days=1)
# An unchanged source is parsed again after this long anyway: recurring
# events are expanded up to `horizon` from the time of parsing.
REPARSE_AFTER = timedelta(hours=12)
# A refresh's diff is made again when an edit came in meanwhile; the last of
# this many attempts holds the lock (edits then wait for it).
DIFF_ATTEMPTS = 3


class LimitError(SourceError):
    """Parsing a source went past a limit of the parser (time, memory)."""


@dataclass(frozen=True, slots=True)
class _Copy:
    """A source's last good parse: its sessions, the same packed, and when."""

    sessions: list[Session]
    packed: bytes
    parsed_at: datetime


@dataclass(frozen=True, slots=True)
class _Loaded:
    copy: _Copy | None  # None: unchanged and parsed recently, keep the current one
    fresh: SourceBody | None  # a new copy to save, None when unchanged (304, same file)


class AgendaService(ModeratorEdits):
    def __init__(
        self,
        sources: Sequence[str | SourceRef],
        storage: Storage,
        http: aiohttp.ClientSession,
        tz: ZoneInfo,
        horizon: timedelta,
        now: Callable[[], datetime],
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        metrics: Metrics | None = None,
        parser: Parser | None = None,
        max_sessions: int = MAX_SESSIONS,
        max_per_series: int = MAX_PER_SERIES,
    ) -> None:
        self._metrics = metrics or Metrics()
        # A source is its path or URL (its identity, in the database too); its
        # declared kind, if any, chooses the parser (bot.agenda.kinds).
        self._sources = [s if isinstance(s, str) else s.url for s in sources]
        self._kinds = {s.url: s.kind for s in sources if not isinstance(s, str) and s.kind}
        self._storage = storage
        self._http = http
        self._tz = tz
        self._horizon = horizon
        self._now = now
        self._retry_delays = tuple(retry_delays)
        # A thread by default (tests); the bot passes a ProcessParser.
        self._parser: Parser = parser or ThreadParser()
        self._caps = (max_sessions, max_per_series)
        self._good: dict[str, _Copy] = {}
        self._reports = SourceReports(self._metrics)
        self._edits: list[Edit] = []
        self._lock = asyncio.Lock()  # guards the agenda, the edits and the copies
        self._refreshing = asyncio.Lock()
        self.agenda = Agenda()
        # Called after programme changes are stored (wakes the broadcaster).
        self.on_recorded: Callable[[], None] | None = None
        # Stored sessions computed under other settings are not served.
        self._params = f"{FORMAT}|{tz.key}|{int(horizon.total_seconds())}|{__version__}"

    # -- building -------------------------------------------------------------

    async def start(self) -> Agenda:
        """The agenda from the sessions saved by the last good refresh, and edits.

        No parsing and no network access, except once: a source without
        saved sessions (a database from before they were kept, other
        settings) has its saved copy parsed; files never read before are
        read now (they are local); URLs never fetched wait for the first
        refresh.
        """
        async with self._refreshing, self._lock:
            try:
                return await self._start()
            finally:
                self._parser.idle()

    async def _start(self) -> Agenda:
        now = self._now()
        self._edits = await self._storage.agenda.edits()
        stored = await self._storage.agenda.stored_sessions()
        fresh: list[SourceBody] = []
        parsed: list[str] = []
        for source in self._sources:
            saved = stored.get(source)
            if saved is not None and saved.params == self._params_of(source):
                self._good[source] = _Copy(
                    await unpack_async(saved.packed),
                    saved.packed,
                    datetime.fromtimestamp(saved.parsed_at, UTC),
                )
                continue
            cached = await self._storage.agenda.source(source)
            if cached is not None:
                try:
                    self._good[source] = await self._parse(cached.body, source, now)
                    parsed.append(source)
                    continue
                except SourceError as exc:
                    log.warning("agenda: saved copy of %s unusable: %s", describe(source), exc)
            if not is_url(source):
                try:
                    loaded = await self._load(source, now)
                except SourceError as exc:
                    self._report_failure(source, exc)
                    continue
                assert loaded.copy is not None  # never parsed before: parsed now
                self._good[source] = loaded.copy
                parsed.append(source)
                if loaded.fresh is not None:
                    fresh.append(loaded.fresh)
        if fresh or parsed:
            # No diff: like the copies, these sessions are the starting point.
            await self._storage.agenda.commit(
                fresh, [], sessions=[self._stored(s, self._good[s]) for s in parsed]
            )
        self.agenda = self._build(self._good, self._edits)
        self._log_size()
        return self.agenda

    def _build_edited(self, edits: Sequence[Edit]) -> Agenda:
        return self._build(self._good, edits)

    def _build(self, good: dict[str, _Copy], edits: Sequence[Edit]) -> Agenda:
        merged = [s for src in self._sources if src in good for s in good[src].sessions]
        return Agenda(apply_edits(merged, edits))

    def _packed(self, good: dict[str, _Copy]) -> list[bytes]:
        return [good[src].packed for src in self._sources if src in good]

    def _stored(self, source: str, copy: _Copy) -> StoredSessions:
        return StoredSessions(
            source, self._params_of(source), int(copy.parsed_at.timestamp()), copy.packed
        )

    def _params_of(self, source: str) -> str:
        """The settings its sessions were computed under: with a declared kind, that
        kind too (sessions parsed under another kind, or guessed, are parsed again)."""
        kind = self._kinds.get(source)
        return self._params if kind is None else f"{self._params}|{kind}"

    def _log_size(self) -> None:
        log.info(
            "agenda: %d sessions from %d/%d sources and %d edit(s)",
            len(self.agenda),
            sum(1 for s in self._sources if s in self._good),
            len(self._sources),
            len(self._edits),
        )

    def _recorded(self, records: Sequence[ChangeRecord]) -> None:
        # Stored changes are the queue of notices for subscribed rooms.
        for r in records:
            title = r.payload["before"]["title"]  # type: ignore[index]
            log.info("agenda: programme change (%s): %s [%s]", r.kind, title, r.sid)
        if records and self.on_recorded is not None:
            self.on_recorded()

    @staticmethod
    def _warn_suppressed(count: int) -> None:
        if count:
            log.warning(
                "agenda: %d upcoming sessions vanished at once; not announced as cancelled "
                "(a broken publication is more likely than a mass cancellation)",
                count,
            )

    # -- refreshing -----------------------------------------------------------

    async def refresh(self) -> Agenda:
        """Reload every source (in parallel); on failure keep its last good copy."""
        async with self._refreshing:
            try:
                with _collector_paused():
                    return await self._refresh()
            finally:
                self._parser.idle()

    async def _refresh(self) -> Agenda:
        now = self._now()
        results = await asyncio.gather(
            *(self._load(source, now) for source in self._sources), return_exceptions=True
        )
        good = dict(self._good)
        bodies: list[SourceBody] = []
        parsed: list[str] = []
        for source, result in zip(self._sources, results, strict=True):
            if isinstance(result, SourceError):
                self._report_failure(source, result)
                continue
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                log.error(
                    "agenda: source %s: unexpected error",
                    describe(source),
                    exc_info=result,
                )
                continue
            self._reports.readable(source)
            if result.copy is not None:
                good[source] = result.copy
                parsed.append(source)
            if result.fresh is not None:
                bodies.append(result.fresh)
        if parsed:
            await self._switch(good, parsed, bodies, now)
        self._log_size()
        return self.agenda

    async def _switch(
        self, good: dict[str, _Copy], parsed: list[str], bodies: list[SourceBody], now: datetime
    ) -> None:
        """Diff (in the parser) against the agenda served, save everything at once, switch.

        The diff runs without the lock: edits go on meanwhile. If one was made,
        the diff is made again with it (the last attempt under the lock), so
        that the changes saved are those from the agenda served to the new one.
        """
        for _ in range(DIFF_ATTEMPTS - 1):
            base, edits = self._good, self._edits
            diffed = await self._diff(base, good, edits, now)
            if diffed is None:
                return
            new = self._build(good, edits)
            async with self._lock:
                if self._good is base and self._edits is edits:
                    await self._commit_switch(good, parsed, bodies, diffed, new)
                    return
            log.debug("agenda: edited during the refresh's diff: diffing again")
        async with self._lock:  # edits wait for this last attempt
            diffed = await self._diff(self._good, good, self._edits, now)
            if diffed is not None:
                new = self._build(good, self._edits)
                await self._commit_switch(good, parsed, bodies, diffed, new)

    async def _commit_switch(
        self,
        good: dict[str, _Copy],
        parsed: list[str],
        bodies: list[SourceBody],
        diffed: Diffed,
        new: Agenda,
    ) -> None:
        stored = [self._stored(src, good[src]) for src in parsed]
        await self._storage.agenda.commit(bodies, diffed.changes, sessions=stored)
        self._good = good
        self.agenda = new
        relog(diffed.logs)
        self._warn_suppressed(diffed.suppressed)
        self._recorded(diffed.changes)

    async def _diff(
        self, base: dict[str, _Copy], good: dict[str, _Copy], edits: list[Edit], now: datetime
    ) -> Diffed | None:
        try:
            diffed = await self._parser.diff(
                DiffJob(self._packed(base), self._packed(good), edits, edits, now)
            )
        except ParserLimit as exc:
            self._reports.diff_failure(str(exc))
            return None
        self._reports.diff_done()
        return diffed

    def _report_failure(self, source: str, exc: SourceError) -> None:
        limit = isinstance(exc, LimitError)
        self._reports.failure(source, str(exc), limit=limit, has_copy=source in self._good)

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
        current = self._good.get(source)
        if not fresh and current is not None and now - current.parsed_at < REPARSE_AFTER:
            return _Loaded(None, None)
        # Parse before saving: a garbage answer must not replace a good copy.
        copy = await self._parse(body, source, now)
        return _Loaded(copy, SourceBody(source, body, etag, last_modified) if fresh else None)

    async def _parse(self, body: bytes, source: str, now: datetime) -> _Copy:
        parsed = await self._parser.parse(
            ParseJob(
                source,
                body,
                self._tz,
                now - LOOKBEHIND,
                now + self._horizon,
                *self._caps,
                kind=self._kinds.get(source),
            )
        )
        relog(parsed.logs)
        if parsed.error is not None:
            raise (LimitError if parsed.limit else SourceError)(parsed.error)
        self._reports.caps(source, parsed.notes)
        previous = self._good.get(source)
        sessions = await unpack_async(parsed.packed, previous.sessions if previous else ())
        return _Copy(sessions, parsed.packed, now)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a refresh builds a new agenda.

    Collections triggered by the ~100,000 objects of a 10,000-session
    agenda stalled the event loop up to ~150 ms (bench/agenda_core.py, a
    refresh where every session moved). After it, the young generations are
    collected (a few ms) and what is left is frozen, as `bot.app` does once
    started: the agenda lives until the next refresh, and refcounting still
    frees it then.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.collect(1)
            gc.freeze()
            gc.enable()
