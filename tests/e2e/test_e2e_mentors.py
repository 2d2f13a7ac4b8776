"""The mentor directory on a real Synapse: roles, pills, lookup, self-removal, data export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, eventually, running

pytestmark = pytest.mark.e2e


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


async def test_mentor_directory(synapse: DevHomeserver, tmp_path: Path, make_user) -> None:
    # Creates the room: a v12 creator (power level ∞), yet no community moderator.
    creator = await make_user("creator")
    member = await make_user("member")
    admin = await make_user("admin")  # power level 0 here, but a moderator by configuration
    mentor = await make_user("mentor")
    await mentor.client.set_displayname("Camille Dupont")
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", bot={"moderators": [admin.user_id]})

    async with running(BotApp(cfg)):
        room = await creator.create_room(
            invite=[bot_id, member.user_id, admin.user_id, mentor.user_id]
        )
        await creator.wait_joined(room, bot_id)
        for user in (member, admin, mentor):
            await user.client.join(room)
            await creator.wait_joined(room, user.user_id)

        for who in (member, creator):
            refused = await who.ask(room, f"!mentor ajouter {mentor.user_id} Superset", bot_id)
            assert "réservée aux modérateurs de la communauté" in body(refused)
        assert "vide" in body(await member.ask(room, "!mentors", bot_id))

        added = await admin.ask(
            room, f"!mentor ajouter {mentor.user_id} Superset, Données ouvertes", bot_id
        )
        assert body(added).startswith("✅ Camille Dupont")
        # Called, so that Element and Tchap notify her: m.text (a notice never rings).
        assert added.source["content"]["m.mentions"] == {"user_ids": [mentor.user_id]}
        assert added.source["content"]["msgtype"] == "m.text"

        # As Element sends a pill: display name in the body, the ID in m.mentions.
        pill = await admin.send(
            room,
            "!mentor ajouter Camille Dupont Grist",
            **{"m.mentions": {"user_ids": [mentor.user_id]}},
        )
        by_admin = await admin.reply_to(room, pill, bot_id)
        assert "est mentor pour : Grist" in body(by_admin)

        found = await member.ask(room, "!mentors donnees OUVERTES", bot_id)
        assert "Mentors pour « Données ouvertes »" in body(found)
        html = found.source["content"]["formatted_body"]
        assert f'<a href="https://matrix.to/#/{mentor.user_id}">Camille Dupont</a>' in html
        # Listed, not called: an empty m.mentions, so that clients do not ping
        # the mentors for their names or IDs in the text either (MSC3952).
        assert found.source["content"]["m.mentions"] == {}

        bad = await admin.ask(room, "!mentor ajouter camille Grist", bot_id)
        assert body(bad).startswith("« camille » n'est pas un identifiant Matrix")

        # Personal data is answered in private; the room only learns where to look.
        mine = await mentor.ask(room, "!mes-donnees", bot_id)
        assert body(mine) == "🔒 Je vous ai répondu en message privé."
        await mentor.sync(0)
        assert mentor.invites  # the bot opened a direct room with her

        gone = await mentor.ask(room, "!mentor retirer-moi", bot_id)
        assert "Vous êtes retiré·e de l'annuaire" in body(gone)
        assert "vide" in body(await member.ask(room, "!mentors", bot_id))
        journal = await admin.ask(room, "!mentor journal", bot_id)
        assert mentor.user_id not in body(journal)


async def test_my_data_is_read_in_a_direct_room(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    """`!mes-donnees` typed in a shared room: the answer is in an encrypted direct room."""
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!mes-donnees")
        said = await alice.reply_to(room, asked, bot_id)
        assert body(said) == "🔒 Je vous ai répondu en message privé."

        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def data() -> list[Any]:
            return [
                e
                for e in alice.events.get(direct, [])
                if e.sender == bot_id
                and "Ce que le bot garde" in e.source["content"].get("body", "")
            ]

        await eventually(lambda: bool(data()))
        (answer,) = data()
        assert answer.decrypted
        assert alice.user_id in body(answer)
        # In the shared room: the pointer only, nothing about her.
        from_bot = [
            e for e in alice.events[room] if e.sender == bot_id and "body" in e.source["content"]
        ]
        assert [body(e) for e in from_bot] == ["🔒 Je vous ai répondu en message privé."]
