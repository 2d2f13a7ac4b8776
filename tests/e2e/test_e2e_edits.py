"""Edited commands on a real Synapse: the answer is edited in place, once, across restarts."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import DB_FILE, BotApp
from bot.devserver import DevHomeserver
from tests.helpers import User, bot_config, eventually, running

pytestmark = pytest.mark.e2e

SUPERSET = "Atelier BlueHats : tableaux de bord avec Superset"  # in the sample agenda
NO_GRIST = "Aucune séance à venir ne correspond à « grist »"


def edit_of(event_id: str, body: str) -> dict[str, Any]:
    """An edit's content as Element sends it."""
    return {
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }


def replacing(event: Any, event_id: str, sender: str) -> bool:
    relates = event.source.get("content", {}).get("m.relates_to", {})
    return (
        event.sender == sender
        and relates.get("rel_type") == "m.replace"
        and relates.get("event_id") == event_id
    )


def messages_from(user: User, room: str, sender: str) -> list[Any]:
    return [
        e
        for e in user.events.get(room, [])
        if e.sender == sender and e.source.get("type") == "m.room.message"
    ]


async def test_an_edited_command_edits_the_answer_once_across_restarts(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(synapse, storage)
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        asked = await alice.send(room, "!agenda grist")
        answer = await alice.reply_to(room, asked, bot_id)
        assert NO_GRIST in answer.source["content"]["body"]

        # Alice corrects her command with her client's "edit".
        edited_at = time.monotonic()
        fixed = await alice.send(room, "* !agenda superset", **edit_of(asked, "!agenda superset"))
        replacement = await alice.wait_for(room, lambda e: replacing(e, answer.event_id, bot_id))
        latency = time.monotonic() - edited_at
        content = replacement.source["content"]
        new = content["m.new_content"]
        assert new["msgtype"] == "m.notice" and SUPERSET in new["body"]
        assert SUPERSET in new["formatted_body"] and NO_GRIST not in new["body"]
        # The fallback for clients that do not know edits.
        assert content["body"].startswith("* ") and SUPERSET in content["body"]
        assert latency < 5, latency

    # The worst crash window: the edit's answer was sent, not yet marked done.
    with sqlite3.connect(storage / DB_FILE) as db:
        db.execute(
            "UPDATE inbox SET status = 'pending', body = '!agenda superset' WHERE event_id = ?",
            (fixed,),
        )
    # Typed and corrected while the bot is down: answered once, with the new text.
    typo = await alice.send(room, "!agneda")
    await alice.send(room, "* !aide", **edit_of(typo, "!aide"))

    async with running(BotApp(cfg)):
        late = await alice.reply_to(room, typo, bot_id)
        assert "!agenda" in late.source["content"]["body"]  # the help
        assert "agneda" not in late.source["content"]["body"]
        # Answers come in order: once this one is answered, nothing older is pending.
        await alice.ask(room, "!aide", bot_id)
        await alice.sync(500)

    mine = messages_from(alice, room, bot_id)
    # The answer, its edit, the late answer, the last help: nothing twice.
    assert len(mine) == 4, [e.source["content"].get("body", "")[:40] for e in mine]
    assert len([e for e in mine if replacing(e, answer.event_id, bot_id)]) == 1
    assert not [e for e in mine if replacing(e, late.event_id, bot_id)]
    with sqlite3.connect(storage / DB_FILE) as db:
        assert db.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM inbox WHERE body IS NOT NULL").fetchone() == (0,)


async def test_an_edit_in_an_encrypted_room_edits_the_answer(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda grist")
        answer = await alice.reply_to(room, asked, bot_id)
        assert NO_GRIST in answer.source["content"]["body"]
        await alice.say(room, "* !agenda superset", **edit_of(asked, "!agenda superset"))

        def replacement() -> Any:
            events = alice.events.get(room, [])
            return next((e for e in events if replacing(e, answer.event_id, bot_id)), None)

        await eventually(lambda: replacement() is not None)
        event = replacement()
        assert event.decrypted  # sent encrypted, read by Alice's device
        assert SUPERSET in event.source["content"]["m.new_content"]["body"]
