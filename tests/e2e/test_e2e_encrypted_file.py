"""An `.ics` file asked for in an encrypted room arrives encrypted, and decrypts to the agenda."""

from __future__ import annotations

from pathlib import Path

import icalendar
import pytest
from nio import MemoryDownloadResponse, RoomEncryptedFile
from nio.crypto.attachments import decrypt_attachment

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, eventually, running

pytestmark = pytest.mark.e2e


async def test_agenda_ics_in_an_encrypted_room(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!agenda ics")

        def files() -> list[RoomEncryptedFile]:
            return [e for e in alice.events.get(room, []) if isinstance(e, RoomEncryptedFile)]

        await eventually(lambda: bool(files()))
        (event,) = files()
        assert event.sender == bot_id
        assert event.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked
        assert "url" not in event.source["content"]  # only the encrypted `file`
        resp = await alice.client.download(mxc=event.url)
        assert isinstance(resp, MemoryDownloadResponse), resp
        assert b"BEGIN:VCALENDAR" not in resp.body  # stored encrypted on the server
        data = decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv)
        summaries = [str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(data).walk("VEVENT")]
        assert summaries  # the sample agenda's upcoming sessions
