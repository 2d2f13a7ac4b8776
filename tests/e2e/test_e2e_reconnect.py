"""The homeserver stops under the running bot and comes back.

The bot backs off, resumes, and no command answer is lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver, free_port
from bot.matrix.login import RECONNECT_MAX_WAIT_S
from tests.helpers import User, bot_config, get, running, unique

pytestmark = [pytest.mark.e2e, pytest.mark.long(40)]


# Long enough for nio's retry wait to reach its cap: it grows 0.2, 0.4, … 6.4 s
# (about 13 s in all), then stays at RECONNECT_MAX_WAIT_S. A minute down, as
# this test once waited, adds only more waits at the cap.
DOWNTIME_S = 2 * RECONNECT_MAX_WAIT_S


async def test_homeserver_restart_under_the_bot(tmp_path: Path) -> None:
    with DevHomeserver(tmp_path / "synapse") as hs:
        port = free_port()
        cfg, bot_id = bot_config(
            hs, tmp_path / "bot", ops={"http": f"127.0.0.1:{port}", "stuck_after": "10s"}
        )
        alice = await User(hs, unique("alice")).login()
        try:
            async with running(BotApp(cfg)):
                room = await alice.create_room(invite=[bot_id])
                await alice.wait_joined(room, bot_id)
                before_id = await alice.send(room, "!aide")
                await alice.reply_to(room, before_id, bot_id)
                assert await get(port, "/healthz") == (200, "ok\n")
                # A command sent just before the server goes away: the bot may
                # or may not have seen it; either way it is answered once.
                last = await alice.send(room, "!agenda")
                hs.stop()
                # The outage itself: the homeserver stays down this long, whatever the bot does.
                await asyncio.sleep(DOWNTIME_S)
                status, text = await get(port, "/healthz")
                assert status == 503 and text.startswith("stuck: no successful sync")
                hs.start()

                after_id = await alice.send(room, "!prochain")
                await alice.reply_to(room, after_id, bot_id, timeout=120)
                await alice.reply_to(room, last, bot_id, timeout=60)
                for _ in range(3):
                    await alice.sync(500)
                answers = [
                    e
                    for e in alice.events[room]
                    if e.sender == bot_id and e.source["content"].get("msgtype") == "m.notice"
                ]
                replied_to = [
                    e.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
                    for e in answers
                ]
                # Each of the three commands answered, none twice.
                assert sorted(replied_to) == sorted([before_id, last, after_id])
                assert (await get(port, "/healthz"))[0] == 200
                status, metrics = await get(port, "/metrics")
                for command in ("aide", "agenda", "prochain"):
                    assert f'bluehats_commands_total{{command="{command}"}} 1.0' in metrics
                assert "bluehats_reply_seconds_count 3.0" in metrics
                assert "bluehats_broadcasts_pending 0.0" in metrics
                lag = re.search(r"^bluehats_sync_lag_seconds (\S+)$", metrics, re.MULTILINE)
                assert lag and float(lag.group(1)) < 10
        finally:
            with contextlib.suppress(Exception):
                await alice.close()
