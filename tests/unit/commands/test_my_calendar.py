"""`!mon-agenda`: a secret calendar address, given in private, stored only as a hash."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from bot.chat import IncomingMessage, IncomingReaction
from bot.db.storage import Storage
from bot.db.upgrade import UpgradeTable, upgrades
from bot.render import Message, Renderer
from tests.fakes import MOD, ROOMS, World, grist, make_config

ROOM = ROOMS[0]
AGENT = "@agent:example.org"
CAMILLE = "@camille:example.org"
PUBLIC = "https://agenda.example.gouv.fr"
WEB = {"http": "127.0.0.1:8080", "public_url": PUBLIC + "/"}
ADDRESS = re.compile(re.escape(PUBLIC) + r"/moi/([A-Za-z0-9_-]+)\.ics")


@pytest.fixture
def web(world: World) -> World:
    """The world with the web agenda on."""
    services = world.dispatcher.services
    config = make_config(world.storage_path, web=WEB, bot={"moderator_rooms": [ROOMS[0]]})
    world.dispatcher.services = replace(services, config=config)
    return world


class Said:
    """What one command made the bot send: in the room, and in private."""

    def __init__(self, world: World, before: int, sender: str) -> None:
        sent = world.chat.sent[before:]
        dms = {room for user, room in world.chat.direct_rooms if user == sender}
        self.room = [s.message for s in sent if s.room_id not in dms]
        self.private = [s.message for s in sent if s.room_id in dms]

    @property
    def answer(self) -> Message:
        (message,) = self.private
        assert isinstance(message, Message)
        return message


async def ask(world: World, text: str, sender: str = AGENT, room: str = ROOM) -> Said:
    """A command through the whole path (inbox, answer, sends)."""
    before = len(world.chat.sent)
    n = len(world.chat.sent)
    await world.dispatcher.accept(IncomingMessage(room, f"${n}{text}", sender, text))
    await world.dispatcher.drain()
    return Said(world, before, sender)


def token_in(message: Message) -> str:
    (token,) = set(ADDRESS.findall(message.body))
    return token


def database_text(world: World) -> str:
    """Every value of every table, as text: what a copy of the database shows."""
    with sqlite3.connect(world.storage_path / "db.sqlite") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row)
            for table in tables
            # Names read from sqlite_master, not input.
            for row in db.execute(f"SELECT * FROM {table}")  # noqa: S608
        )


async def test_the_address_is_given_in_private_and_only_its_hash_is_kept(
    web: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    said = await ask(web, "!mon-agenda")

    # The room only learns where to look.
    (notice,) = said.room
    assert isinstance(notice, Message)
    assert notice.body == "🔒 Je vous ai répondu en message privé."
    body = said.answer.body
    token = token_in(said.answer)
    assert len(token) >= 43  # 256 random bits
    assert body.startswith(
        "📅 Votre agenda personnel : les séances dont vous avez demandé un rappel"
    )
    assert f"webcal://agenda.example.gouv.fr/moi/{token}.ics" in body
    assert "« s'abonner à un calendrier par URL »" in body
    assert "!mon-agenda revoquer la remplace, !mon-agenda supprimer l'efface" in body
    url = f"{PUBLIC}/moi/{token}.ics"
    assert f'<a href="{url}"><code>{url}</code></a>' in said.answer.html

    assert await web.storage.personal.feed_owner(token) == AGENT
    assert await web.storage.personal.feed_owner(token[:-1] + "x") is None
    # A copy of the database gives no working address; the logs neither.
    stored = database_text(web)
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in caplog.text


async def test_asked_again_the_address_is_kept_and_its_date_told(web: World) -> None:
    token = token_in((await ask(web, "!mon-agenda")).answer)
    again = (await ask(web, "!monagenda")).answer.body
    assert ADDRESS.search(again) is None
    assert again.startswith(
        "📅 Vous avez déjà un agenda personnel : son adresse vous a été envoyée en message "
        "privé le lundi 23 novembre."
    )
    assert "Perdue ? !mon-agenda revoquer donne une nouvelle adresse" in again
    # Calendars already subscribed keep working.
    assert await web.storage.personal.feed_owner(token) == AGENT


async def test_revoking_gives_a_new_address_and_the_old_one_stops_working(web: World) -> None:
    # With none yet, there is no old address to speak of.
    made = (await ask(web, "!mon-agenda renouveler")).answer
    assert made.body.startswith("📅 Votre agenda personnel")
    first = token_in(made)
    renewed = (await ask(web, "!mon-agenda revoquer")).answer
    assert renewed.body.startswith("🔄 Nouvelle adresse de votre agenda personnel")
    second = token_in(renewed)
    assert second != first
    assert await web.storage.personal.feed_owner(first) is None
    assert await web.storage.personal.feed_owner(second) == AGENT
    third = token_in((await ask(web, "!my-calendar renew")).answer)
    assert await web.storage.personal.feed_owner(second) is None
    assert await web.storage.personal.feed_owner(third) == AGENT


async def test_each_person_has_their_own_address(web: World) -> None:
    mine = token_in((await ask(web, "!mon-agenda")).answer)
    theirs = token_in((await ask(web, "!mon-agenda", sender=CAMILLE)).answer)
    assert mine != theirs
    assert await web.storage.personal.feed_owner(theirs) == CAMILLE
    await ask(web, "!mon-agenda revoquer", sender=CAMILLE)
    assert await web.storage.personal.feed_owner(mine) == AGENT


async def test_deleting_the_address(web: World) -> None:
    token = token_in((await ask(web, "!mon-agenda")).answer)
    deleted = (await ask(web, "!mon-agenda supprimer")).answer.body
    assert deleted.startswith("✅ L'adresse de votre agenda personnel est supprimée")
    assert await web.storage.personal.feed_owner(token) is None
    assert await web.storage.personal.feed_created(AGENT) is None
    again = (await ask(web, "!mon-agenda delete")).answer.body
    assert again == "Vous n'avez pas d'adresse d'agenda personnel ; !mon-agenda en crée une."
    # Asked for again: a fresh address.
    assert token_in((await ask(web, "!mon-agenda")).answer) != token


async def test_without_the_web_agenda_no_address_is_made(world: World) -> None:
    said = await ask(world, "!mon-agenda")
    assert said.answer.body == (
        "L'agenda web n'est pas activé sur ce bot : pas d'agenda personnel pour le moment."
    )
    assert await world.storage.personal.feed_created(AGENT) is None
    revoked = (await ask(world, "!mon-agenda revoquer")).answer.body
    assert revoked.startswith("L'agenda web n'est pas activé")
    assert await world.storage.personal.feed_created(AGENT) is None


async def test_an_unknown_word_gets_the_usage(web: World) -> None:
    body = (await ask(web, "!mon-agenda montre")).answer.body
    assert body == "Utilisation : !mon-agenda [revoquer | supprimer]"
    assert await web.storage.personal.feed_created(AGENT) is None


async def test_typed_in_the_direct_room_it_is_answered_there_once(web: World) -> None:
    await ask(web, "!mes-donnees")  # opens the direct room
    ((_, dm),) = web.chat.direct_rooms
    said = await ask(web, "!mon-agenda", room=dm)
    assert said.room == []
    token_in(said.answer)


async def test_the_address_lists_the_sessions_reminded_by_a_bell(web: World) -> None:
    """What the web side reads: the token's owner, then their reminders."""
    await ask(web, "!agenda", sender=MOD)
    post = web.chat.sent[-1].event_id
    await web.dispatcher.accept_reaction(IncomingReaction(ROOM, "$bell", AGENT, post, "🔔"))
    await web.dispatcher.drain()
    token = token_in((await ask(web, "!mon-agenda")).answer)
    owner = await web.storage.personal.feed_owner(token)
    assert owner == AGENT
    assert [r.sid for r in await web.storage.personal.reminders(owner)] == [grist(web)]


async def test_my_data_mentions_the_address(web: World) -> None:
    data = (await ask(web, "!mes-donnees")).answer.body
    assert "Agenda personnel" not in data
    await ask(web, "!mon-agenda")
    data = (await ask(web, "!mes-donnees")).answer.body
    assert (
        "• Agenda personnel : une adresse secrète créée le lundi 23 novembre 10h00 "
        "(!mon-agenda supprimer l'efface)."
    ) in data
    assert ADDRESS.search(data) is None


async def test_leaving_the_mentor_directory_deletes_the_address(web: World) -> None:
    await ask(web, f"!mentor ajouter {AGENT} Grist", sender=MOD)
    await ask(web, f"!rappelle-moi {grist(web)}")
    token = token_in((await ask(web, "!mon-agenda")).answer)
    erased = (await ask(web, "!mentor retirer-moi")).room
    (message,) = erased
    assert isinstance(message, Message)
    assert message.body.startswith("✅ Vous êtes retiré·e de l'annuaire des mentors")
    assert message.body.endswith(
        "L'adresse de votre agenda personnel est supprimée aussi : elle ne fonctionne plus."
    )
    assert await web.storage.personal.feed_owner(token) is None
    # Personal reminders are a service asked for apart from the directory: kept.
    assert [r.sid for r in await web.storage.personal.reminders(AGENT)] == [grist(web)]


async def test_leaving_with_only_an_address_says_it_is_deleted(web: World) -> None:
    token = token_in((await ask(web, "!mon-agenda", sender=CAMILLE)).answer)
    (message,) = (await ask(web, "!mentor retirer-moi", sender=CAMILLE)).room
    assert isinstance(message, Message)
    assert message.body == (
        "L'annuaire des mentors ne contient rien à votre sujet.\n"
        "L'adresse de votre agenda personnel est supprimée aussi : elle ne fonctionne plus."
    )
    assert await web.storage.personal.feed_owner(token) is None
    (nothing,) = (await ask(web, "!mentor retirer-moi", sender=CAMILLE)).room
    assert isinstance(nothing, Message)
    assert nothing.body == "L'annuaire des mentors ne contient rien à votre sujet."


async def test_in_english(web: World) -> None:
    services = web.dispatcher.services
    web.dispatcher.services = replace(services, renderer=Renderer("en", services.renderer.tz))
    body = (await ask(web, "!my-calendar")).answer.body
    assert body.startswith("📅 Your personal calendar: the sessions you asked to be reminded of")
    assert '"subscribe to a calendar from a URL"' in body
    assert "!my-calendar revoke replaces it" in body
    again = (await ask(web, "!my-calendar")).answer.body
    assert "sent to you in a direct message on Monday 23 November" in again


async def test_help_lists_it(web: World) -> None:
    help_text = await web.say("!aide", sender=AGENT)
    assert "• !mon-agenda [revoquer | supprimer] — une adresse d'agenda secrète" in help_text


async def test_a_database_of_the_previous_schema_gets_feeds_and_keeps_reminders(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    before = UpgradeTable(step for step in upgrades if step.version < 16)
    old = await Storage.open(path, migrations=before)
    await old.personal.add(AGENT, "abc123", "Webinaire Grist", 1795525200)
    await old.close()

    storage = await Storage.open(path)
    try:
        assert await storage.schema_version() == upgrades.latest
        assert [r.title for r in await storage.personal.reminders(AGENT)] == ["Webinaire Grist"]
        token = await storage.personal.create_feed(AGENT)
        assert token is not None
        assert await storage.personal.create_feed(AGENT) is None  # one per person
        assert await storage.personal.feed_owner(token) == AGENT
        assert await storage.personal.drop_feed(AGENT)
        assert not await storage.personal.drop_feed(AGENT)
    finally:
        await storage.close()
