"""Exactly once after a long outage, on a real Synapse: a pending answer is
looked for in the room before it is sent again."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, eventually, running

pytestmark = pytest.mark.e2e


def left_pending(database: Path, *commands: tuple[str, str]) -> None:
    """As a crash between the answers and their marks, two days ago, leaves them."""
    with sqlite3.connect(database) as db:
        for event_id, body in commands:
            db.execute(
                "UPDATE inbox SET status = 'pending', body = ?, received_at = ? WHERE event_id = ?",
                (body, int(time.time()) - 2 * 86400, event_id),
            )


def status(database: Path, event_id: str) -> str:
    with sqlite3.connect(database) as db:
        (found,) = db.execute("SELECT status FROM inbox WHERE event_id = ?", (event_id,)).fetchone()
    return str(found)


async def test_a_pending_answer_older_than_a_day_is_not_posted_twice(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    """The crash window (answers sent, not yet marked) two days before a
    restart: Synapse deduplicates a transaction id for a day, and for its
    device only. On the same device the bot reads its own answers back, the
    private one in the encrypted direct room too; on a new device (the store
    lost its session) a plain resend would post a second answer: the room
    holds one, and the private answer, unreadable now, is abandoned."""
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await make_user("alice")
    database = cfg.storage.path / "bluehats.db"
    async with running(BotApp(cfg)) as app:
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        first = await alice.send(room, "!agenda")
        await alice.reply_to(room, first, bot_id)
        private = await alice.send(room, "!mes-donnees")
        await alice.reply_to(room, private, bot_id)  # the notice, after the private answer
        old_device = app.chat.device_id

    def answered() -> bool:
        return "pending" not in {status(database, first), status(database, private)}

    # Same device: both found (the private answer decrypted), nothing sent.
    left_pending(database, (first, "!agenda"), (private, "!mes-donnees"))
    async with running(BotApp(cfg)) as app:
        assert app.chat.device_id == old_device
        await eventually(answered)
        assert app.metrics.abandoned.labels("reply")._value.get() == 0
    assert status(database, first) == status(database, private) == "done"

    session = cfg.storage.path / "session.json"
    session.unlink()  # the next start logs in again: a new device
    left_pending(database, (first, "!agenda"), (private, "!mes-donnees"))
    async with running(BotApp(cfg)) as app:
        assert app.chat.device_id != old_device
        await eventually(answered)
        await alice.ask(room, "!aide", bot_id)  # and the bot answers on
        assert app.metrics.abandoned.labels("reply")._value.get() == 1
    assert json.loads(session.read_text())["device_id"] != old_device
    assert status(database, first) == "done"  # found in the room, marked as if just sent
    assert status(database, private) == "failed"  # the direct room cannot tell: abandoned
    await alice.sync(0)
    assert len(alice.replies(room, first, bot_id)) == 1
    assert len(alice.replies(room, private, bot_id)) == 1
