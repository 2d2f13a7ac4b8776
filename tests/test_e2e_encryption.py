"""End-to-end encryption on a real Synapse, with a client that has its own crypto store."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.conftest import bot_config, eventually, running

pytestmark = pytest.mark.e2e


def bot_devices(hs: DevHomeserver, session_file: Path) -> list[str]:
    token = json.loads(session_file.read_text())["access_token"]
    req = urllib.request.Request(
        f"{hs.url}/_matrix/client/v3/devices", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [d["device_id"] for d in json.load(resp)["devices"]]


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


async def test_direct_room_for_a_personal_reminder_is_encrypted(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!prochain")
        answer = await alice.reply_to(room, asked, bot_id)
        await alice.client.room_send(
            room,
            "m.reaction",
            {
                "m.relates_to": {
                    "rel_type": "m.annotation",
                    "event_id": answer.event_id,
                    "key": "🔔",
                }
            },
        )
        await eventually(lambda: bool(alice.invites))
        direct = alice.invites[0]
        await alice.client.join(direct)

        def confirmation() -> Any:
            return next(
                (
                    e
                    for e in alice.events.get(direct, [])
                    if e.sender == bot_id and "🔔" in str(e.source.get("content", {}).get("body"))
                ),
                None,
            )

        await eventually(lambda: confirmation() is not None)
        assert alice.client.rooms[direct].encrypted
        assert confirmation().decrypted
        assert body(confirmation()).startswith("🔔 C'est noté")
