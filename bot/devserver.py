"""A real, throw-away Synapse on loopback, for the demo, the tests and the benchmarks.

Needs the `demo` extra (PyPI `matrix-synapse`). Everything lives in one
directory; the server listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

RAISED = {"per_second": 1000, "burst_count": 1000}


class DevServerError(Exception):
    pass


def synapse_available() -> bool:
    return importlib.util.find_spec("synapse") is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevHomeserver:
    def __init__(
        self,
        directory: Path,
        *,
        server_name: str = "localhost",
        raised_limits: bool = True,
        limits: dict[str, Any] | None = None,
    ) -> None:
        """`raised_limits=False` keeps Synapse's defaults; `limits` sets some `rc_*` keys."""
        self.dir = directory
        self.server_name = server_name
        self.raised_limits = raised_limits
        self.limits = dict(limits or {})
        self.port = 0
        self.secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "media").mkdir(exist_ok=True)
        log_config = d / "log.yaml"
        log_config.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "formatters": {
                        "f": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
                    },
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(d / "homeserver.log"),
                            "formatter": "f",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "registration_shared_secret": self.secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "bcrypt_rounds": 4,
            "enable_registration": False,
            "presence": {"enabled": False},
        }
        if self.raised_limits:
            config.update(
                {
                    "rc_message": RAISED,
                    "rc_login": {"address": RAISED, "account": RAISED, "failed_attempts": RAISED},
                    "rc_registration": RAISED,
                    "rc_joins": {"local": RAISED, "remote": RAISED},
                    "rc_joins_per_room": RAISED,
                    "rc_invites": {"per_room": RAISED, "per_user": RAISED, "per_issuer": RAISED},
                    "rc_admin_redaction": RAISED,
                    "rc_room_creation": RAISED,
                }
            )
        config.update(self.limits)
        path = d / "homeserver.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 60.0) -> None:
        if not synapse_available():
            raise DevServerError(
                "Synapse is not installed: pip install 'bluehats-bot[demo]' (matrix-synapse)"
            )
        if not self.port:
            self.port = free_port()
        config = self._write_config()
        if not (self.dir / "signing.key").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "synapse.app.homeserver",
                    "--config-path",
                    str(config),
                    "--generate-keys",
                ],
                check=True,
                capture_output=True,
            )
        out = (self.dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "--config-path", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DevServerError(
                    f"Synapse exited with {self._proc.returncode}; see {self.dir}/stdout.log "
                    f"and homeserver.log"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise DevServerError(f"Synapse did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise DevServerError(f"{method} {path}: {exc.code} {exc.read()[:200]!r}") from None

    def register(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; returns the Matrix ID."""
        nonce = self.call("GET", "/_synapse/admin/v1/register")["nonce"]
        kind = "admin" if admin else "notadmin"
        mac = hmac.new(
            self.secret.encode(),
            b"\x00".join(p.encode() for p in (nonce, localpart, password, kind)),
            hashlib.sha1,
        )
        digest = mac.hexdigest()
        result = self.call(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": digest,
            },
        )
        return str(result["user_id"])

    def login(self, user_id: str, password: str) -> str:
        """An access token for this user (a new device)."""
        result = self.call(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
            },
        )
        return str(result["access_token"])

    def override_ratelimit(self, admin_token: str, user_id: str, *, unlimited: bool) -> None:
        """Lift a user's message/room/join limits (admin API), or restore the defaults."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        if unlimited:
            self.call("POST", path, {"messages_per_second": 0, "burst_count": 0}, token=admin_token)
        else:
            self.call("DELETE", path, token=admin_token)


class GazetteFanOut:
    """The bot's account with N rooms subscribed to the gazette, for a fan-out on `hs`.

    Used by bench/fanout.py and the rate-limit test: the real `MatrixChat`,
    `Storage` and `Broadcaster`. The rooms are created by the bot with its
    rate limits lifted (admin API), then restored to the server's.
    """

    def __init__(self, hs: DevHomeserver, work: Path, *, pace: float = 0.0) -> None:
        self.hs = hs
        self.work = work
        self.pace = pace
        self.rooms: list[str] = []

    async def __aenter__(self) -> Self:
        from datetime import UTC, datetime, timedelta
        from zoneinfo import ZoneInfo

        import aiohttp

        from bot import config as configuration
        from bot.agenda.sources import AgendaService
        from bot.broadcast import Broadcaster
        from bot.db.storage import Storage
        from bot.matrix.client import MatrixChat
        from bot.render import Renderer

        password = secrets.token_hex(8)
        self.admin_id = self.hs.register("admin", password, admin=True)
        self.admin = self.hs.login(self.admin_id, password)
        self.bot_id = self.hs.register("bot", password)
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": self.hs.url, "user_id": self.bot_id, "password": password},
                "storage": {"path": str(self.work / "data")},
                "agenda": {"sources": []},
            },
            env={},
        )
        (self.work / "data").mkdir(parents=True, exist_ok=True)
        self.storage = await Storage.open(self.work / "data" / "bluehats.db")
        self.chat = MatrixChat(cfg.matrix, self.work / "data", self.storage)
        self._http = aiohttp.ClientSession()
        await self.chat.connect()
        tz = ZoneInfo("Europe/Paris")

        def now() -> datetime:
            return datetime.now(UTC)

        self.broadcaster = Broadcaster(
            self.storage,
            self.chat,
            Renderer("fr", tz),
            AgendaService([], self.storage, self._http, tz, timedelta(days=30), now),
            prefix="!",
            now=now,
            pace=timedelta(seconds=self.pace),
            offsets=[],
            grace=timedelta(minutes=15),
            retry_delay=0.5,
        )
        return self

    async def create_rooms(self, n: int) -> list[str]:
        from nio import RoomCreateResponse

        from bot.db.subscriptions import GAZETTE

        self.hs.override_ratelimit(self.admin, self.bot_id, unlimited=True)
        gate = asyncio.Semaphore(8)

        async def create() -> str:
            async with gate:
                resp = await self.chat.client.room_create(name="gazette")
                if not isinstance(resp, RoomCreateResponse):
                    raise DevServerError(f"room not created: {resp}")
                return str(resp.room_id)

        try:
            self.rooms = list(await asyncio.gather(*(create() for _ in range(n))))
        finally:
            self.hs.override_ratelimit(self.admin, self.bot_id, unlimited=False)
        for room_id in self.rooms:
            await self.storage.subscriptions.add(room_id, GAZETTE, self.admin_id)
        return self.rooms

    async def sync(self) -> None:
        """Start the bot's sync loop (nio sends only to rooms it has synced)."""

        async def ignore(_message: object) -> None:
            return None

        self.chat.on_message = ignore
        self._sync = asyncio.create_task(self.chat.run())
        await asyncio.wait_for(self.chat.synced.wait(), 600)

    async def post(self, broadcast: str = "gazette:test") -> tuple[int, dict[str, str]]:
        """Queue one gazette post to every room and deliver it: (sent, status by room)."""
        from bot.broadcast_key import parse
        from bot.db.subscriptions import GAZETTE

        await self.storage.outbox.queue_for_subscribers(parse(broadcast), GAZETTE)
        sent = await self.broadcaster.deliver()
        return sent, await self.storage.outbox.status(broadcast)

    def posts(self, room_id: str) -> list[str]:
        """The bodies of the bot's messages in a room, read back from the server."""
        page = self.hs.call(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=50",
            token=str(self.chat.client.access_token),
        )
        return [
            str(e["content"].get("body", ""))
            for e in page["chunk"]
            if e["type"] == "m.room.message" and e["sender"] == self.bot_id
        ]

    async def __aexit__(self, *exc: object) -> None:
        sync = getattr(self, "_sync", None)
        if sync is not None:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
        await self._http.close()
        await self.chat.close()
        await self.storage.close()
