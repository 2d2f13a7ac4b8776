"""The bot on a real Synapse, driven by real Matrix clients."""

from __future__ import annotations

import asyncio
import math
from datetime import date, timedelta
from pathlib import Path
from string import Template

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, recorded, running

pytestmark = pytest.mark.e2e

HOSTILE_ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//hostile//FR
BEGIN:VEVENT
UID:hostile@test
DTSTAMP:20260101T000000Z
DTSTART:${d1}T100000Z
DTEND:${d1}T110000Z
SUMMARY:<script>alert("xss")</script> & <b>gras</b>
LOCATION:<img src=x onerror=alert(1)>
DESCRIPTION:Intervenant : <a href="javascript:alert(1)">clic</a>
END:VEVENT
BEGIN:VEVENT
UID:cancelled@test
DTSTAMP:20260101T000000Z
DTSTART:${d2}T100000Z
DTEND:${d2}T110000Z
STATUS:CANCELLED
SUMMARY:Séance annulée Grist
END:VEVENT
BEGIN:VEVENT
UID:kept@test
DTSTAMP:20260101T000000Z
DTSTART:${d3}T100000Z
DTEND:${d3}T110000Z
SUMMARY:Atelier Données ouvertes
END:VEVENT
END:VCALENDAR
"""


async def test_invite_join_help_agenda_filters(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id], name="BlueHats")
        await alice.wait_joined(room, bot_id)

        help_reply = await alice.ask(room, "!aide", bot_id)
        content = help_reply.source["content"]
        assert content["msgtype"] == "m.notice"
        assert content["format"] == "org.matrix.custom.html"
        assert "!agenda" in content["body"] and "!aide" in content["body"]
        assert "<code>!agenda" in content["formatted_body"]

        english = await alice.ask(room, "!help", bot_id)
        assert english.source["content"]["body"] == content["body"]

        agenda = await alice.ask(room, "!agenda", bot_id)
        body = agenda.source["content"]["body"]
        assert "Prochaines séances BlueHats" in body
        assert "Café BlueHats" in body
        # Paris wall time, French style.
        assert "09h30 – 10h00" in body
        assert "Permanence annulée" not in body

        superset = await alice.ask(room, "!agenda SUPERSET", bot_id)
        sbody = superset.source["content"]["body"]
        assert "Atelier BlueHats : tableaux de bord avec Superset" in sbody
        assert "Café BlueHats" not in sbody
        assert "Camille Dupont" in sbody  # speakers from ATTENDEE;CN

        accents = await alice.ask(room, "!agenda donnees", bot_id)  # matches « données »
        assert "Superset" in accents.source["content"]["body"]

        nothing = await alice.ask(room, "!agenda kubernetes", bot_id)
        assert (
            "Aucune séance à venir ne correspond à « kubernetes »"
            in (nothing.source["content"]["body"])
        )

        unknown = await alice.ask(room, "!agendaa", bot_id)
        ubody = unknown.source["content"]["body"]
        assert "!aide" in ubody and "\n" not in ubody


async def test_html_from_calendar_is_escaped_and_cancelled_hidden(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    ics = tmp_path / "hostile.ics"
    days = {f"d{i}": f"{date.today() + timedelta(days=3 + i):%Y%m%d}" for i in (1, 2, 3)}
    text = Template(HOSTILE_ICS).substitute(days)
    ics.write_text(text.replace("\n", "\r\n"), encoding="utf-8")
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", sources=[str(ics)])
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        reply = await alice.ask(room, "!agenda", bot_id)
    content = reply.source["content"]
    html = content["formatted_body"]
    assert "<script>" not in html and "<img" not in html and "javascript:" not in html
    assert "&lt;script&gt;alert(" in html
    assert '<script>alert("xss")</script> & <b>gras</b>' in content["body"]  # shown as text
    assert "Atelier Données ouvertes" in content["body"]
    assert "annulée" not in content["body"]


async def test_invite_from_a_server_not_allowed_is_declined(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(
        synapse, tmp_path / "bot", matrix={"allowed_servers": ["agent.tchap.gouv.fr"]}
    )
    alice = await make_user("alice")
    async with running(BotApp(cfg)) as app:
        room = await alice.create_room(invite=[bot_id])
        async with asyncio.timeout(30):
            while True:  # the bot leaves the invite: its membership becomes "leave"
                members = await alice.client.room_get_state_event(room, "m.room.member", bot_id)
                if getattr(members, "content", {}).get("membership") == "leave":
                    break
                await asyncio.sleep(0.2)
        assert app.chat is not None and room not in app.chat.client.rooms


async def test_history_before_join_is_not_answered(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await make_user("alice")
    room = await alice.create_room(name="Ancien salon")
    old = await alice.send(room, "!agenda")
    async with running(BotApp(cfg)):
        await alice.client.room_invite(room, bot_id)
        await alice.wait_joined(room, bot_id)
        new = await alice.send(room, "!aide")
        await alice.reply_to(room, new, bot_id)
        assert recorded(cfg.storage.path, new) is not None  # recorded, then answered
        assert recorded(cfg.storage.path, old) is None  # never to be answered
    await alice.sync(0)
    assert alice.replies(room, old, bot_id) == []


async def test_never_answers_notices_or_itself(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await make_user("alice")
    other_bot = await make_user("otherbot")
    async with running(BotApp(cfg)) as app:
        room = await alice.create_room(invite=[bot_id, other_bot.user_id])
        await alice.wait_joined(room, bot_id)
        await other_bot.client.join(room)
        await alice.wait_joined(room, other_bot.user_id)
        notice = await other_bot.send(room, "!agenda", msgtype="m.notice")
        no_prefix = await alice.send(room, "agenda ? quelqu'un ?")
        sentinel = await alice.send(room, "!aide")
        reply = await alice.reply_to(room, sentinel, bot_id)
        # Recorded in timeline order: the sentinel answered, the two before it never will be.
        assert [recorded(cfg.storage.path, e) for e in (notice, no_prefix)] == [None, None]
        assert alice.replies(room, notice, bot_id) == []
        assert alice.replies(room, no_prefix, bot_id) == []
        # The bot's own notice starts with no prefix, but even one that did is ignored:
        assert app.chat is not None
        echo = await app.chat.client.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "!aide"}
        )
        after_echo = await alice.send(room, "!aide")
        await alice.reply_to(room, after_echo, bot_id)
        assert recorded(cfg.storage.path, echo.event_id) is None
        assert alice.replies(room, echo.event_id, bot_id) == []
        assert reply.source["content"]["m.mentions"] == {}


async def test_room_v12_creator_outranks_everyone(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", bot={"moderators": []})
    alice = await make_user("alice")
    bob = await make_user("bob")
    async with running(BotApp(cfg)) as app:
        room = await alice.create_room(invite=[bot_id, bob.user_id])
        await alice.wait_joined(room, bot_id)
        create = await alice.client.room_get_state_event(room, "m.room.create")
        assert create.content.get("room_version") == "12"
        pl = await alice.client.room_get_state_event(room, "m.room.power_levels")
        assert alice.user_id not in pl.content.get("users", {})  # what nio alone would see

        assert app.chat is not None
        assert await app.chat.power_level(room, alice.user_id) == math.inf
        assert await app.chat.power_level(room, bob.user_id) == 0

        # Promoting Bob is seen by the bot (cached levels are dropped on change).
        users = dict(pl.content.get("users", {}))
        users[bob.user_id] = 50
        await alice.client.room_put_state(
            room, "m.room.power_levels", {**pl.content, "users": users}
        )
        sentinel = await alice.send(room, "!aide")
        await alice.reply_to(room, sentinel, bot_id)
        assert await app.chat.power_level(room, bob.user_id) == 50
