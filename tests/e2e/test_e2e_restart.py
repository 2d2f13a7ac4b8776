"""The real entry point (`bluehats-bot run`, as in the Docker image), killed and restarted."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import urllib.request
from pathlib import Path

import pytest

from bot.devserver import DevHomeserver
from tests.helpers import bot_process, eventually, sample_agenda

pytestmark = pytest.mark.e2e


def devices(hs: DevHomeserver, token: str) -> list[str]:
    req = urllib.request.Request(
        f"{hs.url}/_matrix/client/v3/devices", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [d["device_id"] for d in json.load(resp)["devices"]]


def pending(storage: Path) -> int:
    """Commands recorded and not answered yet."""
    with sqlite3.connect(storage / "bluehats.db") as db:
        return int(db.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone()[0])


async def test_kill_and_restart_answers_each_command_exactly_once(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    # The calendar file is broken while the bot is down: after the restart the
    # agenda served comes from the sessions stored at the last good refresh.
    calendar = tmp_path / "agenda.ics"
    shutil.copyfile(sample_agenda(), calendar)
    # JSON logs here (the other tests use text): one object per line.
    bot, bot_id, storage, password = bot_process(
        synapse, tmp_path, ops={"log_format": "json"}, agenda={"sources": [str(calendar)]}
    )
    alice = await make_user("alice")

    # Invited before its very first start: the waiting invite is handled.
    room = await alice.create_room(invite=[bot_id])
    await bot.start()
    await alice.wait_joined(room, bot_id)
    first = await alice.send(room, "!agenda")
    listed = (await alice.reply_to(room, first, bot_id)).body
    assert "Café BlueHats" in listed

    session_file = storage / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    session = json.loads(session_file.read_text())
    assert session["user_id"] == bot_id
    devices_before = devices(synapse, session["access_token"])
    assert session["device_id"] in devices_before

    await bot.kill()
    calendar.write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:oops\n")
    # Commands typed while the bot is down are answered when it is back.
    while_down = await alice.send(room, "!aide")
    # Then a busy room: more events than a default sync timeline (10) holds.
    for i in range(15):
        await alice.send(room, f"discussion {i}")
    # Invited while down: joined and answered after the restart.
    second_room = await alice.create_room(invite=[bot_id])
    # Simulate the worst crash window: the answer to `first` was sent but not
    # yet marked done. The restart must resend it with the same transaction id,
    # which the homeserver deduplicates.
    with sqlite3.connect(storage / "bluehats.db") as db:
        db.execute(
            "UPDATE inbox SET status = 'pending', body = '!agenda' WHERE event_id = ?", (first,)
        )

    await bot.start()
    await alice.reply_to(room, while_down, bot_id)
    await alice.wait_joined(second_room, bot_id)
    assert (await alice.ask(second_room, "!agenda", bot_id)).body == listed
    after = await alice.send(room, "!agenda demain")
    await alice.reply_to(room, after, bot_id)
    # No command left pending: the bot has nothing left to answer. Stopped
    # then, the room holds all it will ever have answered (no wait for a
    # late duplicate).
    await eventually(lambda: pending(storage) == 0)
    assert await bot.terminate() == 0
    await alice.sync(0)

    assert len(alice.replies(room, first, bot_id)) == 1
    assert len(alice.replies(room, while_down, bot_id)) == 1
    assert len(alice.replies(room, after, bot_id)) == 1
    # Same device across restarts: no new device per start.
    assert json.loads(session_file.read_text())["device_id"] == session["device_id"]
    assert devices(synapse, session["access_token"]) == devices_before
    with sqlite3.connect(storage / "bluehats.db") as db:
        assert db.execute("SELECT count(*) FROM inbox WHERE status = 'pending'").fetchone() == (0,)
        # Answered commands keep no text (personal data: the minimum).
        assert db.execute("SELECT count(*) FROM inbox WHERE body IS NOT NULL").fetchone() == (0,)

    log = bot.log.read_text()
    assert password not in log and session["access_token"] not in log
    assert "Traceback" not in log
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["message"].startswith("ready: ") for r in records)
    # The refresh could not read the calendar: the answers came from the stored sessions.
    assert any("agenda.ics failed: not an iCalendar file" in r["message"] for r in records)
