"""Agenda sources served by the test itself on loopback: 200, 304, 500, garbage, restart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from bot.agenda.sources import AgendaService
from bot.db.storage import Storage
from tests.fakes import FakeClock
from tests.helpers import loopback_http

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
