"""Bounded sources: caps per series and per source, the parser's time and memory limits,
and moderators' edits during a refresh's diff."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.agenda.bounds import Bounds
from bot.agenda.ics import parse_ics
from bot.agenda.programme import parse_programme
from bot.agenda.sources import AgendaService
from bot.agenda.worker import (
    MIB,
    Diffed,
    DiffJob,
    ParserLimit,
    ParserLimits,
    ProcessParser,
    ThreadParser,
)
from bot.db.storage import Storage
from tests.fakes import FakeClock
from tests.helpers import EVER, eventually

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MOD = "@mod:example.org"


def ics(*events: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n"
        + "".join(events)
        + "END:VCALENDAR\r\n"
    ).encode()


def event(uid: str, start: str, title: str, rule: str = "") -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\n"
        f"DURATION:PT1M\r\n{rule}SUMMARY:{title}\r\nEND:VEVENT\r\n"
    )


EVERY_MINUTE = event("every-minute@t", "20261201T100000Z", "Spam", "RRULE:FREQ=MINUTELY\r\n")
# Every second since 1970: expanding it reaches the window only after ~1.8e9 steps.
ENDLESS = event("since-1970@t", "19700101T000000Z", "Forever", "RRULE:FREQ=SECONDLY\r\n")


def service(
    storage: Storage, http: aiohttp.ClientSession, path: Path, **kw: object
) -> AgendaService:
    return AgendaService(
        [str(path)],
        storage,
        http,
        PARIS,
        timedelta(days=366),
        FakeClock(NOW),
        **kw,  # type: ignore[arg-type]
    )


def test_an_endless_series_stops_at_its_cap_without_expanding_the_rest() -> None:
    bounds = Bounds(max_per_series=1000)
    # A century of minutes (52 million): only the first 1,000 are ever computed.
    sessions = parse_ics(
        ics(EVERY_MINUTE, event("other@t", "20261202T100000Z", "Café")),
        source="s",
        tz=PARIS,
        window_start=EVER[0],
        window_end=EVER[1],
        bounds=bounds,
    )
    spam = sorted(s.start for s in sessions if s.title == "Spam")
    assert len(spam) == 1000 and len(sessions) == 1001
    assert spam[0] == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert spam[-1] == spam[0] + timedelta(minutes=999)
    (note,) = bounds.notes
    assert "every-minute@t" in note and "'Spam'" in note and "1000" in note
    assert "agenda.max_per_series" in note


def test_a_source_keeps_its_earliest_sessions() -> None:
    # Listed latest first: what is kept is chosen by time, not by place in the file.
    days = [f"202612{d:02d}T100000Z" for d in range(30, 0, -1)]
    bounds = Bounds(max_sessions=10)
    sessions = parse_ics(
        ics(*(event(f"e{i}@t", d, f"Séance {d[6:8]}") for i, d in enumerate(days))),
        source="s",
        tz=PARIS,
        window_start=EVER[0],
        window_end=EVER[1],
        bounds=bounds,
    )
    assert sorted(s.start.day for s in sessions) == list(range(1, 11))
    assert bounds.notes == [
        "source s: 30 sessions in the window, over agenda.max_sessions (10): the earliest 10 kept"
    ]
    programme = "events:\n  - title: Journée\n    dates: 2026-12-04\n    sessions:\n" + "".join(
        f"      - {{time: {h}h-{h}h30, title: Séance {h}}}\n" for h in range(20, 8, -1)
    )
    bounds = Bounds(max_sessions=10)
    kept = parse_programme(
        programme.encode(),
        source="p",
        tz=PARIS,
        window_start=EVER[0],
        window_end=EVER[1],
        bounds=bounds,
    )
    assert sorted(s.title for s in kept) == sorted(f"Séance {h}" for h in range(9, 19))
    assert "12 sessions" in bounds.notes[0]


async def test_a_capped_source_is_used_and_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.agenda.sources")
    path = tmp_path / "agenda.ics"
    path.write_bytes(ics(EVERY_MINUTE))
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = service(storage, http, path, max_per_series=50)
        await svc.refresh()
        assert len(svc.agenda) == 50
        path.write_bytes(ics(EVERY_MINUTE, event("x@t", "20261203T100000Z", "Café")))
        await svc.refresh()  # parsed again, still over: not reported again
        assert len(svc.agenda) == 51
    await storage.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "every-minute@t ('Spam')" in warnings[0].getMessage()
    assert warnings[0].name == "bot.agenda.sources"  # the logger alerts go from


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_parse_past_the_timeout_is_killed_and_the_last_good_copy_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.agenda.sources")
    path = tmp_path / "agenda.ics"
    path.write_bytes(ics(event("a@t", "20261201T100000Z", "Webinaire Grist")))
    parser = ProcessParser()
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = service(storage, http, path, parser=parser)
        await svc.refresh()
        assert [s.title for s in svc.agenda] == ["Webinaire Grist"]

        parser.limits = ParserLimits(timeout=3)
        path.write_bytes(ics(ENDLESS))
        refresh = asyncio.create_task(svc.refresh())
        await eventually(lambda: bool(parser.pids()))
        (pid,) = parser.pids()
        await refresh
        assert [s.title for s in svc.agenda] == ["Webinaire Grist"]  # unchanged
        await eventually(lambda: gone(pid))  # killed, not left running
        await svc.refresh()  # the same again: no second alert
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        message = errors[0].getMessage()
        assert "agenda.ics failed" in message and "agenda.parse_timeout (3 s)" in message
        assert "keeping its last good copy" in message

        parser.limits = ParserLimits()
        path.write_bytes(ics(event("b@t", "20261202T100000Z", "Atelier Superset")))
        await svc.refresh()  # a new process
        assert [s.title for s in svc.agenda] == ["Atelier Superset"]
    await storage.close()
    parser.close()


def allocate_past_the_limit(_: None) -> int:
    return len(bytearray(1024 * MIB))


def pid_of(_: None) -> int:
    return os.getpid()


async def test_a_job_past_the_memory_limit_ends_its_process() -> None:
    parser = ProcessParser(ParserLimits(memory=256 * MIB))
    try:
        first = await parser.run(pid_of, None)
        with pytest.raises(ParserLimit, match=r"agenda.parse_memory \(256 MiB\)"):
            await parser.run(allocate_past_the_limit, None)
        assert not parser.running
        await eventually(lambda: gone(first))
        assert await parser.run(pid_of, None) != first  # the next job: a new process
    finally:
        parser.close()


class GatedDiff(ThreadParser):
    """Diffs wait until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.diffs = 0

    async def diff(self, job: DiffJob) -> Diffed:
        self.diffs += 1
        self.entered.set()
        await self.gate.wait()
        return await super().diff(job)


async def test_an_edit_during_a_refresh_diff_is_answered_at_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "agenda.ics"
    path.write_bytes(ics(event("a@t", "20261201T100000Z", "Webinaire Grist")))
    storage = await Storage.open(tmp_path / "db.sqlite")
    parser = GatedDiff()
    async with aiohttp.ClientSession() as http:
        svc = service(storage, http, path, parser=parser)
        await svc.start()
        (grist,) = svc.agenda
        path.write_bytes(
            ics(
                event("a@t", "20261201T100000Z", "Webinaire Grist"),
                event("b@t", "20261202T100000Z", "Atelier Superset"),
            )
        )
        refresh = asyncio.create_task(svc.refresh())
        await parser.entered.wait()
        # The diff is still running: the edit does not wait for it.
        edited = await asyncio.wait_for(svc.modify(grist.sid, {"location": "Salle 9"}, MOD), 2)
        assert edited.location == "Salle 9" and not refresh.done()
        parser.gate.set()
        await refresh
        assert parser.diffs == 2  # diffed again with the edit
        assert {s.title: s.location for s in svc.agenda} == {
            "Webinaire Grist": "Salle 9",
            "Atelier Superset": "",
        }
        changes = await storage.agenda.changes_since(0)
        assert [c.kind for c in changes] == ["relocated"]  # the edit's, once
        restarted = service(storage, http, path, parser=ThreadParser())
        await restarted.start()
        assert {s.title: s.location for s in restarted.agenda} == {
            "Webinaire Grist": "Salle 9",
            "Atelier Superset": "",
        }
    await storage.close()
