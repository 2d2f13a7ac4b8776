"""The mentor directory on a real Synapse: roles, pills, lookup, self-removal, data export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, running

pytestmark = pytest.mark.e2e


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


async def test_mentor_directory(synapse: DevHomeserver, tmp_path: Path, make_user) -> None:
    creator = await make_user("creator")  # creates the room: a v12 creator, power level ∞
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

        refused = await member.ask(room, f"!mentor ajouter {mentor.user_id} Superset", bot_id)
        assert "réservée aux modérateurs" in body(refused)
        assert "vide" in body(await member.ask(room, "!mentors", bot_id))

        added = await creator.ask(
            room, f"!mentor ajouter {mentor.user_id} Superset, Données ouvertes", bot_id
        )
        assert body(added).startswith("✅ Camille Dupont")
        assert added.source["content"]["m.mentions"] == {"user_ids": [mentor.user_id]}

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
        assert found.source["content"]["m.mentions"] == {"user_ids": [mentor.user_id]}

        bad = await creator.ask(room, "!mentor ajouter camille Grist", bot_id)
        assert body(bad).startswith("« camille » n'est pas un identifiant Matrix")

        mine = await mentor.ask(room, "!mes-donnees", bot_id)
        assert "– Superset (ajouté le" in body(mine) and f"par {creator.user_id})" in body(mine)
        assert f"par {admin.user_id})" in body(mine)

        gone = await mentor.ask(room, "!mentor retirer-moi", bot_id)
        assert "Vous êtes retiré·e de l'annuaire" in body(gone)
        assert "vide" in body(await member.ask(room, "!mentors", bot_id))
        journal = await creator.ask(room, "!mentor journal", bot_id)
        assert mentor.user_id not in body(journal)
