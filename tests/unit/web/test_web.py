"""The public agenda over HTTP (aiohttp test server, real storage): pages, calendars, caching.

Browser rendering and accessibility are in tests/e2e/test_e2e_web_browser.py; the
feeds read by a second parser (ical.js) and the personal feed with a real
Synapse in tests/e2e/test_e2e_web_*.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from bot.agenda.changes import Change, ChangeKind
from bot.agenda.edits import change_record
from bot.agenda.model import Agenda, Session
from bot.agenda.published import PublishedLedger
from bot.config import WebConfig
from bot.db.storage import Storage
from bot.render import Renderer
from bot.web.server import make_app
from bot.web.site import SITE, Site
from tests.fakes import FakeClock, World, grist, make_config

PARIS = ZoneInfo("Europe/Paris")
# Near the wall clock: programme changes are dated by it when stored.
NOW = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)


def at(days: int, hour: int, minute: int = 0) -> datetime:
    """A Paris wall time `days` after today's."""
    day = NOW.astimezone(PARIS).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def programme() -> list[Session]:
    return [
        Session(
            title="Webinaire Superset <script>alert(1)</script>",
            start=at(1, 14),
            end=at(1, 15),
            location="En ligne",
            url="https://webinaire.numerique.gouv.fr/superset",
            speakers=("Ana Lopez",),
            description="Tableaux de bord.\n\nDeuxième paragraphe.",
        ),
        Session(title="Atelier Grist", start=at(1, 10), end=at(1, 12), location="Paris"),
        Session(title="Café des Écoles", start=at(3, 9), end=at(3, 10)),
        Session(title="Journée BlueHats", start=at(20, 0), end=at(21, 0), all_day=True),
    ]


@dataclass
class Web:
    client: TestClient
    clock: FakeClock
    storage: Storage
    agenda: Agenda

    async def get(self, path: str, **headers: str) -> tuple[int, CIMultiDict[str], str]:
        response = await self.client.get(path, headers=headers, allow_redirects=False)
        return response.status, response.headers.copy(), await response.text()

    async def calendar(self, path: str = "/agenda.ics") -> icalendar.Calendar:
        status, headers, text = await self.get(path)
        assert status == 200, text
        assert headers["Content-Type"].startswith("text/calendar")
        return icalendar.Calendar.from_ical(text)


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Web]:
    clock = FakeClock(NOW)
    config = WebConfig(cancelled_kept=timedelta(days=7))
    storage = await Storage.open(tmp_path / "db.sqlite")
    state = Web(None, clock, storage, Agenda(programme()))  # type: ignore[arg-type]
    site = Site(
        agenda=lambda: state.agenda,
        ledger=PublishedLedger(storage, kept=config.cancelled_kept, now=clock),
        personal=storage.personal,
        renderer=Renderer("fr", PARIS),
        config=config,
        now=clock,
    )
    async with TestClient(TestServer(make_app(site))) as client:
        state.client = client
        yield state
    await storage.close()


def ids(html: str) -> list[str]:
    return re.findall(r'href="/seance/([a-z0-9]+)"', html)


def events(cal: icalendar.Calendar) -> dict[str, icalendar.Event]:
    return {str(e["SUMMARY"]): e for e in cal.walk("VEVENT")}


async def test_page_lists_sessions_by_day_in_french_with_escaped_titles(web: Web) -> None:
    status, headers, html = await web.get("/")
    assert status == 200
    assert '<html lang="fr">' in html
    titles = re.findall(r'<h3[^>]*><a href="/seance/[a-z0-9]+">([^<]+)</a>', html)
    assert titles == [
        "Atelier Grist",
        "Webinaire Superset &lt;script&gt;alert(1)&lt;/script&gt;",
        "Café des Écoles",
        "Journée BlueHats",
    ]
    assert "<script>" not in html
    tomorrow = at(1, 12).astimezone(PARIS)
    assert re.search(rf"<h2[^>]*>\w+ {tomorrow.day}(er)? ", html), "a French day heading"
    assert "10h00 – 12h00" in html
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "script-src" not in headers["Content-Security-Policy"]


async def test_page_filters_like_the_command(web: Web) -> None:
    _, _, html = await web.get("/?periode=demain&q=SUPERSET")
    sessions = web.agenda.between(at(1, 0), at(2, 0), ["superset"])
    assert ids(html) == [s.sid for s in sessions]
    _, _, html = await web.get("/?q=cafe+ecoles")  # accents and case do not matter
    assert len(ids(html)) == 1 and "Café des Écoles" in html
    # A period word in q filters by period, as after !agenda.
    _, _, html = await web.get("/?q=demain")
    assert len(ids(html)) == 2
    # The calendar link carries the same filter (relative: no web.public_url here).
    _, _, html = await web.get("/?periode=semaine&q=grist")
    assert 'href="/agenda.ics?periode=semaine&amp;q=grist"' in html


async def test_bad_input_gets_french_pages(web: Web) -> None:
    status, _, html = await web.get("/?periode=hier")
    assert status == 400 and "Période inconnue" in html
    status, _, html = await web.get("/seance/zzzzzz")
    assert status == 404 and "Aucune séance" in html
    status, headers, html = await web.get("/nulle-part")
    assert status == 404 and "Page introuvable" in html
    assert "Content-Security-Policy" in headers
    status, _, html = await web.get("/?q=" + "a" * 2000)
    assert status == 414 and "trop longue" in html


async def test_session_page_and_its_calendar(web: Web) -> None:
    superset = web.agenda.next(NOW, ["superset"])
    assert superset is not None
    status, _, html = await web.get(f"/seance/{superset.sid}")
    assert status == 200
    assert "Ana Lopez" in html and "En ligne" in html
    assert 'href="https://webinaire.numerique.gouv.fr/superset"' in html
    assert "<p>Deuxième paragraphe.</p>" in html
    assert f'href="/seance/{superset.sid}.ics"' in html
    assert "Ajouter à mon agenda" in html
    cal = await web.calendar(f"/seance/{superset.sid}.ics")
    (event,) = cal.walk("VEVENT")
    assert event["UID"] == f"{superset.sid}@bluehats-bot"
    assert event.decoded("DTSTART") == superset.start.astimezone(PARIS)


async def test_feed_is_a_stable_subscribable_calendar(web: Web) -> None:
    status, headers, text = await web.get("/agenda.ics")
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=900"
    cal = icalendar.Calendar.from_ical(text)
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]
    found = recurring_ical_events.of(cal).between(NOW - timedelta(days=1), NOW + timedelta(days=60))
    assert sorted(str(e["SUMMARY"]) for e in found) == sorted(s.title for s in web.agenda)
    # Polled again with its validator: 304, nothing re-sent.
    status, again, body = await web.get("/agenda.ics", **{"If-None-Match": headers["ETag"]})
    assert (status, body) == (304, "")
    assert again["ETag"] == headers["ETag"]
    status, _, _ = await web.get("/agenda.ics", **{"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    # HEAD: the headers, no body.
    head = await web.client.head("/agenda.ics")
    assert head.status == 200 and head.headers["ETag"] == headers["ETag"]
    assert await head.read() == b""
    # An hour later, a new agenda object with the same sessions: the same bytes.
    web.clock.value = NOW + timedelta(hours=1)
    web.agenda = Agenda(programme())
    _, later, text2 = await web.get("/agenda.ics")
    assert text2 == text and later["ETag"] == headers["ETag"]
    # Filtered like !agenda.
    cal = await web.calendar("/agenda.ics?periode=demain&q=grist")
    assert list(events(cal)) == ["Atelier Grist"]


async def move_grist(web: Web) -> tuple[Session, Session]:
    """The source moves Grist by an hour (a new id) and drops the café: (before, after)."""
    grist = web.agenda.next(NOW, ["grist"])
    cafe = web.agenda.next(NOW, ["cafe"])
    assert grist is not None and cafe is not None
    moved = replace(
        grist, start=grist.start + timedelta(hours=1), end=grist.end + timedelta(hours=1), sid=""
    )
    assert moved.sid != grist.sid
    change = Change(ChangeKind.MOVED, grist, moved)
    await web.storage.agenda.commit([], [change_record(change)])
    web.clock.value = NOW + timedelta(minutes=5)
    web.agenda = Agenda(
        [moved if s.sid == grist.sid else s for s in programme() if s.sid != cafe.sid]
    )
    return grist, moved


async def test_a_moved_session_keeps_its_uid_and_a_cancelled_one_is_struck_then_goes(
    web: Web,
) -> None:
    before = events(await web.calendar())
    grist, moved = await move_grist(web)
    after = events(await web.calendar())
    old, new = before["Atelier Grist"], after["Atelier Grist"]
    assert new["UID"] == old["UID"]
    assert int(new.get("SEQUENCE", 0)) == int(old.get("SEQUENCE", 0)) + 1
    assert new.decoded("DTSTART") == moved.start.astimezone(PARIS)
    assert new.decoded("DTSTAMP") > old.decoded("DTSTAMP")
    unchanged = "Journée BlueHats"
    assert after[unchanged].to_ical() == before[unchanged].to_ical()
    assert after["Café des Écoles"]["STATUS"] == "CANCELLED"
    assert after["Café des Écoles"]["UID"] == before["Café des Écoles"]["UID"]
    # The old address of the moved session leads to its new one.
    status, headers, _ = await web.get(f"/seance/{grist.sid}")
    assert status == 301 and headers["Location"].endswith(f"/seance/{moved.sid}")
    # The page says the café was cancelled; a week later the feed forgets it.
    _, _, html = await web.get("/")
    assert "<del>Café des Écoles</del>" in html
    web.clock.value = NOW + timedelta(days=7, minutes=6)
    assert "Café des Écoles" not in events(await web.calendar())


async def test_a_forged_host_header_reaches_no_link_nor_redirect(web: Web) -> None:
    """Anyone can send any Host: links and redirects never take it. Without
    web.public_url they are relative (and no webcal:// link, which would need an
    absolute address); with it, they all start with it."""
    forged = {"Host": "evil.example"}
    grist, moved = await move_grist(web)
    _, _, page = await web.get("/?q=superset", **forged)
    (sid,) = ids(page)
    _, _, session = await web.get(f"/seance/{sid}", **forged)
    status, headers, _ = await web.get(f"/seance/{grist.sid}", **forged)
    assert status == 301 and headers["Location"] == f"/seance/{moved.sid}"
    for html in page, session:
        assert "evil.example" not in html and "webcal:" not in html
    assert 'href="/agenda.ics?q=superset"' in page
    assert f'href="/seance/{sid}.ics"' in session

    # The same site restarted with web.public_url.
    site = web.client.server.app[SITE]
    site.config = WebConfig(public_url="https://agenda.example.gouv.fr")
    site.cache.clear()
    _, _, page = await web.get("/?q=superset", **forged)
    _, _, session = await web.get(f"/seance/{sid}", **forged)
    status, headers, _ = await web.get(f"/seance/{grist.sid}", **forged)
    assert status == 301
    assert headers["Location"] == f"https://agenda.example.gouv.fr/seance/{moved.sid}"
    for html in page, session:
        assert "evil.example" not in html
        assert 'href="webcal://agenda.example.gouv.fr/agenda.ics' in html
    assert 'href="https://agenda.example.gouv.fr/agenda.ics?q=superset"' in page
    assert f'href="https://agenda.example.gouv.fr/seance/{sid}.ics"' in session


async def test_answers_link_the_same_agenda_on_the_web(world: World) -> None:
    assert "🌐" not in await world.say("!agenda grist")  # no public address: no link
    config = make_config(world.storage_path, web={"public_url": "https://agenda.example.gouv.fr/"})
    world.dispatcher.services = replace(world.dispatcher.services, config=config)
    listing = await world.say("!agenda semaine grist")
    assert "🌐 Sur le web, et pour vous abonner dans votre agenda : " in listing
    assert "https://agenda.example.gouv.fr/?periode=semaine&q=grist" in listing
    sid = grist(world)
    detail = await world.say(f"!session {sid}")
    assert f"🌐 Sur le web : https://agenda.example.gouv.fr/seance/{sid}" in detail


async def test_a_restarted_bot_serves_the_same_calendar_bytes(web: Web) -> None:
    _, first, text = await web.get("/agenda.ics")
    web.clock.value = NOW + timedelta(hours=2)
    # A new process: a new ledger over the same database, a new agenda object.
    site = Site(
        agenda=lambda: Agenda(programme()),
        ledger=PublishedLedger(web.storage, kept=timedelta(days=7), now=web.clock),
        personal=web.storage.personal,
        renderer=Renderer("fr", PARIS),
        config=WebConfig(),
        now=web.clock,
    )
    async with TestClient(TestServer(make_app(site))) as client:
        response = await client.get("/agenda.ics", headers={"If-None-Match": first["ETag"]})
        assert response.status == 304
        response = await client.get("/agenda.ics")
        assert await response.text() == text
