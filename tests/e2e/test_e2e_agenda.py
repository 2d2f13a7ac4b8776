"""Agenda commands on a real Synapse: moderators' edits, `!session`, `!prochain`, `.ics` files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from nio import MemoryDownloadResponse

from bot.app import DB_FILE, BotApp
from bot.db.storage import Storage
from bot.devserver import DevHomeserver
from tests.helpers import User, bot_config, running, with_moderators

pytestmark = pytest.mark.e2e

PARIS = ZoneInfo("Europe/Paris")


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


def session_id(text: str) -> str:
    match = re.search(r"Identifiant : ([a-z2-7]{6})", text)
    assert match, text
    return match.group(1)


async def ask_file(user: User, room: str, text: str, bot_id: str) -> tuple[dict[str, Any], bytes]:
    """Send a command, wait for the bot's `m.file` reply, download it."""
    event_id = await user.send(room, text)

    def is_file_reply(e: Any) -> bool:
        content = e.source.get("content", {})
        return (
            e.sender == bot_id
            and content.get("msgtype") == "m.file"
            and content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id
        )

    event = await user.wait_for(room, is_file_reply)
    content = event.source["content"]
    resp = await user.client.download(mxc=content["url"])
    assert isinstance(resp, MemoryDownloadResponse), resp
    return content, resp.body


async def test_moderator_edits_member_refused_and_ics_export(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    storage_dir = tmp_path / "bot"
    cfg, bot_id = bot_config(synapse, storage_dir)
    alice = await make_user("alice")  # creates the room: a creator of a v12 room
    bob = await make_user("bob")  # a member (power level 0)
    cfg = with_moderators(cfg, alice.user_id)  # a community moderator
    day = datetime.now(PARIS).date() + timedelta(days=3)
    typed_day = f"{day:%d/%m/%Y}"

    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id, bob.user_id], name="BlueHats")
        await alice.wait_joined(room, bot_id)
        await bob.client.join(room)
        await alice.wait_joined(room, bob.user_id)

        refused = await bob.ask(
            room, f'!session ajouter {typed_day} 14h-15h "Atelier Grist"', bot_id
        )
        assert "réservée aux modérateurs" in body(refused)
        nothing = await bob.ask(room, "!agenda grist", bot_id)
        assert "Aucune séance" in body(nothing)

        added = await alice.ask(
            room,
            f"!session ajouter {typed_day} 14h-15h30 « Atelier Grist & <données> » "
            'salle="Salle B" intervenants="Ana Lopez, Léo Martin" lien=https://grist.numerique.gouv.fr',
            bot_id,
        )
        text = body(added)
        assert "Séance ajoutée" in text
        assert "14h00 – 15h30" in text
        assert "📍 Salle B" in text
        assert "Ana Lopez, Léo Martin" in text
        sid = session_id(text)
        # Text typed by a moderator is escaped in the HTML like any other.
        assert "&lt;données&gt;" in added.source["content"]["formatted_body"]

        listed = await bob.ask(room, "!agenda grist", bot_id)
        assert "Atelier Grist" in body(listed)
        assert f"[{sid}]" in body(listed)

        shown = await bob.ask(room, f"!session {sid.upper()}", bot_id)
        assert "Atelier Grist" in body(shown)
        assert "dans " in body(shown)  # how long until it starts

        bad = await alice.ask(room, f"!session modifier {sid} 16h-15h", bot_id)
        assert body(bad).splitlines()[0].startswith("La fin doit être après le début")
        assert "Syntaxe : !session modifier" in body(bad)
        unknown = await alice.ask(room, "!session annuler zzzzzz", bot_id)
        assert "Aucune séance à venir n'a l'identifiant « zzzzzz »" in body(unknown)

        moved = await alice.ask(room, f"!session modifier {sid} 15h-16h30", bot_id)
        assert "Séance modifiée" in body(moved)
        assert "15h00 – 16h30" in body(moved)
        assert "avant : " in body(moved) and "14h00 – 15h30" in body(moved)
        assert session_id(body(moved)) == sid  # the id stays

        content, data = await ask_file(bob, room, f"!session {sid} ics", bot_id)
        assert content["info"]["mimetype"] == "text/calendar"
        assert content["body"].endswith(".ics")
        calendar = icalendar.Calendar.from_ical(data)
        (event,) = calendar.walk("VEVENT")
        assert str(event["SUMMARY"]) == "Atelier Grist & <données>"
        assert event["DTSTART"].dt == datetime.combine(day, datetime.min.time(), PARIS).replace(
            hour=15
        )
        assert event["DTSTART"].params["TZID"] == "Europe/Paris"
        assert str(event["UID"]).startswith(sid)
        assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]

        _, all_data = await ask_file(bob, room, "!agenda ics", bot_id)
        summaries = [
            str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(all_data).walk("VEVENT")
        ]
        assert "Atelier Grist & <données>" in summaries
        assert len(summaries) > 1  # with the sample agenda's sessions

        cancelled = await alice.ask(room, f"!session annuler {sid}", bot_id)
        assert "Séance annulée" in body(cancelled)
        gone = await bob.ask(room, "!agenda grist", bot_id)
        assert "Aucune séance" in body(gone)

    # Restart: the edits were saved; the session is still cancelled, and
    # the programme changes were recorded once each for the notices.
    async with running(BotApp(cfg)):
        still = await bob.ask(room, f"!session {sid}", bot_id)
        assert "Cette séance a été annulée" in body(still)
        restored = await alice.ask(room, f"!session rétablir {sid}", bot_id)
        assert "Séance rétablie" in body(restored)
        back = await bob.ask(room, "!agenda grist", bot_id)
        assert f"[{sid}]" in body(back)

    storage = await Storage.open(storage_dir / DB_FILE)
    try:
        changes = await storage.agenda.changes_since(0)
    finally:
        await storage.close()
    assert [(c.kind, c.sid) for c in changes] == [("moved", sid), ("cancelled", sid)]


async def test_next_session_in_full(synapse: DevHomeserver, tmp_path: Path, make_user) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    ics = tmp_path / "next.ics"
    ics.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n"
        "BEGIN:VEVENT\r\nUID:n@t\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDURATION:PT1H\r\n"
        "SUMMARY:Webinaire Superset\r\n"
        "DESCRIPTION:Retour d'expérience sur Superset\\, en détail.\\nDeuxième ligne.\r\n"
        "LOCATION:https://webinaire.numerique.gouv.fr/meeting/x\r\n"
        "ATTENDEE;CN=Camille Dupont:mailto:c@example.org\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n",
        encoding="utf-8",
    )
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", sources=[str(ics)])
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        reply = await alice.ask(room, "!prochain", bot_id)
        text = body(reply)
        assert text.startswith("⏭️ Prochaine séance BlueHats, dans 3 heures")
        assert "Webinaire Superset" in text
        assert "Retour d'expérience sur Superset, en détail.\nDeuxième ligne." in text
        assert "🎤 Camille Dupont" in text
        assert "🔗 https://webinaire.numerique.gouv.fr/meeting/x" in text
        html = reply.source["content"]["formatted_body"]
        assert '<a href="https://webinaire.numerique.gouv.fr/meeting/x">' in html
        english = await alice.ask(room, "!next nothing-matches", bot_id)
        assert "Aucune séance BlueHats à venir ne correspond à « nothing-matches »" in body(english)
