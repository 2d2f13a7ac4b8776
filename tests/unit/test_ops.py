"""The error room handler: what it forwards, how it gathers, and that it never loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from zoneinfo import ZoneInfo

from bot.chat import SendError
from bot.ops import ErrorRoom
from bot.render import Message, Renderer
from tests.fakes import FakeChat

ROOM = "!errors:example.org"


async def test_first_alert_at_once_then_gathered_and_capped() -> None:
    chat = FakeChat()
    handler = ErrorRoom(ROOM, chat, Renderer("fr", ZoneInfo("Europe/Paris")), every=0.2)
    logger = logging.getLogger("bot.test_ops")
    logger.addHandler(handler)
    task = asyncio.create_task(handler.run())
    try:
        logger.error("first <b>failure</b>")
        await asyncio.sleep(0.05)
        assert len(chat.sent) == 1
        for i in range(14):
            logger.error("failure %d", i)
        logger.warning("an ordinary warning")  # not from a source: not forwarded
        logging.getLogger("bot.ops").error("about the error room itself")  # never loops
        await asyncio.sleep(0.05)
        assert len(chat.sent) == 1  # the rest waits for the next slot
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logger.removeHandler(handler)
    first, second = chat.sent
    assert isinstance(first.message, Message) and isinstance(second.message, Message)
    assert first.room_id == ROOM
    assert "ERROR bot.test_ops : first <b>failure</b>" in first.message.body
    assert "first &lt;b&gt;failure&lt;/b&gt;" in first.message.html  # escaped
    lines = second.message.body.splitlines()
    assert lines[0] == "🚨 Incident du bot BlueHats :"
    assert len([line for line in lines if line.startswith("• ")]) == 10
    assert lines[-1] == "… et 4 autre(s) ; voir les journaux du bot."
    assert "ordinary" not in second.message.body and "itself" not in second.message.body


async def test_alerts_kept_while_the_room_cannot_be_reached() -> None:
    chat = FakeChat(failures=[SendError("not synced yet", permanent=False)])
    handler = ErrorRoom(ROOM, chat, Renderer("fr", ZoneInfo("Europe/Paris")), every=0.05)
    logging.getLogger("bot.feeds").addHandler(handler)
    task = asyncio.create_task(handler.run())
    try:
        logging.getLogger("bot.feeds").warning("feed https://x.example/feed failed: HTTP 500")
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logging.getLogger("bot.feeds").removeHandler(handler)
    (post,) = chat.sent
    assert isinstance(post.message, Message)
    assert "WARNING bot.feeds : feed https://x.example/feed failed: HTTP 500" in post.message.body
