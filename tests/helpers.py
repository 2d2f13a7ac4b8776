"""Helpers shared by the test files; fixtures are in conftest.py, fakes in fakes.py.

Real data (code.gouv.fr, calendars, feeds), real Matrix users on the test
Synapse, the bot in the test's loop or as its own process, HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import web
from nio import (
    AsyncClient,
    AsyncClientConfig,
    LoginResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
)

from bot import config as configuration
from bot.agenda.ics import parse_ics
from bot.app import BotApp
from bot.devserver import DevHomeserver

REAL_FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "real"
PASSWORD = "correct horse battery staple"
PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)  # a Monday
_names = itertools.count()
# Test clients type far faster than people: the commands of one test, sent
# back to back, would go over the limits meant for people (bot.limits). The
# tests of those limits give their own `bot={"limits": …}`.
TEST_LIMITS = {
    "per_sender": {"burst": 1000, "every": "1s"},
    "per_room": {"burst": 1000, "every": "1s"},
}


# -- real data ------------------------------------------------------------------------------------


def real_fixture(name: str) -> Path:
    """Real code.gouv.fr data, read-only, from shared/ beside the checkout."""
    path = REAL_FIXTURES / name
    if not path.exists():
        pytest.fail(f"missing real fixture {path}: the tests expect shared/ beside the checkout")
    return path


EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def parse(data: bytes | str, start: datetime = EVER[0], end: datetime = EVER[1]):
    """An iCalendar's sessions in the window (default: all), in Paris time."""
    raw = data.encode() if isinstance(data, str) else data
    return parse_ics(raw, source="test", tz=PARIS, window_start=start, window_end=end)


def real_feed() -> bytes:
    return real_fixture("feed.xml").read_bytes()


def with_new_entry(feed: bytes, title: str, link: str) -> bytes:
    entry = (
        f'<entry><title>{title}</title><link href="{link}"/>'
        f"<updated>2025-10-01T00:00:00Z</updated><id>{link}</id></entry>"
    ).encode()
    return feed.replace(b"<entry>", entry + b"<entry>", 1)


WEBINAR_TOPICS = ["Superset", "Grist", "Matomo", "Nextcloud", "Peertube", "OpenFisca", "Metabase"]


def webinar_calendar(
    starts: Iterable[tuple[int, datetime]], *, uid: str = "webinar-{i}", extra: Sequence[str] = ()
) -> str:
    """An .ics of one-hour webinars in the shape of code.gouv.fr's (title, description,
    webinar link): event `i` starts at its datetime, with UID `uid.format(i=i)`;
    `extra` lines (other VEVENTs) go first. For benchmarks and large-calendar tests."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//bluehats-tests//FR", *extra]
    for i, start in starts:
        topic = WEBINAR_TOPICS[i % len(WEBINAR_TOPICS)]
        lines += [
            "BEGIN:VEVENT",
            f"UID:{uid.format(i=i)}@bluehats",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            "DURATION:PT1H",
            f"SUMMARY:Webinaire {topic} n°{i}",
            f"DESCRIPTION:Présentation et questions sur {topic}.",
            "LOCATION:https://webinaire.numerique.gouv.fr/meeting/bench",
            "END:VEVENT",
        ]
    return "\r\n".join([*lines, "END:VCALENDAR"]) + "\r\n"


class Server:
    """A feed for `loopback_http`: the real one until a test sets `body`; ETag and 304."""

    def __init__(self) -> None:
        self.body = real_feed()
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        etag = f'"{hash(self.body)}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304)
        return web.Response(body=self.body, headers={"ETag": etag})


# -- Matrix users ---------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}x{os.getpid()}"


class User:
    """A real Matrix client, as a person in a room would use it."""

    def __init__(self, hs: DevHomeserver, localpart: str) -> None:
        self.hs = hs
        self.user_id = hs.register(localpart, PASSWORD)
        self.client = AsyncClient(
            hs.url, self.user_id, config=AsyncClientConfig(encryption_enabled=False)
        )
        self.events: dict[str, list[Any]] = {}
        self.invites: list[str] = []

    async def login(self) -> User:
        resp = await self.client.login(PASSWORD, device_name="test")
        assert isinstance(resp, LoginResponse), resp
        await self.sync(0)
        return self

    async def sync(self, timeout_ms: int = 1000) -> None:
        resp = await self.client.sync(timeout=timeout_ms)
        assert isinstance(resp, SyncResponse), resp
        for room_id, joined in resp.rooms.join.items():
            self.events.setdefault(room_id, []).extend(joined.timeline.events)
        self.invites.extend(resp.rooms.invite)

    async def create_room(self, *, invite: list[str] = (), **kwargs: Any) -> str:  # type: ignore[assignment]
        resp = await self.client.room_create(invite=list(invite), **kwargs)
        assert isinstance(resp, RoomCreateResponse), resp
        return resp.room_id

    async def send(self, room_id: str, body: str, msgtype: str = "m.text", **extra: Any) -> str:
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": msgtype, "body": body, **extra}
        )
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def wait_for(
        self, room_id: str, predicate: Callable[[Any], bool], timeout: float = 30.0
    ) -> Any:
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                events = self.events.get(room_id, [])
                for event in events[seen:]:
                    if predicate(event):
                        return event
                seen = len(events)
                await self.sync(1000)

    async def reply_to(
        self, room_id: str, event_id: str, sender: str, timeout: float = 30.0
    ) -> Any:
        """The bot's notice replying to `event_id`."""
        return await self.wait_for(
            room_id, lambda e: is_reply(e, event_id, sender), timeout=timeout
        )

    def replies(self, room_id: str, event_id: str, sender: str) -> list[Any]:
        return [e for e in self.events.get(room_id, []) if is_reply(e, event_id, sender)]

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                resp = await self.client.joined_members(room_id)
                if user_id in {m.user_id for m in getattr(resp, "members", [])}:
                    return
                await asyncio.sleep(0.1)

    async def ask(self, room_id: str, text: str, bot_id: str, timeout: float = 30.0) -> Any:
        event_id = await self.send(room_id, text)
        return await self.reply_to(room_id, event_id, bot_id, timeout=timeout)

    async def close(self) -> None:
        await self.client.close()


def is_reply(event: Any, event_id: str, sender: str) -> bool:
    content = event.source.get("content", {})
    return (
        event.sender == sender
        # A notice, or a message that rings for someone (a new mentor called).
        and content.get("msgtype") in ("m.notice", "m.text")
        and content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id
    )


class CryptoUser:
    """A person on an E2EE client (own crypto store, nio's sync loop), as in Element."""

    def __init__(self, hs: DevHomeserver, store: Path) -> None:
        from nio import (
            Event,
            ForwardedRoomKeyEvent,
            InviteMemberEvent,
            MatrixRoom,
            MegolmEvent,
            RoomKeyEvent,
        )

        self.user_id = hs.register(unique("crypto"), PASSWORD)
        store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            hs.url,
            self.user_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        )
        # Decrypted (or plain) timeline events, per room; invites received.
        self.events: dict[str, list[Any]] = {}
        self.invites: list[str] = []
        self._task: asyncio.Task[None] | None = None

        # Encrypted events whose room key has not come yet: decrypted when it
        # does (a busy machine may deliver the key in a later sync than the
        # event), as Element does.
        undecrypted: list[tuple[str, MegolmEvent]] = []

        async def on_event(room: MatrixRoom, event: Event) -> None:
            if isinstance(event, MegolmEvent):
                undecrypted.append((room.room_id, event))
            self.events.setdefault(room.room_id, []).append(event)

        async def on_room_key(_event: Any) -> None:
            for room_id, event in list(undecrypted):
                try:
                    clear = self.client.decrypt_event(event)
                except Exception:  # noqa: S112 - still not this event's key
                    continue
                undecrypted.remove((room_id, event))
                timeline = self.events[room_id]
                timeline[timeline.index(event)] = clear

        async def on_invite(room: MatrixRoom, event: InviteMemberEvent) -> None:
            if event.state_key == self.user_id and room.room_id not in self.invites:
                self.invites.append(room.room_id)

        self.client.add_event_callback(on_event, Event)  # type: ignore[arg-type]
        self.client.add_event_callback(on_invite, InviteMemberEvent)  # type: ignore[arg-type]
        self.client.add_to_device_callback(on_room_key, (RoomKeyEvent, ForwardedRoomKeyEvent))

    async def start(self) -> CryptoUser:
        resp = await self.client.login(PASSWORD, device_name="test")
        assert isinstance(resp, LoginResponse), resp
        # E2EE needs nio's own loop (key upload, queries, to-device messages).
        self._task = asyncio.create_task(self.client.sync_forever(timeout=500, full_state=True))
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()

    async def encrypted_room_with(self, bot_id: str) -> str:
        created = await self.client.room_create(
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
        await eventually(lambda: bot_id in getattr(self.client.rooms.get(room), "users", {}))
        # The bot's device keys must be known before sharing the room key.
        await eventually(lambda: any(self.client.device_store.active_user_devices(bot_id)))
        return room

    async def say(self, room_id: str, body: str, **content: Any) -> str:
        for attempt in range(3):
            try:
                sent = await self.client.room_send(
                    room_id,
                    "m.room.message",
                    {"msgtype": "m.text", "body": body, **content},
                    ignore_unverified_devices=True,
                )
                break
            except KeyError:
                # nio 0.26's race: its sync loop dropped the room's outbound
                # session (a member or device change) while `share_group_session`
                # was sharing it. Sending again makes a new one, as Element would.
                if attempt == 2:
                    raise
        assert isinstance(sent, RoomSendResponse), sent
        return sent.event_id

    async def react(self, room_id: str, event_id: str, key: str = "🔔") -> str:
        """An emoji reaction, as Element sends it (nio sends reactions unencrypted)."""
        sent = await self.client.room_send(
            room_id,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
        )
        assert isinstance(sent, RoomSendResponse), sent
        return sent.event_id

    async def reply_to(self, room_id: str, event_id: str, sender: str) -> Any:
        def found() -> Any:
            return next(
                (e for e in self.events.get(room_id, []) if is_reply(e, event_id, sender)), None
            )

        await eventually(lambda: found() is not None)
        return found()


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls state another task updates
            await asyncio.sleep(0.1)


# -- the bot --------------------------------------------------------------------------------------


def bot_config(
    hs: DevHomeserver, storage: Path, *, sources: list[str] | None = None, **sections: Any
) -> tuple[configuration.Config, str]:
    localpart = unique("bot")
    password = "bot-" + PASSWORD
    user_id = hs.register(localpart, password)
    raw: dict[str, Any] = {
        "matrix": {"homeserver": hs.url, "user_id": user_id, "password": password},
        "storage": {"path": str(storage)},
        "agenda": {"sources": sources if sources is not None else [str(sample_agenda())]},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    raw.setdefault("bot", {}).setdefault("limits", TEST_LIMITS)
    return configuration.from_dict(raw, env={}), user_id


def with_moderators(cfg: configuration.Config, *user_ids: str) -> configuration.Config:
    """`cfg` with these people as community moderators by configuration (`bot.moderators`)."""
    bot = cfg.bot.model_copy(update={"moderators": [*cfg.bot.moderators, *user_ids]})
    return cfg.model_copy(update={"bot": bot})


def paris(day: date, hour: int, minute: int = 0) -> datetime:
    """A Paris wall time on `day`."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Europe/Paris"))


def sample_agenda() -> Path:
    return Path(__file__).resolve().parent.parent / "bot" / "data" / "sample-agenda.ics"


@asynccontextmanager
async def running(app: BotApp) -> AsyncIterator[BotApp]:
    task = asyncio.create_task(app.run(handle_signals=False))
    ready = asyncio.create_task(app.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        if task.done():
            task.result()  # raise the bot's own error
        raise TimeoutError("bot not ready within 60s")
    try:
        yield app
    finally:
        app.stop()
        await asyncio.wait_for(task, 30)


class MovingClock:
    """The bot's `now` in a test that moves time forward: the wall clock plus an
    offset (`BotApp(config, now=clock)`). Time still passes as on the wall clock;
    `move_to` makes a moment minutes ahead arrive at once, and wakes the broadcaster
    so that it looks again at what is due (reminders, the gazette's schedule)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def move_to(self, moment: datetime, app: BotApp) -> None:
        """`now` at `moment` (never backwards), then the bot's broadcaster woken."""
        self.offset += max(timedelta(0), moment - self())
        assert app.broadcaster is not None, "the bot is not running"
        app.broadcaster.wake.set()


def recorded(storage: Path, event_id: str) -> str | None:
    """The inbox status of an event in the bot's store at `storage` (None: never
    taken as a command). The bot records each command before answering it, in
    timeline order: once a later command is answered, an earlier event not
    recorded will never be answered (no need to wait and see)."""
    import sqlite3

    with sqlite3.connect(storage / "bluehats.db") as db:
        row = db.execute("SELECT status FROM inbox WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else str(row[0])


def bot_devices(hs: DevHomeserver, session_file: Path) -> list[str]:
    token = json.loads(session_file.read_text())["access_token"]
    req = urllib.request.Request(
        f"{hs.url}/_matrix/client/v3/devices", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [d["device_id"] for d in json.load(resp)["devices"]]


class BotProcess:
    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--config",
                str(self.config),
                env=self.env,
                stdout=out,
                stderr=out,
            )
        async with asyncio.timeout(60):
            while "ready: " not in self.log.read_text()[start_at:]:
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            return await self.proc.wait()


def bot_process(
    synapse: DevHomeserver, tmp_path: Path, **sections: dict[str, object]
) -> tuple[BotProcess, str, Path, str]:
    """The bot as its own process (not started): (process, user id, storage dir, password)."""
    localpart, password = unique("bot"), "secret-bot-password-42"
    bot_id = synapse.register(localpart, password)
    storage = tmp_path / "data"
    config = tmp_path / "config.yaml"
    sections.setdefault("bot", {})
    sections["bot"] = {"limits": TEST_LIMITS, **sections["bot"]}
    # The password comes from the environment, as an operator would do.
    config.write_text(
        yaml.safe_dump(
            {
                "matrix": {"homeserver": synapse.url, "user_id": bot_id},
                "storage": {"path": str(storage)},
                "agenda": {"sources": [str(sample_agenda())]},
                **sections,
            }
        )
    )
    env = {**os.environ, "BLUEHATS_MATRIX_PASSWORD": password}
    return BotProcess(config, env, tmp_path / "bot.log"), bot_id, storage, password


# -- HTTP on loopback -----------------------------------------------------------------------------


async def get(port: int, path: str) -> tuple[int, str]:
    """An HTTP GET on loopback from the test's loop (the bot runs in it too)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


@asynccontextmanager
async def loopback_http(routes: dict[str, Any]) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 (free port) with GET `routes`; yields its base URL."""
    from aiohttp import web

    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
