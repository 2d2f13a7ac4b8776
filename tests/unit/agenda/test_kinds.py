"""Source kinds: declared or guessed as before, and a JSON programme read as JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from bot.agenda import kinds
from bot.agenda.sources import AgendaService
from bot.agenda.worker import parse_source
from bot.config import AgendaSource
from bot.db.storage import Storage
from bot.fetch import SourceError
from tests.fakes import FakeClock
from tests.helpers import loopback_http

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
PROGRAMME = """
events:
  - title: Journée BlueHats Grist
    dates: 2026-12-01
    sessions:
      - {time: 11h-12h, title: Webinaire Grist}
"""
CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\nUID:a@t\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART:20261201T100000Z\r\nDURATION:PT1H\r\n"
    b"SUMMARY:Webinaire Grist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)

# As Python's json.dumps writes it by default (every non-ASCII character as a \u
# escape, an emoji as two), tab-indented, with PHP's escaped slashes.
EXPORT = (
    json.dumps(
        {
            "events": [
                {
                    "title": "Journée BlueHats 🌞",
                    "link": "https://bluehats.example/journee",
                    "dates": "2026-12-01",
                    "sessions": [{"time": "11h-12h", "title": "Atelier Grist 😀"}],
                }
            ]
        },
        indent="\t",
    )
    .replace("/", "\\/")
    .encode()
)


def parse(body: bytes, source: str, kind: str | None = None) -> list[tuple[str, str, str]]:
    sessions = parse_source(
        body,
        source,
        kind=kind,
        tz=PARIS,
        window_start=NOW,
        window_end=NOW + timedelta(days=30),
    )
    return [(s.title, s.event, s.url) for s in sessions]


def test_a_json_export_is_read_as_json_not_as_yaml() -> None:
    assert rb"\ud83d\ude00" in EXPORT and b"\n\t" in EXPORT and rb"https:\/\/" in EXPORT
    expected = [("Atelier Grist 😀", "Journée BlueHats 🌞", "https://bluehats.example/journee")]
    assert parse(EXPORT, "/srv/agenda/export.json") == expected  # by its name
    assert parse(EXPORT, "https://events.example/export", "json") == expected  # declared
    # Read as YAML (what a .json file was before kinds), it is refused.
    with pytest.raises(SourceError, match=r"not valid YAML at line 2.*kind: json"):
        parse(EXPORT, "https://events.example/export")
    # Without tabs, PyYAML leaves each emoji as two lone halves: refused, with a hint.
    flat = EXPORT.replace(b"\n", b"").replace(b"\t", b"")
    with pytest.raises(SourceError, match=r"^events\.0\.title: .*kind: json"):
        parse(flat, "https://events.example/export")
    assert parse(flat, "https://events.example/export", "json") == expected


def test_json_problems_say_where() -> None:
    with pytest.raises(SourceError, match="not valid JSON at line 2, column 1"):
        parse(b'{"events": [\n}', "programme.json")
    half = EXPORT.replace(rb"\ud83d\ude00", rb"\ud83d")
    with pytest.raises(SourceError, match=r"^events\.0\.sessions\.0\.title: a \\u escape of half"):
        parse(half, "programme.json")
    # The programme's own checks, with the same dotted paths as in YAML.
    with pytest.raises(SourceError, match=r"events\.0\.sessions\.0: end 11:00 is not after"):
        parse(EXPORT.replace(b"11h-12h", b"12h-11h"), "programme.json")


@pytest.mark.parametrize(
    ("source", "body", "kind"),
    [
        # By the name's extension first, whatever the content…
        ("agenda.ics", PROGRAMME.encode(), "ics"),
        ("https://x.example/cal.ICAL?token=1", b"", "ics"),
        ("https://x.example/programme.yml", CALENDAR, "programme"),
        ("/srv/programme.yaml", b"", "programme"),
        ("/srv/export.json", b"", "json"),
        # …else by the content: iCalendar (after a BOM or blanks), else a programme.
        ("https://x.example/export", b"\xef\xbb\xbf\r\n" + CALENDAR, "ics"),
        ("https://x.example/export", PROGRAMME.encode(), "programme"),
        ("https://x.example/export", b'{"events": []}', "programme"),  # as before kinds
    ],
)
def test_a_bare_source_keeps_the_guess(source: str, body: bytes, kind: str) -> None:
    assert kinds.of(source, body).name == kind


def test_a_declared_kind_wins_over_the_name() -> None:
    assert parse(PROGRAMME.encode(), "https://x.example/agenda.ics", "programme")
    with pytest.raises(SourceError, match="not an iCalendar file"):
        parse(PROGRAMME.encode(), "programme.yaml", "ics")


async def test_the_service_reads_declared_kinds_and_rereads_when_one_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.agenda.sources")
    requests: list[str] = []

    async def export(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.Response(body=EXPORT, content_type="application/json")

    storage = await Storage.open(tmp_path / "db.sqlite")
    async with (
        loopback_http({"/export": export}) as base,
        aiohttp.ClientSession() as http,
    ):
        url = f"{base}/export"

        def service(*sources: str | AgendaSource) -> AgendaService:
            return AgendaService(
                list(sources), storage, http, PARIS, timedelta(days=366), FakeClock(NOW)
            )

        bare = service(url)
        await bare.refresh()  # guessed a programme in YAML: refused, with the hint
        assert list(bare.agenda) == []
        assert any("kind: json" in r.getMessage() for r in caplog.records)

        declared = service(AgendaSource(url=url, kind="json"))
        await declared.refresh()
        assert [s.title for s in declared.agenda] == ["Atelier Grist 😀"]

        # A restart serves what was read under the same kind, without the network…
        restarted = service(AgendaSource(url=url, kind="json"))
        await restarted.start()
        assert [s.title for s in restarted.agenda] == ["Atelier Grist 😀"]
        assert len(requests) == 2
        # …but never sessions read under another kind: the saved copy is read again.
        other = service(AgendaSource(url=url, kind="ics"))
        await other.start()
        assert list(other.agenda) == []
        assert any("saved copy" in r.getMessage() for r in caplog.records)
        assert len(requests) == 2
    await storage.close()
