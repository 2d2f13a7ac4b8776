"""Parsing and diffing off the event loop: jobs for a separate process, and what runs them.

Parsing 10,000 events takes seconds of pure Python. In a thread it still
holds the GIL in long stretches (up to ~195 ms measured on a refresh) and
the bot answers nobody meanwhile; so is diffing two large agendas when
their sessions moved (titles are folded character by character). The jobs
below take bytes and plain values and give back bytes and plain values, so
the same code runs in a process (the bot) or in a thread (tests,
`check-config`), with the same result.

The process lives for one refresh: it is started when a source needs
parsing and ended when the refresh is done, so its memory is given back; a
refresh that finds nothing new starts no process at all.

It runs under limits (`ParserLimits`): each job a wall-clock timeout, the
process an address-space limit (RLIMIT_AS, set in the process itself). A job
past a limit ends the process (killed, not waited for) and raises
`ParserLimit`; the next job starts a new process. A job cancelled (the bot
stopping) kills the process too, so that stopping never waits for a parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import resource
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Protocol, TypeVar
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from bot.agenda.bounds import MAX_PER_SERIES, MAX_SESSIONS, Bounds
from bot.agenda.changes import diff
from bot.agenda.edits import apply_edits, change_record
from bot.agenda.model import Agenda, Session
from bot.agenda.packed import pack, unpack
from bot.db.agenda import ChangeRecord, Edit
from bot.fetch import SourceError, describe, is_url

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


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
    bounds: Bounds | None = None,
) -> list[Session]:
    """Sessions of one source's content (within `bounds`); SourceError when it is unusable."""
    # Here, not at the top: the bot's process only parses through the parser
    # process (or `check-config`), and icalendar is slow to import.
    from bot.agenda.ics import CalendarError, parse_ics
    from bot.agenda.programme import ProgrammeError, parse_programme

    parser = parse_ics if source_format(source, body) == "ics" else parse_programme
    try:
        return parser(
            body,
            source=describe(source),
            tz=tz,
            window_start=window_start,
            window_end=window_end,
            bounds=bounds,
        )
    except (CalendarError, ProgrammeError) as exc:
        raise SourceError(str(exc)) from None


# -- jobs (run in the parser process) ---------------------------------------------

# (logger name, level, message): log records made in the process, logged
# again by the bot (the process has no handler of its own).
LogLine = tuple[str, int, str]


@dataclass(frozen=True, slots=True)
class ParseJob:
    source: str
    body: bytes
    tz: ZoneInfo
    window_start: datetime
    window_end: datetime
    max_sessions: int = MAX_SESSIONS
    max_per_series: int = MAX_PER_SERIES


@dataclass(frozen=True, slots=True)
class Parsed:
    packed: bytes  # the sessions (bot.agenda.packed), b"" on error
    error: str | None = None  # why the source is unusable
    logs: list[LogLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the caps cut (bot.agenda.bounds)
    limit: bool = False  # the error is a parser limit (timeout, memory)


@dataclass(frozen=True, slots=True)
class DiffJob:
    """Two states of the sources (packed, in the configured order) and their edits."""

    old: Sequence[bytes]
    new: Sequence[bytes]
    old_edits: Sequence[Edit]
    new_edits: Sequence[Edit]
    now: datetime


@dataclass(frozen=True, slots=True)
class Diffed:
    changes: list[ChangeRecord]
    suppressed: int  # upcoming sessions that vanished at once, not announced
    logs: list[LogLine] = field(default_factory=list)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, record.getMessage()))

    def drain(self) -> list[LogLine]:
        lines, self.lines = self.lines, []
        return lines


_collector: _Collector | None = None


def _init_process(memory: int | None = None) -> None:
    """In the parser process: its memory limit; keep the bot's log records to send back."""
    if memory:
        # Address space, not resident memory: the limit holds before the kernel
        # is short of memory, and a failed allocation is a MemoryError here.
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    global _collector
    _collector = _Collector()
    bot_log = logging.getLogger("bot")
    bot_log.setLevel(logging.DEBUG)
    bot_log.addHandler(_collector)
    bot_log.propagate = False


def _logs() -> list[LogLine]:
    return _collector.drain() if _collector is not None else []


def run_parse(job: ParseJob) -> Parsed:
    bounds = Bounds(job.max_sessions, job.max_per_series)
    try:
        sessions = parse_source(
            job.body,
            job.source,
            tz=job.tz,
            window_start=job.window_start,
            window_end=job.window_end,
            bounds=bounds,
        )
    except SourceError as exc:
        return Parsed(b"", str(exc), _logs())
    return Parsed(pack(sessions), None, _logs(), bounds.notes)


def agenda_of(packed: Sequence[bytes], edits: Sequence[Edit]) -> Agenda:
    """The agenda the bot serves for these sources' sessions and edits."""
    return Agenda(apply_edits([s for p in packed for s in unpack(p)], edits))


def run_diff(job: DiffJob) -> Diffed:
    found = diff(agenda_of(job.old, job.old_edits), agenda_of(job.new, job.new_edits), now=job.now)
    return Diffed([change_record(c) for c in found.changes], len(found.suppressed), _logs())


# -- what runs the jobs (in the bot) ----------------------------------------------

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """`agenda.parse_timeout` (seconds, per job) and `agenda.parse_memory` (bytes)."""

    timeout: float = 120.0
    memory: int = 512 * MIB


class ParserLimit(Exception):
    """A job went past a limit; its process was ended. The message names the limit."""


class Parser(Protocol):
    async def run(self, fn: Callable[[J], R], job: J) -> R:
        """`fn(job)` where the parser runs it; ParserLimit past a limit."""

    async def parse(self, job: ParseJob) -> Parsed: ...

    async def diff(self, job: DiffJob) -> Diffed:
        """ParserLimit past a limit."""

    def idle(self) -> None:
        """Nothing to run for a while: a process may end and give its memory back."""

    def close(self) -> None: ...


class _Jobs:
    async def run(self, fn: Callable[[J], R], job: J) -> R:
        raise NotImplementedError

    async def parse(self, job: ParseJob) -> Parsed:
        try:
            return await self.run(run_parse, job)
        except ParserLimit as exc:
            return Parsed(b"", str(exc), limit=True)

    async def diff(self, job: DiffJob) -> Diffed:
        return await self.run(run_diff, job)


class ThreadParser(_Jobs):
    """Jobs in a thread of the bot's process, without limits: for tests and
    `check-config`."""

    async def run(self, fn: Callable[[J], R], job: J) -> R:
        return await asyncio.to_thread(fn, job)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessParser(_Jobs):
    """Jobs in one separate process, one at a time, started on demand ('spawn':
    nothing of the bot's state, sockets or threads is inherited), ended when idle,
    past a limit, or when the job waiting for it is cancelled."""

    def __init__(self, limits: ParserLimits | None = None, method: str = "spawn") -> None:
        self.limits = limits or ParserLimits()
        self._method = method
        self._pool: ProcessPoolExecutor | None = None
        self._turn = asyncio.Lock()  # one job at a time: a timeout counts its own run

    @property
    def running(self) -> bool:
        return self._pool is not None

    def pids(self) -> list[int]:
        """The process's id, once started."""
        return list((self._pool._processes or {}) if self._pool is not None else ())

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context(self._method),
                initializer=_init_process,
                initargs=(self.limits.memory,),
            )
        return self._pool

    async def run(self, fn: Callable[[J], R], job: J) -> R:
        async with self._turn:
            pool = self._executor()
            try:
                async with asyncio.timeout(self.limits.timeout):
                    return await asyncio.get_running_loop().run_in_executor(pool, fn, job)
            except TimeoutError:
                self._end(pool)
                raise ParserLimit(
                    f"the parser took longer than agenda.parse_timeout "
                    f"({self.limits.timeout:g} s) and was stopped"
                ) from None
            except MemoryError:
                self._end(pool)
                raise ParserLimit(
                    f"the parser went over agenda.parse_memory "
                    f"({self.limits.memory // MIB} MiB) and was stopped"
                ) from None
            except BrokenProcessPool:
                # Killed: the kernel's out-of-memory killer, an operator…
                self._end(pool)
                raise ParserLimit(
                    "the parser process stopped before the end (killed; its memory "
                    f"limit, agenda.parse_memory, is {self.limits.memory // MIB} MiB)"
                ) from None
            except BaseException:
                # Cancelled (the bot stops) or the job's own error: no process is
                # left running a job nobody waits for.
                self._end(pool)
                raise

    def _end(self, pool: ProcessPoolExecutor) -> None:
        """Kill the pool's process (a parse does not stop when asked) and forget it."""
        if self._pool is pool:
            self._pool = None
        for process in list((pool._processes or {}).values()):
            with contextlib.suppress(OSError, ValueError):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def idle(self) -> None:
        pool = self._pool
        if pool is None:
            return
        if self._turn.locked():  # a job still runs: nobody will want its result
            self._end(pool)
            return
        self._pool = None
        pool.shutdown(wait=False)

    def close(self) -> None:
        """Stop at once: a parse still running is abandoned (the next start redoes it)."""
        if self._pool is not None:
            self._end(self._pool)


def relog(lines: Sequence[LogLine]) -> None:
    """Log records made in the parser process, through the bot's own handlers."""
    for name, level, message in lines:
        logging.getLogger(name).log(level, "%s", message)
