"""End-to-end encryption on a real Synapse, with a client that has its own crypto store."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, bot_devices, eventually, running

pytestmark = [pytest.mark.e2e, pytest.mark.long(30)]


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


async def test_encrypted_room_answers_and_survives_a_restart(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)) as app:
        device = app.chat.device_id
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda")
        answer = await alice.reply_to(room, asked, bot_id)
        assert answer.decrypted  # it travelled encrypted
        assert body(answer).startswith("📅 Prochaines séances BlueHats")

    session = tmp_path / "bot" / "session.json"
    before = bot_devices(synapse, session)
    assert device in before
    # Restarted on the same storage: same device, still reads and answers.
    async with running(BotApp(cfg)) as app:
        assert app.chat.device_id == device
        asked = await alice.say(room, "!aide")
        answer = await alice.reply_to(room, asked, bot_id)
        assert answer.decrypted
        assert "!agenda" in body(answer)
    assert bot_devices(synapse, session) == before  # no new device


async def test_bell_reminder_in_an_encrypted_direct_room_and_taken_back(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!prochain")
        answer = await alice.reply_to(room, asked, bot_id)
        bell = await alice.react(room, answer.event_id)
        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def from_bot(start: str) -> Any:
            return next(
                (
                    e
                    for e in alice.events.get(direct, [])
                    if e.sender == bot_id
                    and str(e.source.get("content", {}).get("body")).startswith(start)
                ),
                None,
            )

        await eventually(lambda: from_bot("🔔 C'est noté") is not None)
        assert alice.client.rooms[direct].encrypted
        assert from_bot("🔔 C'est noté").decrypted

        # She takes her 🔔 back: the reminder is cancelled, and she is told in private.
        await alice.client.room_redact(room, bell)
        await eventually(lambda: from_bot("✅ Rappel annulé pour la séance") is not None)
        # Her reminders are hers: listed in the direct room, the room only told so.
        asked = await alice.say(room, "!mes-rappels")
        said = await alice.reply_to(room, asked, bot_id)
        assert body(said) == "🔒 Je vous ai répondu en message privé."
        await eventually(lambda: from_bot("Vous n'avez aucun rappel") is not None)


def withhold_room_key(user: Any, room: str) -> Any:
    """Encrypt `user`'s next messages with a room key nobody gets until `share()` is awaited.

    As when a client's key-sharing to-device message is late or lost. The key
    sent later is the one at index 0, so the first messages become readable.
    """
    olm = user.client.olm
    olm.create_outbound_group_session(room)
    session = olm.outbound_group_sessions[room]
    first_key = session.session_key
    session.__class__ = type(
        "Withheld", (type(session),), {"session_key": property(lambda _self: first_key)}
    )
    session.shared = True  # encrypt without sending the key

    async def share() -> None:
        session.shared = False
        await user.client.share_group_session(room, ignore_unverified_devices=True)

    return share


def pending_undecrypted(storage: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(storage / "bluehats.db") as db:
        return db.execute(
            "SELECT event_id, status FROM undecrypted ORDER BY received_at"
        ).fetchall()


async def test_command_read_once_its_late_room_key_arrives(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", matrix={"undecryptable_after": "5m"})
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        share = withhold_room_key(alice, room)
        asked = await alice.say(room, "!aide")
        await eventually(lambda: pending_undecrypted(tmp_path / "bot") == [(asked, "pending")])
        await share()
        answer = await alice.reply_to(room, asked, bot_id)
        assert "!agenda" in body(answer)
        assert pending_undecrypted(tmp_path / "bot") == [(asked, "decrypted")]


async def test_unreadable_message_answered_once_per_key(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", matrix={"undecryptable_after": "2s"})
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        withhold_room_key(alice, room)  # and never shared
        first = await alice.say(room, "!agenda")
        told = await alice.reply_to(room, first, bot_id)
        assert body(told) == (
            "🔒 Je n'ai pas pu déchiffrer votre message : sa clé de chiffrement ne m'est pas "
            "parvenue. Si c'était une commande pour moi, renvoyez-la."
        )
        # A second message with the same missing key: no second answer.
        second = await alice.say(room, "!aide")
        await eventually(
            lambda: pending_undecrypted(tmp_path / "bot") == [(first, "told"), (second, "dropped")]
        )
        notices = [
            e for e in alice.events[room] if e.sender == bot_id and "body" in e.source["content"]
        ]
        assert [e.event_id for e in notices] == [told.event_id]
