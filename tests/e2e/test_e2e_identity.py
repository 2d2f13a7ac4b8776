"""The bot's cross-signed identity, seen by Element's own stack on a real Synapse.

The client is matrix-js-sdk with its Rust crypto (tests/jsclient), in
"exclude insecure devices" mode (MSC4153, `OnlySignedDevicesIsolationMode`):
it shares no room key with a device its owner has not cross-signed and
refuses what such a device sends. Before the bot cross-signed itself, this
client got no answer at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import SecretStr

from bot.app import BotApp
from bot.config import Config, OpsConfig
from bot.devserver import DevHomeserver, free_port
from bot.matrix.secret_storage import encode_recovery_key
from tests.helpers import bot_config, get, running, with_moderators
from tests.js_client import JsClient

pytestmark = [pytest.mark.e2e, pytest.mark.long(40)]

CLEAN = {"colour": "NONE", "reason": None}  # no shield, no warning: as a trusted sender


async def encrypted_room_with(js: JsClient, bot_id: str) -> str:
    room = await js.create_room(invite=[bot_id], encrypted=True)
    await js.wait_event(
        lambda e: (
            e["room_id"] == room
            and e["type"] == "m.room.member"
            and e.get("state_key") == bot_id
            and (e["content"] or {}).get("membership") == "join"
        )
    )
    return room


def assert_readable(event: dict[str, Any]) -> None:
    """Travelled encrypted, decrypted, and shown without any warning about the sender."""
    assert event["encrypted"], event
    assert event["decryption_failure"] is None, event
    assert event["shield"] == CLEAN, event


async def signed_by_owner(js: JsClient, user_id: str, device_id: str) -> bool:
    """As the client sees it once the device list update reached it (within 30 s)."""
    async with asyncio.timeout(30):
        while True:
            status = await js.device_status(user_id, device_id)
            if status is not None:
                return bool(status["signedByOwner"])
            await asyncio.sleep(0.2)


async def readable_answer(js: JsClient, room: str, command: str, bot_id: str) -> dict[str, Any]:
    """The bot's answer to `command`, once it is checked readable and without warning."""
    answer = await js.reply_to(room, await js.send(room, command), bot_id)
    assert_readable(answer)
    return answer


def text(event: dict[str, Any]) -> str:
    return str(event["content"]["body"])


def moved(cfg: Config, storage: Path, **matrix: Any) -> Config:
    """The same account with another storage (a lost volume), maybe other matrix settings."""
    return cfg.model_copy(
        update={
            "storage": cfg.storage.model_copy(update={"path": storage}),
            "matrix": cfg.matrix.model_copy(update=matrix),
        }
    )


async def test_element_excluding_insecure_devices_reads_the_bot_in_a_room_and_a_dm(
    synapse: DevHomeserver, tmp_path: Path, js_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", broadcasts={"pace": "0s"})
    js = await js_user("element")
    assert js.user_id is not None
    cfg = with_moderators(cfg, js.user_id)
    async with running(BotApp(cfg)) as app:
        assert app.chat is not None
        room = await encrypted_room_with(js, bot_id)

        # (a) the client shares its room key with the bot: the bot reads and answers.
        # (b) and its answers decrypt without a warning.
        answer = await readable_answer(js, room, "!aide", bot_id)
        assert "!agenda" in text(answer)
        agenda = await readable_answer(js, room, "!agenda", bot_id)
        assert text(agenda).startswith("📅 Prochaines séances BlueHats")

        status = await js.device_status(bot_id, app.chat.device_id)
        assert status is not None and status["signedByOwner"]

        # A broadcast (a programme-change notice to the subscribed room) too.
        await readable_answer(js, room, "!abonner rappels", bot_id)
        day = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=5)
        added = await readable_answer(
            js, room, f'!session ajouter {day:%d/%m/%Y} 14h-15h "Atelier Grist"', bot_id
        )
        sid = re.search(r"Identifiant : (\w+)", text(added)).group(1)  # type: ignore[union-attr]
        await readable_answer(js, room, f"!session modifier {sid} 16h-17h", bot_id)
        notice = await js.wait_event(
            lambda e: (
                e["room_id"] == room
                and e["sender"] == bot_id
                and str((e["content"] or {}).get("body", "")).startswith(
                    "⚠️ Changement de programme"
                )
            )
        )
        assert_readable(notice)

        # A personal reminder by 🔔: confirmed in an encrypted direct room.
        await js.react(room, agenda["event_id"], "🔔")
        invite = await js.wait_invite()
        direct = invite["room_id"]
        await js.join(direct)
        confirmation = await js.wait_event(
            lambda e: (
                e["room_id"] == direct and e["sender"] == bot_id and e["type"] == "m.room.message"
            )
        )
        assert_readable(confirmation)
        assert text(confirmation).startswith("🔔 C'est noté")


async def test_restart_keeps_the_same_signed_device_and_publishes_nothing_new(
    synapse: DevHomeserver, tmp_path: Path, js_user, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    js = await js_user("element")
    recovery_file = tmp_path / "bot" / "recovery-key.txt"
    async with running(BotApp(cfg)) as app:
        assert app.identity is not None and app.identity.action == "created"
        device = app.identity.device_id
        room = await encrypted_room_with(js, bot_id)
        await readable_answer(js, room, "!aide", bot_id)
    recovery_key = recovery_file.read_text().strip()
    assert recovery_file.stat().st_mode & 0o777 == 0o600
    # The log says where the key is, never the key itself.
    assert str(recovery_file) in caplog.text
    assert recovery_key not in caplog.text
    master = await js.cross_signing_key(bot_id)
    assert master is not None

    caplog.clear()
    async with running(BotApp(cfg)) as app:
        assert app.identity is not None
        assert (app.identity.device_id, app.identity.action) == (device, "checked")
        answer = await readable_answer(js, room, "!agenda", bot_id)
        assert text(answer).startswith("📅 Prochaines séances BlueHats")
    assert "created the bot's cross-signing identity" not in caplog.text
    assert "signed device" not in caplog.text
    assert recovery_file.read_text().strip() == recovery_key  # not written again
    assert await js.cross_signing_key(bot_id) == master
    assert await signed_by_owner(js, bot_id, device)


async def test_lost_volume_with_the_recovery_key_gives_a_new_device_the_same_identity(
    synapse: DevHomeserver, tmp_path: Path, js_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    js = await js_user("element")
    async with running(BotApp(cfg)) as app:
        assert app.identity is not None
        old_device = app.identity.device_id
        room = await encrypted_room_with(js, bot_id)
        await readable_answer(js, room, "!aide", bot_id)
    recovery_key = (tmp_path / "bot" / "recovery-key.txt").read_text().strip()
    master = await js.cross_signing_key(bot_id)
    assert master is not None

    # A new volume: nothing kept but the recovery key, given in the configuration.
    lost = moved(cfg, tmp_path / "new-volume", recovery_key=SecretStr(recovery_key))
    async with running(BotApp(lost)) as app:
        assert app.identity is not None
        assert app.identity.action == "recovered" and app.identity.problem is None
        new_device = app.identity.device_id
        assert new_device != old_device
        assert await signed_by_owner(js, bot_id, new_device)
        assert await js.cross_signing_key(bot_id) == master  # same identity
        # The room of before: the client shares its key with the new device, reads it.
        answer = await readable_answer(js, room, "!agenda", bot_id)
        assert text(answer).startswith("📅 Prochaines séances BlueHats")
    assert not (tmp_path / "new-volume" / "recovery-key.txt").exists()  # no new recovery key


async def test_element_opens_the_bots_secret_storage_with_its_recovery_key(
    synapse: DevHomeserver, tmp_path: Path
) -> None:
    """What an operator does in Element on the bot's account: "verify with recovery key"."""
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    async with running(BotApp(cfg)) as app:
        assert app.identity is not None
        master = app.identity.master_key
    recovery_key = (tmp_path / "bot" / "recovery-key.txt").read_text().strip()
    assert cfg.matrix.password is not None
    async with JsClient() as element:
        await element.start(
            synapse.url, bot_id, cfg.matrix.password.get_secret_value(), recovery_key=recovery_key
        )
        found = element.cross_signing
    assert found["master_key"] == master
    assert found["private_keys_cached"] == {
        "masterKey": True,
        "selfSigningKey": True,
        "userSigningKey": True,
    }
    assert found["private_keys_in_secret_storage"], found
    assert found["device_signed_by_owner"]


def write_config(cfg: Config, path: Path) -> Path:
    assert cfg.matrix.password is not None
    path.write_text(
        yaml.safe_dump(
            {
                "matrix": {
                    "homeserver": cfg.matrix.homeserver,
                    "user_id": cfg.matrix.user_id,
                    "password": cfg.matrix.password.get_secret_value(),
                },
                "storage": {"path": str(cfg.storage.path)},
                "agenda": {"sources": [s.url for s in cfg.agenda.sources]},
            }
        )
    )
    return path


def identity_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "identity", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


async def test_lost_volume_without_recovery_key_keeps_the_identity_and_says_what_to_do(
    synapse: DevHomeserver,
    tmp_path: Path,
    js_user,
    make_user,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    js = await js_user("element")
    alice = await make_user("alice")
    async with running(BotApp(cfg)):
        room = await encrypted_room_with(js, bot_id)
        await readable_answer(js, room, "!aide", bot_id)
    master = await js.cross_signing_key(bot_id)
    assert master is not None
    plain = await alice.create_room(invite=[bot_id])
    errors = await alice.create_room(invite=[bot_id])

    # A wrong recovery key (well-formed, of no storage of this account): refused, kept apart.
    wrong = moved(
        cfg, tmp_path / "wrong-key", recovery_key=SecretStr(encode_recovery_key(os.urandom(32)))
    )
    async with running(BotApp(wrong)) as app:
        assert app.identity is not None and not app.identity.device_signed
        assert app.identity.problem is not None
        assert "the recovery key does not open secret storage key" in app.identity.problem
    assert await js.cross_signing_key(bot_id) == master

    port = free_port()
    ops = OpsConfig(
        http=f"127.0.0.1:{port}", error_room=errors, error_room_every=timedelta(seconds=1)
    )
    lost = moved(cfg, tmp_path / "new-volume").model_copy(update={"ops": ops})
    caplog.set_level(logging.INFO)
    caplog.clear()
    async with running(BotApp(lost)) as app:
        assert app.identity is not None and app.identity.problem is not None
        device = app.identity.device_id
        problems = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(problems) == 1  # one clear line
        line = problems[0].getMessage()
        assert "cannot sign itself" in line and "matrix.recovery_key" in line
        assert "identity --config … --reset" in line

        # The operator sees it in the error room and on /healthz; the bot still answers.
        await alice.wait_joined(plain, bot_id)
        answer = await alice.ask(plain, "!aide", bot_id)
        assert "!agenda" in answer.source["content"]["body"]
        alert = await alice.wait_for(
            errors, lambda e: e.sender == bot_id and "matrix.recovery_key" in str(e.source)
        )
        assert alert.source["content"]["body"].startswith("🚨 Incident du bot BlueHats")
        status, health = await get(port, "/healthz")
        assert (status, health) == (
            200,
            f"degraded: device {device} is not cross-signed (see the log)\n",
        )
        metrics = (await get(port, "/metrics"))[1]
        assert "bluehats_identity_cross_signed 0.0" in metrics

    # Nothing was replaced: same master key, the new device unsigned.
    assert await js.cross_signing_key(bot_id) == master
    assert not await signed_by_owner(js, bot_id, device)

    # The operator looks, then replaces the identity explicitly.
    config = write_config(lost, tmp_path / "config.yaml")
    shown = identity_cli(config)
    assert shown.returncode == 1, shown.stderr
    assert f"device:             {device}" in shown.stdout
    assert "device signed:      no" in shown.stdout
    assert "--reset" in shown.stdout

    reset = identity_cli(config, "--reset")
    assert reset.returncode == 0, reset.stderr
    assert "device signed:      yes" in reset.stdout
    new_recovery_key = reset.stdout.strip().splitlines()[-1].strip()
    assert len(new_recovery_key.split(" ")) == 12
    assert new_recovery_key not in reset.stderr  # printed once, never logged
    async with asyncio.timeout(30):  # once the client hears of the new identity
        while await js.cross_signing_key(bot_id) == master:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.2)
    assert await js.cross_signing_key(bot_id) is not None
    assert await signed_by_owner(js, bot_id, device)

    # The device is now trusted: an Element client in strict mode gets its answers.
    async with running(BotApp(lost)) as app:
        assert app.identity is not None and app.identity.trusted
        await readable_answer(js, room, "!aide", bot_id)
