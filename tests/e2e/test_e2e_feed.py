"""The gazette feed, served on loopback, posted by the bot to a real Synapse room.

First poll: nothing posted. A new gazette entry: one post. A malformed feed:
logged, nothing posted; the next good poll works. Polls are triggered by
moving the bot's own scheduler job forward (the configured interval is 1 min).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import Server, bot_config, loopback_http, real_feed, running, with_new_entry

pytestmark = pytest.mark.e2e

GAZETTE_33 = "https://code.gouv.fr/fr/bluehats/gazette-33/"
GAZETTE_34 = "https://code.gouv.fr/fr/bluehats/gazette-34/"


def is_post(event: Any, bot_id: str) -> bool:
    content = event.source.get("content", {})
    return event.sender == bot_id and str(content.get("body", "")).startswith("📰")


async def logged(caplog: pytest.LogCaptureFixture, text: str, since: int = 0) -> None:
    async with asyncio.timeout(30):
        # Polling a log capture: there is no event to wait on.
        while not any(text in r.getMessage() for r in caplog.records[since:]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def poll_now(app: BotApp, caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Run the bot's feed job at once and wait for its log line."""
    since = len(caplog.records)
    assert app.scheduler is not None
    app.scheduler.modify_job("feed-poll", next_run_time=datetime.now(UTC))
    await logged(caplog, text, since)


async def test_feed_entries_posted_once_first_poll_silent_bad_feed_survived(
    synapse: DevHomeserver, tmp_path: Path, make_user, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.feeds")
    server = Server()
    async with loopback_http({"/feed.xml": server.handle}) as base:
        cfg, bot_id = bot_config(
            synapse,
            tmp_path / "bot",
            broadcasts={"pace": 0},
            gazette={"feed": f"{base}/feed.xml", "title_filter": "^Gazette BlueHats"},
        )
        alice = await make_user("alice")
        app = BotApp(cfg)
        async with running(app):
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            ok = await alice.ask(room, "!abonner gazette", bot_id)
            assert ok.source["content"]["body"].startswith("✅")

            # The poll at start: the 10 entries already there are only marked seen.
            await logged(caplog, "first poll, 10 entries marked seen")
            assert server.requests == 1

            # A webinar (filtered out) and a new gazette: one post, the gazette.
            server.body = with_new_entry(real_feed(), "Webinaire Superset", "https://x.example/w")
            server.body = good = with_new_entry(server.body, "Gazette BlueHats 🧢 n°33", GAZETTE_33)
            await poll_now(app, caplog, "1 post(s) queued")
            post = await alice.wait_for(room, lambda e: is_post(e, bot_id))
            assert post.source["content"]["body"] == (
                f"📰 Nouvelle publication BlueHats : « Gazette BlueHats 🧢 n°33 »\n🔗 {GAZETTE_33}"
            )
            assert f'<a href="{GAZETTE_33}">' in post.source["content"]["formatted_body"]

            # Broken feed: logged, nothing posted.
            server.body = b"<html><body>Maintenance</body></html>"
            await poll_now(app, caplog, "failed: not a usable feed")

            # Good again, with one more gazette: exactly one more post.
            server.body = with_new_entry(good, "Gazette BlueHats 🧢 n°34", GAZETTE_34)
            await poll_now(app, caplog, "1 post(s) queued")
            await alice.wait_for(room, lambda e: is_post(e, bot_id) and GAZETTE_34 in str(e.source))
            for _ in range(3):
                await alice.sync(300)
            bodies = [e.source["content"]["body"] for e in alice.events[room] if is_post(e, bot_id)]
            assert [b.splitlines()[0] for b in bodies] == [
                "📰 Nouvelle publication BlueHats : « Gazette BlueHats 🧢 n°33 »",
                "📰 Nouvelle publication BlueHats : « Gazette BlueHats 🧢 n°34 »",
            ]
            assert any("readable again" in r.getMessage() for r in caplog.records)
            assert server.requests == 4
