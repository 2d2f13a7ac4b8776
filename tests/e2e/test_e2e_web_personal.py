"""The personal calendar with a real Synapse: 🔔 a session, `!mon-agenda`, subscribe, revoke."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import icalendar
import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver, free_port
from tests.helpers import bot_config, eventually, running

pytestmark = pytest.mark.e2e

FEED = re.compile(r"http://127\.0\.0\.1:\d+/moi/[A-Za-z0-9_-]+\.ics")


def two_sessions(tmp_path: Path) -> Path:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    ics = tmp_path / "two.ics"
    events = "".join(
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}@t\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{at:%Y%m%dT%H%M%SZ}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{title}\r\nEND:VEVENT\r\n"
        for uid, title, at in (
            ("a", "Webinaire Grist", start),
            ("b", "Atelier Superset", start + timedelta(hours=3)),
        )
    )
    ics.write_text(
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n{events}END:VCALENDAR\r\n"
    )
    return ics


def body(event: Any) -> str:
    return str(event.source.get("content", {}).get("body", ""))


async def fetch(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read()


async def test_a_reminded_session_is_served_by_the_secret_address_until_revoked(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    port = free_port()
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(two_sessions(tmp_path))],
        web={"http": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
    )
    alice = await crypto_user()
    async with running(BotApp(cfg)) as app:
        agenda = app.web.site.agenda() if app.web else None
        assert agenda is not None
        grist = agenda.next(datetime.now(UTC), ["grist"])
        assert grist is not None
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, f"!session {grist.sid}")
        shown = await alice.reply_to(room, asked, bot_id)
        assert f"http://127.0.0.1:{port}/seance/{grist.sid}" in body(shown)
        await alice.react(room, shown.event_id)  # 🔔, as in Element
        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def from_bot(room_id: str, pattern: re.Pattern[str]) -> list[str]:
            return [
                m.group(0)
                for e in alice.events.get(room_id, [])
                if e.sender == bot_id and (m := pattern.search(body(e)))
            ]

        await eventually(lambda: bool(from_bot(direct, re.compile("🔔 C'est noté"))))

        # !mon-agenda in the shared room: the address goes to the direct room only.
        await alice.say(room, "!mon-agenda")
        await eventually(lambda: bool(from_bot(direct, FEED)))
        (url,) = from_bot(direct, FEED)
        assert not from_bot(room, FEED)
        status, data = await fetch(url)
        assert status == 200
        events = icalendar.Calendar.from_ical(data).walk("VEVENT")
        assert [str(e["SUMMARY"]) for e in events] == ["Webinaire Grist"]
        assert events[0].decoded("DTSTART").astimezone(UTC) == grist.start

        # Revoked: a new address works, the old one is gone.
        await alice.say(direct, "!mon-agenda revoquer")
        await eventually(lambda: len(from_bot(direct, FEED)) == 2)
        new = from_bot(direct, FEED)[1]
        assert new != url
        assert (await fetch(url))[0] == 404
        status, data = await fetch(new)
        assert status == 200 and b"Webinaire Grist" in data and b"Atelier Superset" not in data
