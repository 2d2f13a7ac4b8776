"""Agenda sources served by the test itself on loopback: 200, 304, 500, garbage, restart."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from bot.agenda.model import Agenda, Session
from bot.agenda.packed import pack, unpack
from bot.agenda.sources import AgendaService
from bot.agenda.worker import Parsed, ParseJob, Parser, ProcessParser, ThreadParser
from bot.db.storage import Storage
from tests.fakes import FakeClock
from tests.helpers import eventually, loopback_http

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def calendar(title: str) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\n"
        "UID:a@t\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261201T100000Z\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{title}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


class Feed:
    """What the loopback server answers, and what it was asked."""

    def __init__(self) -> None:
        self.status = 200
        self.body = calendar("Webinaire Grist")
        self.etag = '"v1"'
        self.requests: list[dict[str, str]] = []
        # Statuses to answer before `status`, one per request (flaky server).
        self.first: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.first:
            return web.Response(status=self.first.pop(0), text="busy")
        if self.status == 200 and request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304)
        return web.Response(status=self.status, body=self.body, headers={"ETag": self.etag})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Feed, str]]:
    feed = Feed()
    async with loopback_http({"/agenda.ics": feed.handle, "/programme": feed.handle}) as base:
        yield feed, f"{base}/agenda.ics"


async def service(
    storage: Storage, http: aiohttp.ClientSession, *sources: str, retry_delays=(0.0, 0.0)
) -> AgendaService:
    return AgendaService(
        list(sources),
        storage,
        http,
        ZoneInfo("Europe/Paris"),
        timedelta(days=366),
        FakeClock(NOW),
        retry_delays=retry_delays,
    )


def titles(svc: AgendaService) -> list[str]:
    return [s.title for s in svc.agenda]


async def test_remote_calendar_304_500_garbage_and_restart(
    served: tuple[Feed, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed, url = served
    caplog.set_level(logging.INFO, logger="bot.agenda.sources")
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = await service(storage, http, url)
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]

        await svc.refresh()  # conditional GET: unchanged
        assert feed.requests[-1].get("If-None-Match") == '"v1"'
        assert titles(svc) == ["Webinaire Grist"]

        feed.status = 500
        await svc.refresh()
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]  # last good copy kept
        failures = [r for r in caplog.records if "failed: HTTP 500" in r.getMessage()]
        assert len(failures) == 1  # reported once, not at every refresh
        assert failures[0].levelno == logging.WARNING

        feed.status, feed.body, feed.etag = 200, b"<html>oops</html>", '"broken"'
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]

        feed.body, feed.etag = calendar("Atelier Superset"), '"v2"'
        await svc.refresh()
        assert titles(svc) == ["Atelier Superset"]
        assert any("readable again" in r.getMessage() for r in caplog.records)

        # A restart while the source is down starts from the saved copy.
        feed.status = 503
        restarted = await service(storage, http, url)
        await restarted.start()
        await restarted.refresh()
        assert titles(restarted) == ["Atelier Superset"]
    await storage.close()


async def test_unreachable_and_missing_sources_do_not_break_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.ics"
    good.write_bytes(calendar("Café BlueHats"))
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = await service(
            storage, http, "http://127.0.0.1:9/none.ics", str(tmp_path / "missing.ics"), str(good)
        )
        await svc.refresh()
    await storage.close()
    assert titles(svc) == ["Café BlueHats"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "http://127.0.0.1:9/none.ics failed: unreachable" in messages
    assert "missing.ics failed: cannot read file" in messages


async def test_flaky_server_retried_within_one_refresh_404_not_retried(
    served: tuple[Feed, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed, url = served
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = await service(storage, http, url)
        feed.first = [503, 502]  # two failures, then the calendar
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]
        assert len(feed.requests) == 3
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

        feed.requests.clear()
        feed.first = [404]
        await svc.refresh()
        assert len(feed.requests) == 1  # a 404 will not pass by retrying
        assert titles(svc) == ["Webinaire Grist"]
        assert any("failed: HTTP 404" in r.getMessage() for r in caplog.records)
    await storage.close()


async def test_start_uses_saved_copies_without_network(
    served: tuple[Feed, str], tmp_path: Path
) -> None:
    feed, url = served
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        first = await service(storage, http, url)
        await first.start()
        assert titles(first) == []  # never fetched: nothing yet, and no waiting
        assert feed.requests == []
        await first.refresh()
        restarted = await service(storage, http, url)
        await restarted.start()
        assert titles(restarted) == ["Webinaire Grist"]
        assert len(feed.requests) == 1  # only the refresh went to the network
    await storage.close()


PROGRAMME = """
events:
  - title: Journée BlueHats Grist
    place: Paris
    dates: 2026-12-01
    sessions:
      - time: 11h-12h
        title: Webinaire Grist
      - time: 14h-15h
        title: Atelier Superset
        room: Salle B
"""


async def test_yaml_programme_by_url_merged_with_calendar(
    served: tuple[Feed, str], tmp_path: Path
) -> None:
    """A YAML programme (no extension: recognised by content) merges with an .ics;
    the session both announce (11:00 Paris = 10:00 UTC, same title) is listed once."""
    feed, url = served
    programme_url = url.replace("/agenda.ics", "/programme")
    yaml_feed_body = PROGRAMME.encode()
    storage = await Storage.open(tmp_path / "db.sqlite")
    local = tmp_path / "programme.yaml"
    local.write_bytes(yaml_feed_body)
    async with aiohttp.ClientSession() as http:
        svc = await service(storage, http, url, str(local))
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist", "Atelier Superset"]
        (superset,) = [s for s in svc.agenda if s.title == "Atelier Superset"]
        assert superset.location == "Salle B, Paris"
        assert superset.event == "Journée BlueHats Grist"

        feed.body, feed.etag = yaml_feed_body, '"yaml"'
        by_url = await service(storage, http, programme_url)
        await by_url.refresh()
        assert titles(by_url) == ["Webinaire Grist", "Atelier Superset"]
    await storage.close()


async def test_broken_yaml_keeps_last_good_copy_and_says_where(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "programme.yaml"
    local.write_text(PROGRAMME)
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = await service(storage, http, str(local))
        await svc.refresh()
        local.write_text(PROGRAMME.replace("14h-15h", "15h-14h"))
        await svc.refresh()
    await storage.close()
    assert titles(svc) == ["Webinaire Grist", "Atelier Superset"]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "programme.yaml failed" in warning.getMessage()
    assert "events.0.sessions.1" in warning.getMessage()


async def test_unchanged_recurring_calendar_keeps_expanding(tmp_path: Path) -> None:
    """A file that never changes still yields next weeks' occurrences as time passes."""
    weekly = tmp_path / "weekly.ics"
    weekly.write_bytes(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\n"
        b"UID:w@t\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261124T100000Z\r\n"
        b"DURATION:PT1H\r\nRRULE:FREQ=WEEKLY\r\nSUMMARY:Cafe BlueHats\r\nEND:VEVENT\r\n"
        b"END:VCALENDAR\r\n"
    )
    clock = FakeClock(NOW)
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = AgendaService(
            [str(weekly)], storage, http, ZoneInfo("Europe/Paris"), timedelta(days=14), clock
        )
        await svc.start()
        assert len(svc.agenda.between(NOW)) == 2
        clock.value = NOW + timedelta(days=60)
        await svc.refresh()
    await storage.close()
    upcoming = svc.agenda.between(clock.value)
    assert len(upcoming) == 2
    assert upcoming[0].start > NOW + timedelta(days=59)


# -- start-up from stored sessions, the parser process --------------------------------

RICH = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n"
    "BEGIN:VEVENT\r\nUID:grist@t\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Paris:20261201T110000\r\nDTEND;TZID=Europe/Paris:20261201T120000\r\n"
    "SUMMARY:Webinaire Grist &#39;tableurs&#39;\r\n"
    "DESCRIPTION:<p>Première ligne</p><p>Deuxième « ligne »</p>\r\n"
    "LOCATION:Salle Émile-Zola\\, Paris\r\nURL:https://example.org/grist\r\n"
    "CATEGORIES:données,tableur\r\n"
    'ATTENDEE;CN="Camille Dupont":mailto:c@example.org\r\n'
    "ATTENDEE;CN=Dominique:mailto:d@example.org\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:day@t\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;VALUE=DATE:20261203\r\nSUMMARY:Journée BlueHats\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:off@t\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261204T130000Z\r\n"
    "DURATION:PT1H\r\nSUMMARY:Atelier annulé\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:weekly@t\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART:20261124T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\n"
    "SUMMARY:Café BlueHats\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
).encode()
MOD = "@mod:example.org"


def everything(agenda: Agenda) -> list[tuple[object, ...]]:
    """Every field of every session, listed or cancelled (ids and search keys included)."""
    return [astuple(s) for s in [*agenda, *agenda.cancelled]]


class CountingParser(ThreadParser):
    def __init__(self) -> None:
        self.parsed: list[str] = []

    async def parse(self, job: ParseJob) -> Parsed:
        self.parsed.append(job.source)
        return await super().parse(job)


def rich_service(
    storage: Storage, http: aiohttp.ClientSession, *sources: str, parser: Parser | None = None
) -> AgendaService:
    return AgendaService(
        list(sources),
        storage,
        http,
        ZoneInfo("Europe/Paris"),
        timedelta(days=366),
        FakeClock(NOW),
        parser=parser,
    )


async def edited(svc: AgendaService) -> None:
    """One edit of each kind."""
    grist = next(s for s in svc.agenda if s.title.startswith("Webinaire Grist"))
    cafe = next(s for s in svc.agenda if s.title == "Café BlueHats")
    added = Session(
        "Atelier Superset",
        datetime(2026, 12, 2, 13, 0, tzinfo=UTC),
        datetime(2026, 12, 2, 14, 0, tzinfo=UTC),
        location="En ligne",
        speakers=("Eve",),
    )
    await svc.add(added, MOD)
    await svc.modify(grist.sid, {"location": "Salle 2", "speakers": ["Frank"]}, MOD)
    await svc.cancel(cafe.sid, MOD)


def test_packed_sessions_round_trip_every_field() -> None:
    paris = ZoneInfo("Europe/Paris")
    sessions = [
        Session(
            'Titre "entre guillemets"\\ et\nretour',
            datetime(2026, 12, 1, 11, 0, tzinfo=paris),
            datetime(2026, 12, 1, 12, 30, 15, 250, tzinfo=paris),
            description="Ligne 1\nLigne 2 — « é » 🧢 \ud83d",
            location="Salle Émile-Zola, Paris",
            url="https://example.org/x?a=1&b=2",
            speakers=("Camille", "Dominique"),
            categories=("grist",),
            event="Journée BlueHats",
            source="agenda.ics",
            uid="uid@t",
            cancelled=True,
        ),
        Session(
            "Journée",
            datetime(2026, 12, 3, tzinfo=UTC),
            datetime(2026, 12, 4, tzinfo=UTC),
            all_day=True,
            sid="abc123",
            search_key="clé donnée",
        ),
    ]
    back = unpack(pack(sessions))
    assert [astuple(s) for s in back] == [astuple(s) for s in sessions]
    assert [(s.sid, s.search_key, s.uid) for s in back] == [
        (s.sid, s.search_key, s.uid) for s in sessions
    ]
    assert all(s.start.utcoffset() is not None and s.end.tzinfo for s in back)
    assert back[0].start.utcoffset() == timedelta(hours=1)
    assert unpack(pack([])) == []


async def test_restart_serves_the_same_agenda_without_parsing(tmp_path: Path) -> None:
    ics = tmp_path / "agenda.ics"
    ics.write_bytes(RICH)
    programme = tmp_path / "programme.yaml"
    programme.write_text(PROGRAMME.replace("dates: 2026-12-01", "dates: 2026-12-05"))
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = rich_service(storage, http, str(ics), str(programme))
        await svc.start()
        await svc.refresh()
        await edited(svc)
        before = everything(svc.agenda)
        assert len(svc.agenda) == 8 and len(svc.agenda.cancelled) == 2
        assert any(s.all_day for s in svc.agenda)
        assert any(s.event == "Journée BlueHats Grist" for s in svc.agenda)

        parser = CountingParser()
        restarted = rich_service(storage, http, str(ics), str(programme), parser=parser)
        await restarted.start()
        assert everything(restarted.agenda) == before
        assert parser.parsed == []
        await restarted.refresh()  # same files, parsed recently: nothing to parse
        assert parser.parsed == []
        assert everything(restarted.agenda) == before

        # What changed while the bot was down is found against the agenda it served.
        known = {c.key for c in await storage.agenda.changes_since(0)}
        ics.write_bytes(
            RICH.replace(b"20261204T130000Z", b"20261204T150000Z").replace(
                b"Europe/Paris:20261201T110000", b"Europe/Paris:20261201T140000"
            )
        )
        await restarted.refresh()
        assert parser.parsed == [str(ics)]
        new = [c for c in await storage.agenda.changes_since(0) if c.key not in known]
    await storage.close()
    assert [(c.kind, c.payload["before"]["title"]) for c in new] == [  # type: ignore[index]
        ("moved", "Webinaire Grist 'tableurs'")
    ]


async def test_database_without_stored_sessions_parses_saved_copies_once(
    served: tuple[Feed, str], tmp_path: Path
) -> None:
    feed, url = served
    feed.body = RICH
    db = tmp_path / "db.sqlite"
    storage = await Storage.open(db)
    async with aiohttp.ClientSession() as http:
        svc = rich_service(storage, http, url)
        await svc.refresh()
        before = everything(svc.agenda)
        await storage.close()
        # As a database written before sessions were stored.
        with sqlite3.connect(db) as raw:
            raw.execute("DELETE FROM agenda_sessions")
        storage = await Storage.open(db)
        parser = CountingParser()
        upgraded = rich_service(storage, http, url, parser=parser)
        await upgraded.start()
        assert parser.parsed == [url]  # the saved copy, not the network
        assert len(feed.requests) == 1
        assert everything(upgraded.agenda) == before

        again = CountingParser()
        await rich_service(storage, http, url, parser=again).start()
        assert again.parsed == []

        # Stored under other settings (here the horizon): parsed once more.
        other = CountingParser()
        shorter = AgendaService(
            [url],
            storage,
            http,
            ZoneInfo("Europe/Paris"),
            timedelta(days=30),
            FakeClock(NOW),
            parser=other,
        )
        await shorter.start()
        assert other.parsed == [url]
        assert everything(shorter.agenda) == before
    await storage.close()


async def test_refresh_in_the_parser_process_equals_the_thread(tmp_path: Path) -> None:
    """Same agenda, same changes, whether the bot parses and diffs in a process or not."""
    ics = tmp_path / "agenda.ics"
    ics.write_bytes(RICH)
    results = []
    for name, parser in (("thread", ThreadParser()), ("process", ProcessParser())):
        storage = await Storage.open(tmp_path / f"{name}.sqlite")
        async with aiohttp.ClientSession() as http:
            svc = rich_service(storage, http, str(ics), parser=parser)
            await svc.start()
            await edited(svc)
            ics.write_bytes(
                RICH.replace(b"UID:off@t\r\nDTSTAMP", b"UID:x@t\r\nDTSTAMP").replace(
                    b"20261124T100000Z", b"20261124T110000Z"
                )
            )
            await svc.refresh()
            ics.write_bytes(RICH)
            changes = await storage.agenda.changes_since(0)
        await storage.close()
        parser.close()
        results.append(
            (everything(svc.agenda), [(c.key, c.kind, c.sid, c.payload) for c in changes])
        )
    assert results[0] == results[1]
    agenda, changes = results[1]
    assert len(agenda) == 8  # 7 listed, 1 cancelled by its source
    assert sorted(kind for _, kind, _, _ in changes) == [
        "cancelled",
        "moved",
        "moved",
        "moved",
        "relocated",
    ]


async def test_a_source_failing_in_the_parser_process_keeps_its_last_good_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.agenda.sources")
    ics = tmp_path / "agenda.ics"
    ics.write_bytes(calendar("Webinaire Grist"))
    parser = ProcessParser()
    storage = await Storage.open(tmp_path / "db.sqlite")
    async with aiohttp.ClientSession() as http:
        svc = rich_service(storage, http, str(ics), parser=parser)
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]
        assert not parser.running  # the process ends with the refresh

        ics.write_bytes(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n")
        await svc.refresh()
        await svc.refresh()
        assert titles(svc) == ["Webinaire Grist"]
        failures = [r for r in caplog.records if "agenda.ics failed" in r.getMessage()]
        assert len(failures) == 1 and "not an iCalendar file" in failures[0].getMessage()

        # The process killed in the middle (out of memory…): same, and the next refresh
        # starts a new one.
        ics.write_bytes(calendar("Atelier Superset"))
        refresh = asyncio.create_task(svc.refresh())
        await eventually(lambda: parser.running and bool(parser.pids()))
        for pid in parser.pids():
            os.kill(pid, signal.SIGKILL)
        await refresh
        assert titles(svc) == ["Webinaire Grist"]
        assert any("parser process stopped" in r.getMessage() for r in caplog.records)
        await svc.refresh()
        assert titles(svc) == ["Atelier Superset"]
        restarted = rich_service(storage, http, str(ics), parser=CountingParser())
        await restarted.start()
        assert titles(restarted) == ["Atelier Superset"]
    await storage.close()
    parser.close()
