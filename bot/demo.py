"""`bluehats-bot demo`: the whole bot on a laptop, no Tchap account needed.

Starts a real Synapse on loopback in a temporary directory, registers the bot
and a demo user, creates a room, loads the sample agenda shipped in the
package, sends `!agenda` as the demo user and prints the bot's answer. Then it
keeps running so that anyone can log in with a Matrix client; Ctrl-C stops
everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Awaitable
from importlib.resources import files
from pathlib import Path
from typing import TypeVar

from nio import AsyncClient, LoginResponse, RoomCreateResponse, RoomMessageNotice, SyncResponse

from bot import config as configuration
from bot.app import BotApp
from bot.devserver import DevHomeserver, DevServerError, free_port, port_free, synapse_available
from bot.render import data_text as _  # the demo speaks the default language

log = logging.getLogger(__name__)
T = TypeVar("T")

DEMO_USER, DEMO_PASSWORD = "demo", "demo"
BOT_USER = "bluehats"
# The public agenda's port when free (another free port otherwise).
DEMO_WEB_PORT = 8080
ANSWER_TIMEOUT = 60.0


def sample_agenda() -> Path:
    return Path(str(files("bot") / "data" / "sample-agenda.ics"))


def run_demo(*, once: bool = False, log_file: Path | None = None) -> int:
    """`log_file`: where the bot's log lines go (None: the terminal)."""
    if not synapse_available():
        print("The demo needs Synapse: pip install 'bluehats-bot[demo]'", file=sys.stderr)
        return 1
    if log_file is not None:
        print(
            _("(The bot's log: %(file)s; --verbose shows it here.)") % {"file": log_file},
            flush=True,
        )
    try:
        status = asyncio.run(_demo(once))
    except DevServerError as exc:
        print(f"demo: the local homeserver failed: {exc}", file=sys.stderr)
        status = 1
    if status and log_file is not None:
        print(_("What the bot logged is in %(file)s.") % {"file": log_file}, file=sys.stderr)
    return status


async def _demo(once: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="bluehats-demo-") as tmp:
        work = Path(tmp)
        hs = DevHomeserver(work / "synapse")
        print(_("Starting a local Matrix server (Synapse)…"), flush=True)
        await asyncio.to_thread(hs.start)
        try:
            return await _with_server(hs, work, once)
        finally:
            await asyncio.to_thread(hs.stop)


async def _with_server(hs: DevHomeserver, work: Path, once: bool) -> int:
    bot_password = "bot-" + hs.secret[:12]
    bot_id = await asyncio.to_thread(hs.register, BOT_USER, bot_password)
    demo_id = await asyncio.to_thread(hs.register, DEMO_USER, DEMO_PASSWORD)
    web_port = DEMO_WEB_PORT if port_free(DEMO_WEB_PORT) else free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    user = AsyncClient(hs.url, demo_id, store_path=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app: BotApp | None = None
    bot_task: asyncio.Task[None] | None = None
    try:
        login = await user.login(DEMO_PASSWORD, device_name="demo")
        if not isinstance(login, LoginResponse):
            print(f"demo: login failed: {login}", file=sys.stderr)
            return 1
        # Created first: the demo room is also the community moderators' room
        # (`bot.moderator_rooms`), where @demo, its creator, is a moderator.
        room = await user.room_create(name=_("BlueHats demo"), invite=[bot_id])
        if not isinstance(room, RoomCreateResponse):
            print(f"demo: cannot create the room: {room}", file=sys.stderr)
            return 1
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": bot_password},
                "storage": {"path": str(work / "bot")},
                "bot": {"moderator_rooms": [room.room_id]},
                "agenda": {"sources": [str(sample_agenda())]},
                # The public agenda too: the printed address opens it in a browser.
                "web": {"http": f"127.0.0.1:{web_port}", "public_url": web_url},
            },
            env={},
        )
        app = BotApp(cfg)
        bot_task = asyncio.create_task(app.run(handle_signals=False), name="bot")
        await _wait_or_fail(app.ready.wait(), bot_task, "the bot did not start")
        answer = await _wait_or_fail(
            _ask(user, room.room_id, bot_id), bot_task, "the bot did not answer"
        )
        print("\n" + _('$ !agenda  (sent by @demo in the room "BlueHats demo")') + "\n")
        print(answer)
        print(
            "\n"
            + _(
                "— The bot is running. Log in with a Matrix client (Element, nheko…):\n"
                "  server: %(url)s\n"
                "  username: %(user)s   password: %(password)s\n"
                '  then type !help or !agenda in the room "BlueHats demo".\n'
                "  The public agenda, in a browser: %(web)s/\n"
                "Ctrl-C to stop everything."
            )
            % {"url": hs.url, "user": DEMO_USER, "password": DEMO_PASSWORD, "web": web_url},
            flush=True,
        )
        if not once:
            await _wait_or_fail(stop.wait(), bot_task, "the bot stopped")
        return 0
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await user.close()
        if app is not None and bot_task is not None:
            app.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bot_task, 20)
        print(_("Stopping the bot and the local server."), flush=True)


async def _wait_or_fail(coro: Awaitable[T], bot_task: asyncio.Task[None], what: str) -> T:
    """Await `coro`, unless the bot dies first or the answer takes too long."""
    waiter = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({waiter, bot_task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        exc = bot_task.exception() if not bot_task.cancelled() else None
        raise RuntimeError(f"{what}: {exc or 'stopped'}")
    return waiter.result()


async def _ask(user: AsyncClient, room_id: str, bot_id: str) -> str:
    """Wait for the bot to join, send `!agenda`, return the bot's notice."""
    if not isinstance(await user.sync(timeout=0), SyncResponse):
        raise RuntimeError("the demo user could not sync")
    async with asyncio.timeout(ANSWER_TIMEOUT):
        await wait_member(user, room_id, bot_id)
        notice = await send_and_wait_reply(user, room_id, "!agenda", bot_id)
    return str(notice.body)


async def wait_member(user: AsyncClient, room_id: str, user_id: str) -> None:
    """Poll the server's member list until `user_id` has joined."""
    while True:
        resp = await user.joined_members(room_id)
        if user_id in {m.user_id for m in getattr(resp, "members", [])}:
            return
        await asyncio.sleep(0.2)


async def send_and_wait_reply(
    user: AsyncClient, room_id: str, body: str, responder: str
) -> RoomMessageNotice:
    """Send `body` and sync until `responder`'s notice replying to it arrives.

    `user` must have synced once before, so that only new events are seen.
    """
    sent = await user.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    sent_id = getattr(sent, "event_id", None)
    if sent_id is None:
        raise RuntimeError(f"could not send {body!r}: {sent}")
    while True:
        resp = await user.sync(timeout=30_000)
        if not isinstance(resp, SyncResponse):
            continue
        joined = resp.rooms.join.get(room_id)
        for event in joined.timeline.events if joined else []:
            relates = event.source.get("content", {}).get("m.relates_to", {})
            if (
                isinstance(event, RoomMessageNotice)
                and event.sender == responder
                and relates.get("m.in_reply_to", {}).get("event_id") == sent_id
            ):
                return event
