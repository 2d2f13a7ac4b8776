"""Programme-change notices on a real Synapse: subscribed rooms get one, others none."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, eventually, running, with_moderators

pytestmark = pytest.mark.e2e


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


def soon(tmp_path: Path, title: str, seconds: int = 80) -> tuple[Path, datetime]:
    """A calendar with one session starting in `seconds`."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    ics = tmp_path / "soon.ics"
    ics.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\n"
        f"UID:soon@t\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{title}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return ics, start


def is_notice(event: Any, bot_id: str) -> bool:
    content = event.source.get("content", {})
    return (
        event.sender == bot_id
        and content.get("msgtype") == "m.notice"
        and str(content.get("body", "")).startswith("⚠️ Changement de programme")
    )


async def test_change_notice_reaches_subscribed_rooms_once(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", broadcasts={"pace": "0s"})
    alice = await make_user("alice")
    cfg = with_moderators(cfg, alice.user_id)
    day = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=5)
    async with running(BotApp(cfg)):
        subscribed = await alice.create_room(invite=[bot_id])
        quiet = await alice.create_room(invite=[bot_id])
        for room in (subscribed, quiet):
            await alice.wait_joined(room, bot_id)
        ok = await alice.ask(subscribed, "!abonner rappels", bot_id)
        assert body(ok).startswith("✅ Ce salon recevra un rappel avant chaque séance")

        added = await alice.ask(
            quiet, f'!session ajouter {day:%d/%m/%Y} 14h-15h "Atelier Grist"', bot_id
        )
        sid = re.search(r"Identifiant : (\w+)", body(added)).group(1)  # type: ignore[union-attr]
        assert await alice.ask(quiet, f"!session modifier {sid} 16h-17h", bot_id)

        notice = await alice.wait_for(subscribed, lambda e: is_notice(e, bot_id))
        assert "« Atelier Grist »" in body(notice) and "14h00 – 15h00 → 16h00 – 17h00" in body(
            notice
        )
        assert "m.relates_to" not in notice.source["content"]  # a post, not a reply
        # A few more syncs: still exactly one notice there, none in the other room.
        for _ in range(3):
            await alice.sync(500)
            await asyncio.sleep(0.2)
        assert len([e for e in alice.events[subscribed] if is_notice(e, bot_id)]) == 1
        assert not [e for e in alice.events.get(quiet, []) if is_notice(e, bot_id)]


async def test_reminder_before_a_session_sent_once(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    ics, start = soon(tmp_path, "Webinaire Matomo")
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": ["1m"]},  # due 20 s from now
    )
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        await alice.ask(room, "!abonner rappels", bot_id)

        def is_reminder(e: Any) -> bool:
            content = e.source.get("content", {})
            return e.sender == bot_id and str(content.get("body", "")).startswith("⏰ Rappel")

        reminder = await alice.wait_for(room, is_reminder, timeout=60)
        assert "« Webinaire Matomo » commence dans 1 minute" in body(reminder)
        assert datetime.now(UTC) < start  # before the session, not after
        for _ in range(3):
            await alice.sync(500)
        assert len([e for e in alice.events[room] if is_reminder(e)]) == 1


async def test_personal_reminder_arrives_in_a_direct_room(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    ics, _ = soon(tmp_path, "Atelier Grist")
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": [], "personal": "1m"},  # due 20 s from now
    )
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda")
        listing = await alice.reply_to(room, asked, bot_id)
        assert "réagissez 🔔 pour un rappel en privé" in body(listing)
        # She reacts 🔔 to the answer, as in Element.
        await alice.react(room, listing.event_id)

        # The bot opened an (encrypted) direct room and invited her: she accepts.
        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def from_bot(prefix: str, room_id: str) -> list[Any]:
            return [
                e
                for e in alice.events.get(room_id, [])
                if e.sender == bot_id
                and "body" in e.source.get("content", {})
                and str(e.source["content"]["body"]).startswith(prefix)
            ]

        await eventually(lambda: bool(from_bot("🔔 C'est noté", direct)))
        (confirmation,) = from_bot("🔔 C'est noté", direct)
        assert body(confirmation).startswith(
            "🔔 C'est noté : je vous enverrai un message privé 1 minute avant « Atelier Grist »"
        )
        await eventually(lambda: bool(from_bot("⏰ Votre rappel", direct)), timeout=60)
        (reminder,) = from_bot("⏰ Votre rappel", direct)
        assert reminder.decrypted
        assert "« Atelier Grist » commence dans 1 minute" in body(reminder)
        await asyncio.sleep(2)
        assert len(from_bot("⏰ Votre rappel", direct)) == 1
        # Nothing was said in the shared room about her reminder.
        assert [e.event_id for e in from_bot("", room)] == [listing.event_id]
