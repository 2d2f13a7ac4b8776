"""An `.ics` file asked for in an encrypted room arrives encrypted, and decrypts to the agenda."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import icalendar
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    MatrixRoom,
    MemoryDownloadResponse,
    RoomCreateResponse,
    RoomEncryptedFile,
    RoomSendResponse,
)
from nio.crypto.attachments import decrypt_attachment

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.conftest import PASSWORD, bot_config, running, unique

pytestmark = pytest.mark.e2e


async def test_agenda_ics_in_an_encrypted_room(synapse: DevHomeserver, tmp_path: Path) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    user_id = synapse.register(unique("crypto"), PASSWORD)
    store = tmp_path / "alice-store"
    store.mkdir()
    alice = AsyncClient(
        synapse.url,
        user_id,
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
    )
    files: list[RoomEncryptedFile] = []

    async def on_file(room: MatrixRoom, event: RoomEncryptedFile) -> None:
        files.append(event)

    alice.add_event_callback(on_file, RoomEncryptedFile)  # type: ignore[arg-type]
    assert isinstance(await alice.login(PASSWORD, device_name="test"), LoginResponse)
    # E2EE needs nio's own loop (key upload, queries, to-device messages).
    syncing = asyncio.create_task(alice.sync_forever(timeout=500, full_state=True))
    try:
        async with running(BotApp(cfg)):
            created = await alice.room_create(
                invite=[bot_id],
                initial_state=[
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    }
                ],
            )
            assert isinstance(created, RoomCreateResponse), created
            room = created.room_id
            await eventually(lambda: bot_id in getattr(alice.rooms.get(room), "users", {}))
            # The bot's device keys must be known before sharing the room key.
            await eventually(lambda: any(alice.device_store.active_user_devices(bot_id)))
            sent = await alice.room_send(
                room,
                "m.room.message",
                {"msgtype": "m.text", "body": "!agenda ics"},
                ignore_unverified_devices=True,
            )
            assert isinstance(sent, RoomSendResponse), sent
            await eventually(lambda: bool(files))
            (event,) = files
            assert event.sender == bot_id
            assert event.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == (
                sent.event_id
            )
            assert "url" not in event.source["content"]  # only the encrypted `file`
            resp = await alice.download(mxc=event.url)
            assert isinstance(resp, MemoryDownloadResponse), resp
            assert b"BEGIN:VCALENDAR" not in resp.body  # stored encrypted on the server
            data = decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv)
            summaries = [
                str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(data).walk("VEVENT")
            ]
            assert summaries  # the sample agenda's upcoming sessions
    finally:
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
        await alice.close()


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.1)
