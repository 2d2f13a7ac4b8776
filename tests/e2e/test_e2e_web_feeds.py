"""The public calendars of the real bot, beside its answers in a room of a real Synapse.

`!agenda semaine grist` and `/agenda.ics?periode=semaine&q=grist` list the same sessions,
and two independent readers of the feed (icalendar with recurring-ical-events, and
Mozilla's ical.js under Node) see the same events at the same instants. A moderator's
move reaches subscribed calendars as the same UID with a higher SEQUENCE; a member's
attempt changes nothing (the feed still answers 304 to its old ETag).

One bot serves the whole module (its tests read the programme as it is when they run).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest
import pytest_asyncio
import recurring_ical_events
from multidict import CIMultiDict

from bot.app import BotApp
from bot.devserver import DevHomeserver, free_port
from tests.helpers import User, bot_config, paris, running, unique, with_moderators
from tests.js_client import JSCLIENT_DIR, jsclient_problem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PARIS = ZoneInfo("Europe/Paris")
ICAL_JS = JSCLIENT_DIR / "ical.mjs"
WEEK_GRIST = "/agenda.ics?periode=semaine&q=grist"
# Copied from the sample agenda: the recurring session is written in Paris wall time.
VTIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Paris
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def programme(today: date) -> str:
    """From tomorrow on (what "the next 7 days" holds does not depend on the hour): four
    sessions about Grist within the week (one by its description, one weekly, one all
    day), one beyond it, one about something else."""
    weekly = today + timedelta(days=2 - 14)  # its next occurrences: today+2, today+9
    events = [
        ("atelier", "Atelier Grist", f"DTSTART:{utc(paris(today + timedelta(days=1), 14))}",
         f"DTEND:{utc(paris(today + timedelta(days=1), 15, 30))}", ""),
        ("superset", "Webinaire Superset", f"DTSTART:{utc(paris(today + timedelta(days=2), 10))}",
         "DURATION:PT1H", ""),
        ("cafe", "Café BlueHats", f"DTSTART;TZID=Europe/Paris:{weekly:%Y%m%d}T093000",
         f"DTEND;TZID=Europe/Paris:{weekly:%Y%m%d}T100000",
         "RRULE:FREQ=WEEKLY\r\nDESCRIPTION:Questions sur Grist et d'autres logiciels libres."),
        ("revue", "Revue de code", f"DTSTART:{utc(paris(today + timedelta(days=3), 16))}",
         "DURATION:PT45M", "LOCATION:Salle Grist"),
        ("journee", "Journée Grist", f"DTSTART;VALUE=DATE:{today + timedelta(days=5):%Y%m%d}",
         "", ""),
        ("avance", "Grist avancé", f"DTSTART:{utc(paris(today + timedelta(days=12), 14))}",
         "DURATION:PT2H", ""),
    ]  # fmt: skip
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tests//feeds//FR", VTIMEZONE]
    for uid, title, start, end, extra in events:
        lines += ["BEGIN:VEVENT", f"UID:{uid}@test", "DTSTAMP:20260101T000000Z", start]
        lines += [line for line in (end, extra) if line]
        lines += [f"SUMMARY:{title}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


@dataclass
class World:
    url: str
    bot_id: str
    room: str
    moderator: User  # created the room: a creator of a v12 room
    member: User  # power level 0
    today: date
    http: aiohttp.ClientSession

    async def get(self, path: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
        async with self.http.get(f"{self.url}{path}", headers=headers) as response:
            return response.status, response.headers.copy(), await response.read()

    async def feed(self, path: str = WEEK_GRIST) -> bytes:
        status, headers, body = await self.get(path)
        assert status == 200, body
        assert headers["Content-Type"].startswith("text/calendar")
        return body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    synapse: DevHomeserver, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    problem = jsclient_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    tmp = tmp_path_factory.mktemp("web-feeds")
    today = datetime.now(PARIS).date()
    ics = tmp / "agenda.ics"
    ics.write_text(programme(today), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg, bot_id = bot_config(
        synapse,
        tmp / "bot",
        sources=[str(ics)],
        web={"http": f"127.0.0.1:{port}", "public_url": url},
    )
    alice = await User(synapse, unique("alice")).login()
    bob = await User(synapse, unique("bob")).login()
    cfg = with_moderators(cfg, alice.user_id)  # bob, a member, is refused
    try:
        async with running(BotApp(cfg)), aiohttp.ClientSession() as http:
            room = await alice.create_room(invite=[bot_id, bob.user_id], name="BlueHats")
            await alice.wait_joined(room, bot_id)
            await bob.client.join(room)
            await alice.wait_joined(room, bob.user_id)
            yield World(url, bot_id, room, alice, bob, today, http)
    finally:
        await alice.close()
        await bob.close()


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


def listed_sids(answer: str) -> list[str]:
    """The ids of an `!agenda` answer, in its order ("• 14h00 – 15h30 · Title [abc123]")."""
    return re.findall(r"^• .*\[([a-z0-9]+)\]$", answer, re.MULTILINE)


def sid_of(uid: str) -> str:
    return uid.split("@", 1)[0]


def python_reading(data: bytes, today: date) -> list[dict[str, Any]]:
    """icalendar + recurring-ical-events, as a Python calendar client would."""
    calendar = icalendar.Calendar.from_ical(data)
    window = recurring_ical_events.of(calendar).between(today, today + timedelta(days=30))
    found = []
    for event in window:
        start = event["DTSTART"].dt
        found.append(
            {
                "uid": str(event["UID"]),
                "summary": str(event["SUMMARY"]),
                "start": start.isoformat(),
                "start_utc": None if not isinstance(start, datetime) else utc_iso(start),
                "sequence": int(event.get("SEQUENCE", 0)),
                "status": str(event["STATUS"]) if "STATUS" in event else None,
            }
        )
    # Everything the feed holds is in the window: none was lost by the expansion.
    assert len(found) == len(calendar.walk("VEVENT"))
    return sorted(found, key=lambda e: (e["start_utc"] or e["start"], e["uid"]))


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def js_reading(data: bytes) -> dict[str, Any]:
    """Mozilla's ical.js (tests/jsclient/ical.mjs) under Node: a second, independent parser."""
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(ICAL_JS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(data), 30)
    assert proc.returncode == 0, err.decode()
    reading: dict[str, Any] = json.loads(out)
    return reading


def comparable(js_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("uid", "summary", "start", "start_utc", "sequence", "status")
    shown = [{k: e[k] for k in keys} | {"sequence": e["sequence"] or 0} for e in js_events]
    return sorted(shown, key=lambda e: (e["start_utc"] or e["start"], e["uid"]))


async def test_command_and_feed_list_the_same_sessions_read_alike_by_two_parsers(
    world: World,
) -> None:
    answer = body(await world.member.ask(world.room, "!agenda semaine grist", world.bot_id))
    in_room = listed_sids(answer)
    assert len(in_room) == 4, answer

    data = await world.feed()
    python = python_reading(data, world.today)
    assert [sid_of(e["uid"]) for e in python] == in_room
    assert {e["summary"] for e in python} == {
        "Atelier Grist",
        "Café BlueHats",
        "Revue de code",
        "Journée Grist",
    }
    assert all(e["status"] is None for e in python)

    js = await js_reading(data)
    assert js["name"]  # the calendar has a name for the apps' list
    assert comparable(js["events"]) == python
    # Wall times are Paris's, with the offset of that day; the zone is named.
    timed = [e for e in js["events"] if e["start_utc"] is not None]
    assert {e["tzid"] for e in timed} == {"Europe/Paris"}
    atelier = next(e for e in js["events"] if e["summary"] == "Atelier Grist")
    assert atelier["start"] == paris(world.today + timedelta(days=1), 14).isoformat()
    cafe = next(e for e in js["events"] if e["summary"] == "Café BlueHats")
    assert cafe["start"] == paris(world.today + timedelta(days=2), 9, 30).isoformat()
    (journee,) = (e for e in js["events"] if e["summary"] == "Journée Grist")
    assert journee["start"] == (world.today + timedelta(days=5)).isoformat()
    assert journee["start_utc"] is None  # a date, not an instant
    assert not any(e["recurring"] for e in js["events"])  # occurrences, one event each


async def test_moderator_move_reaches_the_feed_as_a_new_sequence_of_the_same_uid(
    world: World,
) -> None:
    before = python_reading(await world.feed(), world.today)
    atelier = next(e for e in before if e["summary"] == "Atelier Grist")
    sid = sid_of(atelier["uid"])
    _, headers, _ = await world.get(WEEK_GRIST)
    etag = headers["ETag"]

    refused = await world.member.ask(world.room, f"!session modifier {sid} 18h-19h", world.bot_id)
    assert "réservée aux modérateurs" in body(refused)
    status, _, unchanged = await world.get(WEEK_GRIST, **{"If-None-Match": etag})
    assert (status, unchanged) == (304, b"")

    moved = await world.moderator.ask(
        world.room, f"!session modifier {sid} 16h-17h30", world.bot_id
    )
    assert "Séance modifiée" in body(moved), body(moved)

    status, headers, data = await world.get(WEEK_GRIST, **{"If-None-Match": etag})
    assert status == 200
    assert headers["ETag"] != etag
    after = python_reading(data, world.today)
    (now,) = (e for e in after if e["uid"] == atelier["uid"])
    new_start = paris(world.today + timedelta(days=1), 16)
    assert now["start_utc"] == utc_iso(new_start)
    assert now["sequence"] > atelier["sequence"]
    # The other sessions did not change.
    assert [e for e in after if e["uid"] != atelier["uid"]] == [
        e for e in before if e["uid"] != atelier["uid"]
    ]
    js = comparable((await js_reading(data))["events"])
    assert js == after
    # The session's own page and calendar follow.
    _, _, page = await world.get(f"/seance/{sid}")
    assert "16h00" in page.decode()
    single = python_reading(await world.feed(f"/seance/{sid}.ics"), world.today)
    assert [(e["uid"], e["start_utc"], e["sequence"]) for e in single] == [
        (atelier["uid"], now["start_utc"], now["sequence"])
    ]


async def test_feed_answers_304_to_its_etag_and_the_page_links_it_as_webcal(
    world: World,
) -> None:
    status, headers, data = await world.get("/agenda.ics")
    assert status == 200 and data.startswith(b"BEGIN:VCALENDAR")
    etag = headers["ETag"]
    assert "Last-Modified" in headers
    for validator in (etag, f"W/{etag}", f'"other", {etag}'):
        status, again, rest = await world.get("/agenda.ics", **{"If-None-Match": validator})
        assert (status, rest) == (304, b""), validator
        assert again["ETag"] == etag
    status, _, full = await world.get("/agenda.ics", **{"If-None-Match": '"other"'})
    assert (status, full) == (200, data)

    _, _, page = await world.get("/")
    host = world.url.removeprefix("http://")
    assert f'href="webcal://{host}/agenda.ics"' in page.decode()
    # A filtered page offers the filtered calendar, which is the one the command lists.
    _, _, filtered = await world.get("/?periode=semaine&q=grist")
    links = re.findall(r'href="(webcal://[^"]+)"', filtered.decode())
    assert links == [f"webcal://{host}{WEEK_GRIST}".replace("&", "&amp;")]
    feed = links[0].replace("&amp;", "&").replace("webcal://", "http://")
    async with world.http.get(feed) as response:
        assert await response.read() == await world.feed()
