"""The mentor directory with a fake chat: roles, lookup, requests, self-removal, data export."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.chat import IncomingMessage, SendError
from bot.commands.mentors import Problem, matrix_id, parse_topics, suggest, topic_ok
from bot.db.mentors import ERASED
from bot.db.storage import Storage
from bot.dispatch import Dispatcher, txn_id_for
from bot.render import Message, Renderer
from tests.fakes import FakeChat, FakeClock, make_dispatcher

ROOM = "!room:example.org"
MOD = "@mod:example.org"
ADMIN = "@admin:example.org"
MEMBER = "@member:example.org"
CAMILLE = "@camille:example.org"


class Room:
    def __init__(self, dispatcher: Dispatcher, chat: FakeChat, storage: Storage) -> None:
        self.dispatcher, self.chat, self.storage = dispatcher, chat, storage
        self._n = 0

    async def say(self, text: str, sender: str = MEMBER) -> Message:
        self._n += 1
        reply = await self.dispatcher.answer(IncomingMessage(ROOM, f"$m{self._n}", sender, text))
        assert isinstance(reply, Message)
        return reply


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    chat = FakeChat(
        levels={(ROOM, MOD): 50},
        names={CAMILLE: "Camille Dupont", MEMBER: "Membre"},
        unknown_users={"@ghost:example.org"},
    )
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path,
        [],
        FakeClock(datetime(2026, 11, 23, 9, tzinfo=UTC)),
        chat,
        bot={"moderators": [ADMIN], "moderator_rooms": [ROOM]},
    )
    yield Room(dispatcher, chat, storage)
    await storage.close()


def test_topics_normalised_and_suggested() -> None:
    topics = parse_topics(" Données  OUVERTES, données ouvertes ; Superset,, ")
    assert topics == [("donnees ouvertes", "Données OUVERTES"), ("superset", "Superset")]
    assert suggest("supserset", ["superset", "grist", "matomo"]) == ["superset"]
    assert suggest("donnees", ["donnees ouvertes", "grist"]) == ["donnees ouvertes"]
    assert suggest("kubernetes", ["superset", "grist"]) == []
    with pytest.raises(Problem):
        matrix_id("camille")
    with pytest.raises(Problem):
        parse_topics(",".join(f"t{i}" for i in range(11)))


@pytest.mark.parametrize(
    "topic",
    [
        "C++",
        "C#",
        ".NET",
        "Node.js",
        "Python 3",
        "Données ouvertes",
        "Système d'information",
        "Logiciels d’État",
        "Ελληνικά",
        "日本語",
        "हिन्दी",  # vowel signs are marks
        "x" * 40,
    ],
)
def test_topics_allowed(topic: str) -> None:
    assert topic_ok(topic)
    ((_, label),) = parse_topics(topic)
    assert label == topic


@pytest.mark.parametrize(
    "topic",
    [
        "../../etc/passwd <script>",
        "<b>Grist</b>",
        "Grist!",
        "CI/CD",
        "🐍 Python",
        "---",
        "#",
        ". + ' #",
        "x" * 41,
        "\u202egrist",  # right-to-left override
        "gr\u200bist",  # zero-width space
    ],
)
def test_topics_refused(topic: str) -> None:
    assert not topic_ok(topic)
    with pytest.raises(Problem) as refused:
        parse_topics(f"Grist, {topic}")
    assert refused.value.code == "bad_topic"


def test_decomposed_accents_are_stored_composed() -> None:
    assert parse_topics("Donne\u0301es") == [("donnees", "Données")]


async def test_a_refused_topic_is_named_and_nothing_is_stored(room: Room) -> None:
    for sender, command in ((MEMBER, "!mentor proposer"), (MOD, f"!mentor ajouter {CAMILLE}")):
        refused = await room.say(f"{command} Grist, ../../etc/passwd <script>", sender=sender)
        lines = refused.body.splitlines()
        assert lines[0] == (
            "Sujet refusé : « ../../etc/passwd <script> ». Un sujet compte de 1 à 40 "
            "caractères : lettres, chiffres, espaces, apostrophes et - + . # (C++, C#, "
            ".NET, Node.js), dont au moins une lettre ou un chiffre."
        )
        assert lines[1].startswith("Syntaxe : !mentor ")
        assert "&lt;script&gt;" in refused.html and "<script" not in refused.html
    assert await room.storage.mentors.topics() == []
    assert await room.storage.mentors.requests() == []
    # Echoed shortened, and without characters that would turn the answer around.
    long = await room.say("!mentor proposer Une très longue phrase qui ne fait pas un sujet")
    assert "« Une très longue phrase qui ne fait pas …" in long.body
    hidden = await room.say("!mentor proposer \u202eGrist")
    assert "« \ufffdGrist »" in hidden.body and "\u202e" not in hidden.body


async def test_searching_with_garbage_gets_a_clear_answer(room: Room) -> None:
    await room.say(f"!mentor ajouter {CAMILLE} Grist", sender=MOD)
    garbage = await room.say("!mentors ../../etc/passwd <script>")
    assert garbage.body.startswith("Aucun mentor pour « ../../etc/passwd <script> »")
    assert "&lt;script&gt;" in garbage.html and "<script" not in garbage.html
    nothing = await room.say("!mentors ?!?")
    assert nothing.body.startswith("« ?!? » n'est pas un nom de sujet")
    # Punctuation around a topic does not hide it.
    assert (await room.say("!mentors grist ?")).body.startswith("🤝 Mentors pour « Grist »")


async def test_topics_stored_before_the_rule_stay_listed_found_and_removable(room: Room) -> None:
    # Written by an earlier version, which took any text.
    await room.storage.mentors.add(CAMILLE, None, [("ci/cd", "CI/CD")], MOD)
    assert "• CI/CD : 1 mentor" in (await room.say("!mentors")).body
    assert CAMILLE in (await room.say("!mentors ci/cd")).body
    removed = await room.say(f"!mentor retirer {CAMILLE} CI/CD", sender=MOD)
    assert removed.body.startswith("✅")
    assert await room.storage.mentors.topics() == []


async def test_moderator_registers_anyone_finds_with_pills(room: Room) -> None:
    added = await room.say(f"!mentor ajouter {CAMILLE} Superset, Données ouvertes", sender=MOD)
    assert added.body.startswith("✅ Camille Dupont (@camille:example.org) est mentor pour")
    assert added.mentions == (CAMILLE,)

    listing = await room.say("!mentors")
    assert (
        "• Données ouvertes : 1 mentor" in listing.body and "• Superset : 1 mentor" in listing.body
    )
    assert listing.mentions == ()

    found = await room.say("!mentors donnees OUVERTES")
    assert "Mentors pour « Données ouvertes »" in found.body
    assert "• Camille Dupont (@camille:example.org)" in found.body
    assert '<a href="https://matrix.to/#/@camille:example.org">Camille Dupont</a>' in found.html
    # Listed, not called: asking who helps with a topic does not ping every mentor of it.
    assert found.mentions == ()

    missed = await room.say("!mentors supserset")
    assert missed.body.startswith("Aucun mentor pour « supserset ». Sujets proches : Superset.")
    assert missed.mentions == ()


async def test_member_refused_config_moderator_accepted(room: Room) -> None:
    refused = await room.say(f"!mentor ajouter {CAMILLE} Grist", sender=MEMBER)
    assert refused.body == (
        "Désolé, « !mentor ajouter » est réservée aux modérateurs de la communauté."
    )
    assert await room.storage.mentors.topics() == []
    # Power level 0 in this room, but listed in bot.moderators.
    accepted = await room.say(f"!mentor ajouter {CAMILLE} Grist", sender=ADMIN)
    assert accepted.body.startswith("✅ Camille Dupont")
    assert [t.added_by for t in await room.storage.mentors.topics()] == [ADMIN]


@pytest.mark.parametrize(
    ("command", "first_line"),
    [
        ("!mentor ajouter camille Grist", "« camille » n'est pas un identifiant Matrix"),
        (f"!mentor ajouter {CAMILLE}", "Il manque les sujets"),
        (f"!mentor ajouter {CAMILLE} , ,", "Il manque les sujets"),
        ("!mentor ajouter @ghost:example.org Grist", "Le serveur ne connaît pas @ghost"),
        ("!mentor ajouter", "Il manque l'identifiant Matrix"),
        (f"!mentor retirer {CAMILLE}", f"{CAMILLE} n'est pas dans l'annuaire"),
        (f"!mentor valider {CAMILLE}", f"{CAMILLE} n'a pas de demande en attente"),
        ("!mentor danser", "Je ne connais pas « !mentor danser »"),
    ],
)
async def test_bad_input_one_clear_line_with_syntax(
    room: Room, command: str, first_line: str
) -> None:
    lines = (await room.say(command, sender=MOD)).body.splitlines()
    assert lines[0].startswith(first_line), lines
    assert lines[1].startswith("Syntaxe : !mentor ")
    assert len(lines) == 2
    assert await room.storage.mentors.topics() == []


async def test_propose_validate_remove_and_journal(room: Room) -> None:
    proposed = await room.say("!mentor proposer Matomo, Grist", sender=CAMILLE)
    assert proposed.body.startswith("Merci ! Votre proposition (Matomo, Grist)")
    assert "Aucun mentor" in (await room.say("!mentors matomo")).body  # not before validation
    requests = await room.say("!mentor demandes", sender=MOD)
    assert f"• {CAMILLE} : Matomo, Grist" in requests.body
    approved = await room.say(f"!mentor valider {CAMILLE}", sender=MOD)
    assert "est mentor pour : Matomo, Grist" in approved.body
    assert "Aucune demande en attente" in (await room.say("!mentor demandes", sender=MOD)).body
    assert "Camille Dupont" in (await room.say("!mentors MATOMO")).body

    removed = await room.say(f"!mentor retirer {CAMILLE} matomo", sender=MOD)
    assert removed.body.startswith(f"✅ {CAMILLE} est retiré·e de l'annuaire pour « matomo »")
    assert "Aucun mentor" in (await room.say("!mentors matomo")).body
    assert "Camille Dupont" in (await room.say("!mentors grist")).body

    journal = (await room.say("!mentor journal", sender=MOD)).body.splitlines()
    assert journal[0].startswith("Journal de l'annuaire")
    assert journal[1].endswith(f"{MOD} : retire {CAMILLE} (matomo) (depuis {ROOM})")
    assert journal[2].endswith(f"{MOD} : valide {CAMILLE} (Matomo, Grist) (depuis {ROOM})")
    assert "réservée aux modérateurs" in (await room.say("!mentor journal")).body


async def test_my_data_and_self_removal_leave_nothing(room: Room) -> None:
    await room.say(f"!mentor ajouter {CAMILLE} Superset", sender=MOD)
    await room.say("!mentor proposer Grist", sender=CAMILLE)
    mine = (await room.say("!mes-données", sender=CAMILLE)).body
    assert f"Ce que le bot garde à votre sujet ({CAMILLE})" in mine
    assert "– Superset (ajouté le lundi 23 novembre" in mine or "– Superset (ajouté le" in mine
    assert f"par {MOD})" in mine
    assert "– Grist (le " in mine

    erased = await room.say("!mentor retirer-moi", sender=CAMILLE)
    assert erased.body.startswith("✅ Vous êtes retiré·e de l'annuaire des mentors")
    assert await room.storage.mentors.topics() == []
    assert await room.storage.mentors.requests() == []
    audit = await room.storage.mentors.audit()
    assert all(CAMILLE not in (e.actor, e.target, e.detail) for e in audit)
    assert audit[0].action == "erase-self" and audit[0].actor == ERASED
    assert "Rien dans l'annuaire des mentors." in (await room.say("!my-data", sender=CAMILLE)).body
    again = await room.say("!mentor retirer-moi", sender=CAMILLE)
    assert again.body == "L'annuaire des mentors ne contient rien à votre sujet."


async def test_my_data_goes_to_the_direct_room_and_the_room_is_told(room: Room) -> None:
    await room.say(f"!mentor ajouter {CAMILLE} Superset", sender=MOD)
    chat = room.chat
    chat.sent.clear()
    await room.dispatcher.accept(IncomingMessage(ROOM, "$data", CAMILLE, "!mes-donnees"))
    await room.dispatcher.drain()
    (dm,) = [r for u, r in chat.direct_rooms if u == CAMILLE]
    where = {s.room_id: s.message.body for s in chat.sent if isinstance(s.message, Message)}
    assert set(where) == {dm, ROOM}
    assert "Superset" in where[dm] and CAMILLE in where[dm]
    # Nothing personal in the room: only where to look.
    assert where[ROOM] == "🔒 Je vous ai répondu en message privé."
    assert [s.reply_to for s in chat.sent if s.room_id == ROOM] == ["$data"]

    # Typed in the direct room itself: one answer, there.
    chat.sent.clear()
    await room.dispatcher.accept(IncomingMessage(dm, "$again", CAMILLE, "!mes-donnees"))
    await room.dispatcher.drain()
    assert [(s.room_id, s.reply_to) for s in chat.sent] == [(dm, "$again")]
    assert len(chat.direct_rooms) == 1  # the same direct room, not a new one

    # Derived from the command: answered again after a crash, deduplicated.
    assert [s.txn_id for s in chat.sent] == [txn_id_for("$again")]


async def test_my_data_stays_out_of_the_room_when_no_direct_room_can_be_opened(
    room: Room,
) -> None:
    async def refuse(user_id: str) -> str:
        raise SendError("M_FORBIDDEN", permanent=True)

    room.chat.open_direct_room = refuse  # type: ignore[method-assign]
    await room.say(f"!mentor ajouter {CAMILLE} Superset", sender=MOD)
    await room.dispatcher.accept(IncomingMessage(ROOM, "$data", CAMILLE, "!mes-donnees"))
    await room.dispatcher.drain()
    (only,) = room.chat.sent
    assert isinstance(only.message, Message) and only.room_id == ROOM
    assert only.message.body.startswith("Je n'ai pas pu ouvrir de conversation privée")
    assert "Superset" not in only.message.body


async def test_a_moderator_who_removes_themself_leaves_no_trace_in_others_data(
    room: Room,
) -> None:
    """The mentors they added stay; who added them is no longer told."""
    await room.say(f"!mentor ajouter {CAMILLE} Superset", sender=MOD)
    await room.say(f"!mentor ajouter {MOD} Grist", sender=MOD)  # a mentor too
    await room.say("!mentor retirer-moi", sender=MOD)
    mine = (await room.say("!mes-donnees", sender=CAMILLE)).body
    assert "– Superset (ajouté le" in mine
    assert MOD not in mine and "par (personne retirée))" in mine
    assert all(MOD not in (t.added_by, t.user_id) for t in await room.storage.mentors.topics())


async def test_english_directory(room: Room) -> None:
    services = room.dispatcher.services
    room.dispatcher.services = dataclasses.replace(
        services, renderer=Renderer("en", services.renderer.tz)
    )
    added = await room.say(f"!mentor add {CAMILLE} Superset", sender=MOD)
    assert added.body.startswith(f"✅ Camille Dupont ({CAMILLE}) is a mentor for: Superset.")
    found = await room.say("!mentors superset")
    assert found.body.startswith('🤝 Mentors for "Superset":')
    lines = (await room.say("!mentor add nobody Grist", sender=MOD)).body.splitlines()
    assert lines == [
        '"nobody" is not a Matrix ID (expected: @name:server).',
        "Syntax: !mentor add @name:server topic1, topic2 — e.g. "
        "!mentor add @camille.dupont:agent.tchap.gouv.fr Superset, Grist",
    ]
    assert "Nothing in the mentor directory." in (await room.say("!my-data")).body


async def test_pill_instead_of_a_typed_id(room: Room) -> None:
    """Clients put the display name in the body and the ID in `m.mentions`."""
    msg = IncomingMessage(
        ROOM, "$pill", MOD, "!mentor ajouter Camille Dupont : Superset, Grist", None, (CAMILLE,)
    )
    reply = await room.dispatcher.answer(msg)
    assert isinstance(reply, Message)
    assert reply.body.startswith(f"✅ Camille Dupont ({CAMILLE}) est mentor pour : Superset, Grist")
    # A pill whose text is not the person's name is not guessed at.
    odd = IncomingMessage(ROOM, "$odd", MOD, "!mentor ajouter Cam Grist", None, (CAMILLE,))
    reply = await room.dispatcher.answer(odd)
    assert isinstance(reply, Message)
    assert reply.body.startswith("« Cam » n'est pas un identifiant Matrix")
