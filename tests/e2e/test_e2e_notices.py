"""Programme-change notices and reminders on a real Synapse: subscribed rooms get
one, others none. The bot runs on a `MovingClock`: a reminder due minutes ahead
arrives when the test moves the clock; the one real-time witness of reminders
(`test_reminder_before_a_session_sent_once`) lets the wall clock bring the last
seconds before it is due."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import MovingClock, bot_config, eventually, running, with_moderators

pytestmark = pytest.mark.e2e
# How far ahead the sessions of these tests start: well after any set-up, however
# slow the machine; the tests move the bot's clock there (`MovingClock`).
AHEAD = timedelta(minutes=10)


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


def calendar(tmp_path: Path, *sessions: tuple[str, datetime]) -> Path:
    """A calendar of one-hour sessions (title, start)."""
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:soon-{i}@t\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDURATION:PT1H\r\nSUMMARY:{title}\r\nEND:VEVENT\r\n"
        for i, (title, start) in enumerate(sessions)
    )
    ics = tmp_path / "soon.ics"
    ics.write_text(
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n{events}END:VCALENDAR\r\n"
    )
    return ics


def soon(tmp_path: Path, title: str, ahead: timedelta = AHEAD) -> tuple[Path, datetime]:
    """A calendar with one session starting `ahead` from now (wall clock)."""
    start = datetime.now(UTC).replace(microsecond=0) + ahead
    return calendar(tmp_path, (title, start)), start


def sent_at(event: Any, clock: MovingClock) -> datetime:
    """When the homeserver received `event`, on the bot's clock."""
    return datetime.fromtimestamp(event.server_timestamp / 1000, UTC) + clock.offset


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

        # A second change: its notice goes out after the first one's posts were all
        # sent. Still exactly one notice of the first, none in the other room.
        assert await alice.ask(quiet, f"!session modifier {sid} 17h-18h", bot_id)
        await alice.wait_for(
            subscribed, lambda e: is_notice(e, bot_id) and "→ 17h00 – 18h00" in body(e)
        )
        first = [
            e for e in alice.events[subscribed] if is_notice(e, bot_id) and "→ 16h00" in body(e)
        ]
        assert len(first) == 1
        assert not [e for e in alice.events.get(quiet, []) if is_notice(e, bot_id)]


async def test_reminder_before_a_session_sent_once(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    # The real-time witness: the bot's clock is moved to 3 s before the reminder
    # is due, then only the wall clock brings it. A second session's reminder,
    # due 2 s later, is a later round of the broadcaster: the first is not sent again.
    start = datetime.now(UTC).replace(microsecond=0) + AHEAD
    later = start + timedelta(seconds=2)
    ics = calendar(tmp_path, ("Webinaire Matomo", start), ("Atelier Grist", later))
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": ["1m"]},
    )
    alice = await make_user("alice")
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        await alice.ask(room, "!abonner rappels", bot_id)

        def is_reminder(e: Any, title: str) -> bool:
            content = e.source.get("content", {})
            text = str(content.get("body", ""))
            return e.sender == bot_id and text.startswith("⏰ Rappel") and title in text

        due = start - timedelta(minutes=1)
        clock.move_to(due - timedelta(seconds=3), app)
        reminder = await alice.wait_for(room, lambda e: is_reminder(e, "Matomo"), timeout=30)
        assert "« Webinaire Matomo » commence dans 1 minute" in body(reminder)
        # Sent when due (by the homeserver's clock), before the session, not after.
        assert due <= sent_at(reminder, clock) < start
        assert clock() < start
        await alice.wait_for(room, lambda e: is_reminder(e, "Grist"), timeout=30)
        assert len([e for e in alice.events[room] if is_reminder(e, "Matomo")]) == 1


async def test_personal_reminder_arrives_in_a_direct_room(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + AHEAD
    later = start + timedelta(minutes=5)
    ics = calendar(tmp_path, ("Atelier Grist", start), ("Webinaire Matomo", later))
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        sources=[str(ics)],
        broadcasts={"pace": 0},
        reminders={"offsets": [], "personal": "1m"},
    )
    alice = await crypto_user()
    clock = MovingClock()
    async with running(BotApp(cfg, now=clock)) as app:
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda grist")
        listing = await alice.reply_to(room, asked, bot_id)
        assert "réagissez 🔔 pour un rappel en privé" in body(listing)
        # She reacts 🔔 to the answer, as in Element.
        await alice.react(room, listing.event_id)

        # The bot opened an (encrypted) direct room and invited her: she accepts.
        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def from_bot(prefix: str, room_id: str, title: str = "") -> list[Any]:
            return [
                e
                for e in alice.events.get(room_id, [])
                if e.sender == bot_id
                and "body" in e.source.get("content", {})
                and str(e.source["content"]["body"]).startswith(prefix)
                and title in str(e.source["content"]["body"])
            ]

        await eventually(lambda: bool(from_bot("🔔 C'est noté", direct)))
        (confirmation,) = from_bot("🔔 C'est noté", direct)
        assert body(confirmation).startswith(
            "🔔 C'est noté : je vous enverrai un message privé 1 minute avant « Atelier Grist »"
        )
        clock.move_to(start - timedelta(minutes=1), app)
        await eventually(lambda: bool(from_bot("⏰ Votre rappel", direct)))
        (reminder,) = from_bot("⏰ Votre rappel", direct)
        assert reminder.decrypted
        assert "« Atelier Grist » commence dans 1 minute" in body(reminder)

        # A reminder for the later session, asked in the direct room: it comes
        # from a later round of the broadcaster, after the first one was not sent again.
        more = await alice.reply_to(direct, await alice.say(direct, "!agenda matomo"), bot_id)
        await alice.react(direct, more.event_id)
        await eventually(lambda: bool(from_bot("🔔 C'est noté", direct, "Matomo")))
        clock.move_to(later - timedelta(minutes=1), app)
        await eventually(lambda: bool(from_bot("⏰ Votre rappel", direct, "Matomo")))
        assert len(from_bot("⏰ Votre rappel", direct)) == 2
        assert len(from_bot("⏰ Votre rappel", direct, "Grist")) == 1
        # Nothing was said in the shared room about her reminder.
        assert [e.event_id for e in from_bot("", room)] == [listing.event_id]
