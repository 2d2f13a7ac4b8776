"""nio's crypto store under a key of the operator's (storage.key / BLUEHATS_STORE_KEY) on a
real Synapse, read by a member's own E2EE client: a store made without a key is pickled
again at the first start with one (same device, the member still reads the bot and the
bot her), restarts keep it, a wrong key stops the start with one clear error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import BotApp, StartupError
from bot.config import Config
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, bot_devices, running

pytestmark = pytest.mark.e2e

STORE_KEY = "Zk3-operator-store-key-for-the-test-9QxW"


def with_store_key(cfg: Config, key: str) -> Config:
    return cfg.model_copy(
        update={"storage": cfg.storage.model_copy(update={"key": SecretStr(key)})}
    )


async def answered(alice: Any, room: str, command: str, bot_id: str) -> str:
    """The bot's answer, checked to have travelled encrypted."""
    answer = await alice.reply_to(room, await alice.say(room, command), bot_id)
    assert answer.decrypted
    return str(answer.source["content"]["body"])


async def test_store_key_migration_restart_and_wrong_key(
    synapse: DevHomeserver, tmp_path: Path, crypto_user, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    session_file = tmp_path / "bot" / "session.json"
    alice = await crypto_user()

    # Made without a key, as every store was before: said at start.
    async with running(BotApp(cfg)) as app:
        assert app.chat is not None
        device = app.chat.device_id
        room = await alice.encrypted_room_with(bot_id)
        assert "!agenda" in await answered(alice, room, "!aide", bot_id)
    assert "the crypto store is protected with nio's default key" in caplog.text
    devices = bot_devices(synapse, session_file)

    # The first start with a key: the store is pickled again, the device kept. The
    # bot reads with Alice's room key of before (a Megolm inbound session of the
    # store), she reads its answer (its room key sent over their Olm session).
    keyed = with_store_key(cfg, STORE_KEY)
    caplog.clear()
    async with running(BotApp(keyed)) as app:
        assert app.chat is not None and app.chat.device_id == device
        agenda = await answered(alice, room, "!agenda", bot_id)
        assert agenda.startswith("📅 Prochaines séances BlueHats")
    assert "secrets pickled again with the key derived from" in caplog.text
    assert "protected with nio's default key" not in caplog.text

    # Restarted with the same key: nothing to pickle again, same device, still read.
    caplog.clear()
    async with running(BotApp(keyed)) as app:
        assert app.chat is not None and app.chat.device_id == device
        assert await answered(alice, room, "!agenda", bot_id) == agenda
    assert "pickled again" not in caplog.text
    assert bot_devices(synapse, session_file) == devices  # never a new device

    # Another key: the start ends with the reason, not as a new device.
    wrong = "another-key-that-is-long-enough"
    refused = r"does not open with storage\.key or BLUEHATS_STORE_KEY"
    with pytest.raises(StartupError, match=refused):
        await BotApp(with_store_key(cfg, wrong)).run(handle_signals=False)
    assert bot_devices(synapse, session_file) == devices
    assert STORE_KEY not in caplog.text and wrong not in caplog.text
