"""A real matrix-js-sdk client (Element Web's stack, Rust crypto) driven from tests.

`tests/jsclient/client.mjs` runs under Node and speaks JSON lines on stdin/stdout; `JsClient`
is its asyncio side. Timeline events arrive as dicts:

    {"event": "timeline", "room_id", "event_id", "sender", "type", "content",
     "encrypted": bool, "decryption_failure": DecryptionFailureCode value or None,
     "shield": {"colour": "NONE"|"GREY"|"RED", "reason": EventShieldReason name or None} or None,
     "origin_server_ts", "state_key" (state events only)}

An encrypted event that cannot be decrypted yet is reported with its failure (content None);
if its key arrives later it is reported again, decrypted (decryption_failure None). Invites
arrive as {"event": "invite", "room_id", "inviter", "is_direct"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from tests.helpers import PASSWORD, unique

if TYPE_CHECKING:
    from bot.devserver import DevHomeserver

JSCLIENT_DIR = Path(__file__).resolve().parent / "jsclient"
CLIENT_SCRIPT = JSCLIENT_DIR / "client.mjs"
Isolation = Literal["only_signed", "all"]
Event = dict[str, Any]


class JsClientError(RuntimeError):
    """The JS client answered a request with an error, or died."""


def jsclient_problem() -> str | None:
    """Why the JS client cannot run here, or None."""
    if shutil.which("node") is None:
        return "`node` is not on PATH: install Node.js >= 20 (the JS client tests need it)"
    if not (JSCLIENT_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        return f"{JSCLIENT_DIR}/node_modules is missing: run .ci/setup-jsclient (as .ci/run does)"
    return None


def is_reply(event: Event, event_id: str, sender: str) -> bool:
    content = event.get("content") or {}
    return (
        event.get("event") == "timeline"
        and event.get("sender") == sender
        # A notice, or a message that rings for someone (a new mentor called).
        and content.get("msgtype") in ("m.notice", "m.text")
        and content.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id
    )


class JsClient:
    """One Element-like device of one user, in a Node subprocess."""

    def __init__(self, *, debug: bool | None = None) -> None:
        self.debug = bool(os.environ.get("JSCLIENT_DEBUG")) if debug is None else debug
        self.user_id: str | None = None
        self.device_id: str | None = None
        # What `start` found of the account's cross-signing (keys cached, device signed).
        self.cross_signing: dict[str, Any] = {}
        # Unsolicited events, in arrival order.
        self.events: list[Event] = []
        self.invites: list[Event] = []
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dead: str | None = None

    # -- process -------------------------------------------------------------------------------

    async def launch(self) -> None:
        if self._proc is not None:
            return
        problem = jsclient_problem()
        if problem:
            raise JsClientError(problem)
        env = dict(os.environ)
        if self.debug:
            env["JSCLIENT_DEBUG"] = "1"
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=JSCLIENT_DIR,
            env=env,
            limit=16 * 1024 * 1024,
        )
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    self.stderr_tail.append(f"(non-JSON stdout) {line!r}")
                    continue
                self._dispatch(message)
        finally:
            code = await self._proc.wait()
            self._dead = f"the JS client exited (code {code})"
            error = JsClientError(f"{self._dead}; stderr tail:\n{self.stderr_text()}")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            if self.debug:
                sys.stderr.write(f"[js {self.user_id}] {text}\n")

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail) or "(empty)"

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            future = self._pending.pop(message["id"], None)
            if future is None or future.done():
                return
            if message.get("ok"):
                future.set_result(message.get("result"))
            else:
                future.set_exception(JsClientError(message.get("error", "unknown error")))
            return
        kind = message.get("event")
        if kind == "timeline":
            self.events.append(message)
        elif kind == "invite":
            self.invites.append(message)
        self._changed.set()

    async def request(self, cmd: str, *, timeout: float = 60.0, **args: Any) -> Any:
        """Send one command and return its result (raises JsClientError on failure)."""
        await self.launch()
        if self._dead:
            raise JsClientError(f"{self._dead}; stderr tail:\n{self.stderr_text()}")
        assert self._proc is not None and self._proc.stdin is not None
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        line = json.dumps({"id": request_id, "cmd": cmd, **args}) + "\n"
        self._proc.stdin.write(line.encode())
        await self._proc.stdin.drain()
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._pending.pop(request_id, None)
            raise JsClientError(
                f"{cmd} got no answer within {timeout}s; stderr tail:\n{self.stderr_text()}"
            ) from None

    async def close(self) -> None:
        """Stop the client; the process never survives this."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and not self._dead:
            with contextlib.suppress(Exception):
                await self.request("stop", timeout=5)
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)

    async def __aenter__(self) -> JsClient:
        await self.launch()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- commands ------------------------------------------------------------------------------

    async def start(
        self,
        homeserver: str,
        user_id: str,
        password: str,
        *,
        isolation: Isolation = "only_signed",
        recovery_key: str | None = None,
        timeout: float = 120.0,
    ) -> str:
        """Log in (new device), set up Rust crypto and cross-signing, sync; the device id.

        Without `recovery_key`, a new cross-signing identity of its own; with it, the
        account's identity read from secret storage, as Element's "verify with recovery
        key" does (`self.cross_signing` then tells what it found)."""
        result = await self.request(
            "start",
            timeout=timeout,
            homeserver=homeserver,
            user_id=user_id,
            password=password,
            isolation=isolation,
            recovery_key=recovery_key,
        )
        self.user_id = result["user_id"]
        self.device_id = result["device_id"]
        self.cross_signing = result["cross_signing"]
        return str(result["device_id"])

    async def create_room(
        self,
        invite: list[str] | tuple[str, ...] = (),
        *,
        encrypted: bool = True,
        is_direct: bool = False,
        name: str | None = None,
    ) -> str:
        result = await self.request(
            "create_room", invite=list(invite), encrypted=encrypted, is_direct=is_direct, name=name
        )
        return str(result["room_id"])

    async def join(self, room_id: str) -> None:
        await self.request("join", room_id=room_id)

    async def send(self, room_id: str, body: str, msgtype: str = "m.text", **content: Any) -> str:
        result = await self.request(
            "send", room_id=room_id, body=body, msgtype=msgtype, content=content
        )
        return str(result["event_id"])

    async def react(self, room_id: str, event_id: str, key: str = "👍") -> str:
        result = await self.request("react", room_id=room_id, event_id=event_id, key=key)
        return str(result["event_id"])

    async def device_status(self, user_id: str, device_id: str) -> dict[str, bool] | None:
        """getDeviceVerificationStatus: signedByOwner, crossSigningVerified, localVerified,
        isVerified; None if the device is unknown."""
        result: dict[str, bool] | None = await self.request(
            "device_status", user_id=user_id, device_id=device_id
        )
        return result

    async def user_devices(self, user_id: str) -> list[str]:
        """The user's device ids, after a forced key download."""
        return list(await self.request("user_devices", user_id=user_id))

    async def cross_signing_key(self, user_id: str) -> str | None:
        """The user's master cross-signing public key as this client sees it, or None."""
        result: str | None = await self.request("cross_signing_key", user_id=user_id)
        return result

    async def user_status(self, user_id: str) -> dict[str, bool]:
        """getUserVerificationStatus: known, isVerified, isCrossSigningVerified,
        wasCrossSigningVerified, needsUserApproval."""
        return dict(await self.request("user_status", user_id=user_id))

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(
        self, pool: list[Event], predicate: Callable[[Event], bool], timeout: float, what: str
    ) -> Event:
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    for event in pool[seen:]:
                        if predicate(event):
                            return event
                    seen = len(pool)
                    if self._dead:
                        raise JsClientError(
                            f"{self._dead} while waiting for {what}; stderr tail:\n"
                            f"{self.stderr_text()}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.user_id}: no {what} within {timeout}s ({len(pool)} seen)"
            ) from None

    async def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        """The first timeline event (past or future) matching `predicate`."""
        return await self._wait(self.events, predicate, timeout, "matching timeline event")

    async def wait_invite(self, room_id: str | None = None, timeout: float = 30.0) -> Event:
        return await self._wait(
            self.invites,
            lambda e: room_id is None or e["room_id"] == room_id,
            timeout,
            f"invite to {room_id or 'any room'}",
        )

    async def reply_to(
        self, room_id: str, event_id: str, sender: str, timeout: float = 30.0
    ) -> Event:
        """The (decrypted) message from `sender` replying to `event_id`."""
        return await self.wait_event(
            lambda e: e["room_id"] == room_id and is_reply(e, event_id, sender), timeout
        )

    def timeline(self, room_id: str) -> list[Event]:
        return [e for e in self.events if e["room_id"] == room_id]


@pytest.fixture
async def js_user(synapse: DevHomeserver) -> AsyncIterator[Callable[..., Awaitable[JsClient]]]:
    """A maker of started JS clients, each a freshly registered user:
    `await js_user(prefix="js", isolation="only_signed") -> JsClient`."""
    problem = jsclient_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    clients: list[JsClient] = []

    async def make(prefix: str = "js", *, isolation: Isolation = "only_signed") -> JsClient:
        user_id = synapse.register(unique(prefix), PASSWORD)
        client = JsClient()
        clients.append(client)
        await client.start(synapse.url, user_id, PASSWORD, isolation=isolation)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()
