"""The Matrix client (nio): login and session reuse, the sync loop, invites, sending.

Commands reach the core as `IncomingMessage`s through one callback, in
timeline order, and the sync token is saved only after that callback has
recorded them: a crash can make the bot see a command twice (the inbox drops
the second), never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EnableEncryptionBuilder,
    ErrorResponse,
    Event,
    InviteMemberEvent,
    JoinError,
    LocalProtocolError,
    LoginResponse,
    MegolmEvent,
    ProfileGetDisplayNameResponse,
    ReactionEvent,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomKeyEvent,
    RoomMemberEvent,
    RoomMessageText,
    RoomPreset,
    RoomSendError,
    SendRetryError,
    SyncError,
    SyncResponse,
    UploadResponse,
    WhoamiResponse,
)
from nio.exceptions import EncryptionError, OlmUnverifiedDeviceError

from bot import permissions
from bot.chat import (
    FileUpload,
    IncomingMessage,
    IncomingReaction,
    IncomingRedaction,
    SendError,
    UnknownUser,
)
from bot.config import MatrixConfig, is_email, server_name
from bot.db.storage import Storage
from bot.matrix.files import write_private
from bot.matrix.identity import Identity
from bot.render import Message

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"
SYNC_TIMEOUT_MS = 30_000
# Events per room and sync. After a downtime, a busy room's timeline is cut
# ("limited") to this many: larger than Synapse's default 10, so that the
# commands typed while the bot was away are still seen.
TIMELINE_LIMIT = 100
SYNC_FILTER = {"room": {"timeline": {"limit": TIMELINE_LIMIT}}}
# Without a saved token everything is history: ask for as little as possible.
FIRST_RUN_FILTER = {"room": {"timeline": {"limit": 1}}}
# Errors after which resending the same message cannot succeed.
_PERMANENT = frozenset(
    {"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN_TOKEN", "M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON"}
)

# A longer time without a successful sync is logged when syncing resumes.
SYNC_GAP_LOG_S = 45
# Longest wait between two attempts to reach an unreachable homeserver.
RECONNECT_MAX_WAIT_S = 10
# How long a new direct room may take to show up in the sync.
NEW_ROOM_WAIT_S = 30.0
# Sends go one at a time until this long after the last 429's wait ended.
RATE_CALM_S = 30.0
# At most one "rate limited" log line per this many seconds.
RATE_LOG_EVERY_S = 60.0


class _QuietRateLimit(logging.Filter):
    """nio logs every 429 it waits out; `MatrixChat` logs them once a minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Got 429")


logging.getLogger("nio.client.async_client").addFilter(_QuietRateLimit())

MessageSink = Callable[[IncomingMessage], Awaitable[None]]


class LoginFailed(Exception):
    pass


@dataclass(frozen=True)
class SavedSession:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str
    # What matrix.user_id says: the Matrix ID, or the account's e-mail.
    login: str = ""

    @classmethod
    def load(cls, path: Path) -> SavedSession | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fields = ("homeserver", "user_id", "device_id", "access_token")
            saved = cls(**{k: str(data[k]) for k in fields})
            return replace(saved, login=str(data.get("login") or saved.user_id))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable saved session %s (%s)", path, type(exc).__name__)
            return None

    def save(self, path: Path) -> None:
        """Readable by the bot's user only: it holds a token."""
        write_private(path, json.dumps(self.__dict__))


@dataclass(frozen=True)
class _RoomAuthority:
    create_sender: str
    create_content: dict[str, Any]
    power_levels: dict[str, Any] | None


class MatrixChat:
    """`ChatClient` over matrix-nio."""

    def __init__(
        self,
        config: MatrixConfig,
        storage_dir: Path,
        storage: Storage,
    ) -> None:
        self._config = config
        self._dir = storage_dir
        self._storage = storage
        # Where new messages go, in timeline order; set before `run()`.
        self.on_message: MessageSink | None = None
        # Told about an encrypted message that stayed unreadable (body empty).
        self.on_undecryptable: MessageSink | None = None
        self._key_requested: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        # Where new reactions and redactions go (same guarantees as messages).
        self.on_reaction: Callable[[IncomingReaction], Awaitable[None]] | None = None
        self.on_redaction: Callable[[IncomingRedaction], Awaitable[None]] | None = None
        # Awaited after each sync batch, before the next long-poll starts.
        self.on_batch_end: Callable[[], Awaitable[None]] | None = None
        # Made by `connect()`, once the homeserver is known (maybe discovered).
        self.client = AsyncClient("http://unconfigured.invalid")
        self._allowed = list(config.allowed_servers)
        self._authority: dict[str, _RoomAuthority] = {}
        # 429s: nio waits `retry_after_ms` and retries the request itself; the
        # other sends wait the same (the limit is per account), not pile up.
        self.rate_limited = 0
        self._not_before = -RATE_CALM_S
        self._one_at_a_time = asyncio.Lock()
        self._rate_logged_at = -RATE_LOG_EVERY_S
        self._skip_history = False
        self._sync_failures = 0
        self.synced = asyncio.Event()
        self._last_sync: float | None = None
        self._started = time.monotonic()
        # Set (then replaced) after each sync batch has been handled.
        self._next_batch = asyncio.Event()

    @property
    def user_id(self) -> str:
        """The bot's Matrix ID (once connected: also with an e-mail login)."""
        return str(self.client.user_id or self._config.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    @property
    def _token_key(self) -> str:
        return f"sync_token:{self.user_id}"

    # -- session ----------------------------------------------------------------

    async def _new_client(self, homeserver: str) -> None:
        await self.client.close()  # the placeholder, or a session the server refused
        crypto = self._dir / "crypto"
        crypto.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            homeserver,
            self._config.user_id if not is_email(self._config.user_id) else "",
            store_path=str(crypto),
            config=AsyncClientConfig(
                # We save the token ourselves, after the commands are recorded;
                # nio saves it before running callbacks.
                store_sync_tokens=False,
                encryption_enabled=True,
                # When the homeserver is unreachable nio retries with a growing
                # wait; capped so that the bot is back soon after it is.
                max_timeout_retry_wait_time=RECONNECT_MAX_WAIT_S,
            ),
        )
        self.client.add_response_callback(self._on_error, ErrorResponse)

    async def connect(self) -> None:
        """Reuse the saved session (same device), or log in once and save it."""
        await self._connect()
        if not self._allowed:  # default: the bot's own server
            self._allowed = [server_name(self.user_id)]

    async def _connect(self) -> None:
        path = self._dir / SESSION_FILE
        saved = SavedSession.load(path)
        login = self._config.user_id
        if saved and saved.login == login and self._config.homeserver in (None, saved.homeserver):
            # An e-mail's homeserver, discovered once, is kept with the session.
            await self._new_client(saved.homeserver)
            self.client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            who = await self.client.whoami()
            if isinstance(who, WhoamiResponse):
                log.info("restored session of %s, device %s", saved.user_id, saved.device_id)
                return
            log.warning(
                "saved session rejected by the homeserver (%s); logging in again", _describe(who)
            )
            self.client.access_token = ""
        elif saved:
            log.info("saved session is for another account or server: not reused")

        homeserver = self._config.homeserver or await self._discover(login)
        await self._new_client(homeserver)
        token = self._config.access_token
        if token is not None:
            self.client.access_token = token.get_secret_value()
            who = await self.client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise LoginFailed(f"the access token was refused: {_describe(who)}")
            if not is_email(login) and who.user_id != login:
                raise LoginFailed(
                    f"the access token belongs to {who.user_id}, not to matrix.user_id {login}"
                )
            if not who.device_id:
                raise LoginFailed("the homeserver did not tell the access token's device")
            self.client.restore_login(who.user_id, who.device_id, token.get_secret_value())
        elif self._config.password is not None:
            password = self._config.password.get_secret_value()
            if is_email(login):
                # Tchap accounts: the e-mail address is a third-party identifier.
                resp = await self.client.login_raw(
                    {
                        "type": "m.login.password",
                        "identifier": {
                            "type": "m.id.thirdparty",
                            "medium": "email",
                            "address": login,
                        },
                        "password": password,
                        "initial_device_display_name": self._config.device_name,
                    }
                )
            else:
                resp = await self.client.login(password, device_name=self._config.device_name)
            if not isinstance(resp, LoginResponse):
                raise LoginFailed(f"login refused: {_describe(resp)}")
            log.info("logged in as %s, new device %s", resp.user_id, resp.device_id)
        else:  # config validation guarantees one of them
            raise LoginFailed("no password and no access token")
        SavedSession(
            homeserver, self.user_id, self.device_id, str(self.client.access_token), login
        ).save(path)

    async def _discover(self, email: str) -> str:
        """The homeserver of an e-mail account, as Tchap's directory tells it."""
        base = self._config.identity_server
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
                http.get(
                    f"{base}/_matrix/identity/api/v1/info",
                    params={"medium": "email", "address": email},
                ) as resp,
            ):
                if resp.status != 200:
                    raise LoginFailed(f"{base} answered HTTP {resp.status} for the e-mail's server")
                data = await resp.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            raise LoginFailed(f"cannot ask {base} for the e-mail's server: {exc!r}") from None
        hs = data.get("hs") if isinstance(data, dict) else None
        if not isinstance(hs, str) or not hs or "/" in hs:
            raise LoginFailed(f"{base} knows no homeserver for {email}")
        url = self._config.homeserver_template.format(hs=hs)
        log.info("homeserver of %s: %s (from %s)", email, url, base)
        return url

    def identity(self) -> Identity:
        """The cross-signing identity of the connected device."""
        return Identity(
            self.client,
            self._dir,
            login=self._config.user_id,
            password=self._config.password,
            recovery_key=self._config.recovery_key,
        )

    async def close(self) -> None:
        await self.client.close()

    # -- sync ---------------------------------------------------------------------

    async def run(self) -> None:
        """Sync until cancelled, resuming from the saved token."""
        if self.on_message is None:
            raise RuntimeError("MatrixChat.on_message must be set before run()")
        since = await self._storage.kv.get(self._token_key)
        # Without a token, everything the first sync shows is history.
        self._skip_history = since is None
        self.client.add_response_callback(self._on_sync, SyncResponse)
        self.client.add_response_callback(self._on_sync_error, SyncError)
        self.client.add_to_device_callback(self._on_room_key, (RoomKeyEvent,))
        log.info("syncing%s", " (first run: history is not answered)" if since is None else "")
        watcher = asyncio.create_task(self._watch_undecrypted(), name="undecrypted")
        try:
            await self.client.sync_forever(
                timeout=SYNC_TIMEOUT_MS,
                sync_filter=SYNC_FILTER,
                first_sync_filter=FIRST_RUN_FILTER if since is None else SYNC_FILTER,
                since=since,
                # Room state (members, encryption) is not persisted by nio: take it whole once.
                full_state=True,
            )
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    def seconds_since_sync(self) -> float:
        """Since the last successful sync (since start when none yet)."""
        return time.monotonic() - (self._last_sync or self._started)

    def syncing_recently(self, within: float) -> bool:
        """Whether a sync succeeded in the last `within` seconds (long-polls last 30 s)."""
        return self._last_sync is not None and time.monotonic() - self._last_sync <= within

    async def _on_sync_error(self, response: SyncError) -> None:
        self._sync_failures += 1
        if response.status_code == "M_UNKNOWN_TOKEN":
            raise LoginFailed("the homeserver revoked the access token (logged out?)")
        delay = min(60, 2 ** min(self._sync_failures, 6))
        log.warning("sync failed (%s); retrying in %ds", _describe(response), delay)
        await asyncio.sleep(delay)

    async def _on_sync(self, response: SyncResponse) -> None:
        self._sync_failures = 0
        now = time.monotonic()
        if self._last_sync is not None and now - self._last_sync > SYNC_GAP_LOG_S:
            log.info("sync resumed after %.0fs without one", now - self._last_sync)
        self._last_sync = now
        for room_id, invite in response.rooms.invite.items():
            await self._on_invite(room_id, invite.invite_state)
        for room_id, joined in response.rooms.join.items():
            events = joined.timeline.events
            if any(_is_authority_event(e) for e in [*joined.state, *events]):
                self._authority.pop(room_id, None)
            if self._skip_history:
                continue
            first = self._first_after_own_join(events)
            if joined.timeline.limited and first == 0:  # a gap, not a room just joined
                log.warning(
                    "%s: more than %d events since the last sync; commands older than "
                    "those are not answered",
                    room_id,
                    TIMELINE_LIMIT,
                )
            for event in events[first:]:
                if isinstance(event, MegolmEvent):
                    await self._undecryptable(room_id, event)
                else:
                    await self._deliver(room_id, event)
        await self._storage.kv.put(self._token_key, response.next_batch)
        self._skip_history = False
        if self.on_batch_end is not None:
            await self.on_batch_end()
        self.synced.set()
        self._next_batch.set()
        self._next_batch = asyncio.Event()

    async def _deliver(self, room_id: str, event: Any) -> None:
        """Hand a (decrypted or plain) timeline event to the core."""
        source = getattr(event, "source", None) or {}
        if source.get("type") == "m.room.redaction":
            # Rooms v11+ carry `redacts` in the content (Synapse repeats it outside).
            redacts = source.get("redacts") or (source.get("content") or {}).get("redacts")
            sender = source.get("sender")
            if (
                isinstance(redacts, str)
                and sender != self.user_id
                and self.on_redaction is not None
            ):
                await self.on_redaction(
                    IncomingRedaction(room_id, str(source.get("event_id")), str(sender), redacts)
                )
            return
        if isinstance(event, ReactionEvent):
            if event.sender != self.user_id and self.on_reaction is not None:
                await self.on_reaction(
                    IncomingReaction(
                        room_id, event.event_id, event.sender, event.reacts_to, event.key
                    )
                )
            return
        msg = self._incoming(room_id, event)
        if msg is not None and self.on_message is not None:
            await self.on_message(msg)

    # -- encrypted events without their key ------------------------------------------

    async def _undecryptable(self, room_id: str, event: MegolmEvent) -> None:
        """Keep it (ciphertext) and ask for its key; retried when a room key arrives."""
        if event.sender == self.user_id:
            return
        if not await self._storage.undecrypted.add(
            event.event_id, room_id, event.sender, event.session_id, event.source
        ):
            return
        log.info(
            "cannot decrypt %s from %s in %s yet (no room key): asking for it",
            event.event_id,
            event.sender,
            room_id,
        )
        event.room_id = room_id
        if event.session_id in self._key_requested:
            return
        self._key_requested.add(event.session_id)
        # In the background: the sync callback (and the token) need not wait for it.
        task = asyncio.create_task(self._request_key(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _request_key(self, event: MegolmEvent) -> None:
        try:
            # To our own other devices (nio's request, which also lets nio
            # accept a forwarded key), and to the sender's device.
            await self.client.request_room_key(event)
            await self.client.to_device(
                event.as_key_request(event.sender, self.device_id, device_id=event.device_id)
            )
        except (LocalProtocolError, ClientError, TimeoutError) as exc:
            log.info("room key request for %s not sent: %s", event.event_id, exc)

    async def _on_room_key(self, event: RoomKeyEvent) -> None:
        """A room key arrived: the events waiting for it can be read now."""
        await self._retry_undecrypted(event.session_id)

    async def _retry_undecrypted(self, session_id: str | None) -> None:
        """Decrypt what can be; past `undecryptable_after`, tell the sender (once per key)."""
        after = self._config.undecryptable_after.total_seconds()
        for row in await self._storage.undecrypted.pending(session_id):
            late = time.time() - row.received_at >= after
            if session_id is None and not late:
                continue  # the periodic check only looks at those past the delay
            decrypted = self._decrypt(row.room_id, row.event)
            if decrypted is not None:
                log.info("decrypted %s now that its room key arrived", row.event_id)
                await self._deliver(row.room_id, decrypted)
                await self._storage.undecrypted.finish(row.event_id, "decrypted")
                continue
            if not late:
                continue
            if await self._storage.undecrypted.told(row.room_id, row.sender, row.session_id):
                await self._storage.undecrypted.finish(row.event_id, "dropped")
                continue
            log.warning(
                "could not decrypt %s from %s in %s after %.0fs: telling the sender",
                row.event_id,
                row.sender,
                row.room_id,
                after,
            )
            if self.on_undecryptable is not None:
                try:
                    await self.on_undecryptable(
                        IncomingMessage(row.room_id, row.event_id, row.sender, "")
                    )
                except SendError as exc:
                    if not exc.permanent:
                        continue  # tried again at the next check
            await self._storage.undecrypted.finish(row.event_id, "told")

    def _decrypt(self, room_id: str, source: dict[str, Any]) -> Any | None:
        try:
            event = Event.parse_encrypted_event(source)
            if not isinstance(event, MegolmEvent) or self.client.olm is None:
                return None
            return self.client.olm.decrypt_megolm_event(event, room_id)
        except (EncryptionError, KeyError, ValueError, TypeError):
            return None

    async def _watch_undecrypted(self) -> None:
        after = self._config.undecryptable_after.total_seconds()
        while True:
            await asyncio.sleep(max(0.5, min(10.0, after / 4)))
            try:
                await self._retry_undecrypted(None)
            except Exception:
                log.exception("checking undecrypted events failed")

    def _first_after_own_join(self, events: list[Any]) -> int:
        """Index after the bot's own join in this batch: what precedes it is history."""
        for i in range(len(events) - 1, -1, -1):
            e = events[i]
            if (
                isinstance(e, RoomMemberEvent)
                and e.state_key == self.user_id
                and e.membership == "join"
                and e.prev_membership != "join"
            ):
                return i + 1
        return 0

    def _incoming(self, room_id: str, event: Any) -> IncomingMessage | None:
        # m.notice (other bots, ourselves) and m.emote are never commands.
        if not isinstance(event, RoomMessageText) or event.sender == self.user_id:
            return None
        content = event.source.get("content", {})
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace" or "m.new_content" in content:
            return None  # an edit: the original was the command
        thread_root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        mentioned = (content.get("m.mentions") or {}).get("user_ids") or []
        mentions = tuple(u for u in mentioned if isinstance(u, str) and u != self.user_id)
        return IncomingMessage(
            room_id, event.event_id, event.sender, event.body, thread_root, mentions[:20]
        )

    async def _on_invite(self, room_id: str, invite_state: Iterable[Any]) -> None:
        inviter = next(
            (
                e.sender
                for e in invite_state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == self.user_id
                and e.membership == "invite"
            ),
            None,
        )
        if inviter is None:
            return
        if not permissions.invite_allowed(inviter, self._allowed):
            log.info("declining invite to %s from %s (server not allowed)", room_id, inviter)
            await self.client.room_leave(room_id)
            return
        resp = await self.client.join(room_id)
        if isinstance(resp, JoinError):
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, _describe(resp))
        else:
            log.info("joined %s, invited by %s", room_id, inviter)

    async def _on_error(self, response: ErrorResponse) -> None:
        if response.status_code != "M_LIMIT_EXCEEDED":
            return
        wait = (getattr(response, "retry_after_ms", None) or 5000) / 1000
        now = time.monotonic()
        self.rate_limited += 1
        self._not_before = max(self._not_before, now + wait)
        if now - self._rate_logged_at >= RATE_LOG_EVERY_S:
            self._rate_logged_at = now
            log.info(
                "rate limited by the homeserver (%d time(s) so far): waiting %.1fs as told",
                self.rate_limited,
                wait,
            )

    @contextlib.asynccontextmanager
    async def _rate_limited_turn(self) -> AsyncIterator[None]:
        """Wait out a 429; while they keep coming, one send at a time.

        Parallel sends would each get their own 429 and retry together (about
        four refused requests per message at Synapse's default limit, measured
        with bench/fanout.py); one at a time, about one.
        """
        if time.monotonic() - self._not_before > RATE_CALM_S:
            yield  # no recent 429
            return
        async with self._one_at_a_time:
            delay = self._not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield

    # -- ChatClient -----------------------------------------------------------------

    async def send_notice(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> str | None:
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": message.body,
            "format": "org.matrix.custom.html",
            "formatted_body": message.html,
            "m.mentions": {"user_ids": list(message.mentions)} if message.mentions else {},
        }
        return await self._send(room_id, content, txn_id, reply_to, thread_root)

    async def open_direct_room(self, user_id: str) -> str:
        # Encrypted, as Tchap's direct rooms are. The room key is shared with
        # the invitee's devices too, so what is sent before they join (the
        # confirmation of a 🔔) is readable once they do.
        resp = await self.client.room_create(
            is_direct=True,
            invite=[user_id],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[EnableEncryptionBuilder().as_dict()],
        )
        if not isinstance(resp, RoomCreateResponse):
            raise SendError(f"cannot open a direct room: {_describe(resp)}", permanent=False)
        room_id = str(resp.room_id)
        # nio sends only to rooms its sync has shown; the next sync will.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NEW_ROOM_WAIT_S):
                while room_id not in self.client.rooms:
                    await self._next_batch.wait()
        return room_id

    async def display_name(self, user_id: str) -> str | None:
        resp = await self.client.get_displayname(user_id)
        if isinstance(resp, ProfileGetDisplayNameResponse):
            return resp.displayname or None
        if getattr(resp, "status_code", None) == "M_NOT_FOUND":
            raise UnknownUser(user_id)
        log.info("no display name for %s: %s", user_id, _describe(resp))
        return None

    async def send_file(
        self,
        room_id: str,
        upload: FileUpload,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> None:
        room = self.client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        try:
            resp, keys = await self.client.upload(
                lambda _limited, _timeouts: io.BytesIO(upload.data),
                content_type=upload.mimetype,
                filename=upload.filename,
                encrypt=encrypt,
                filesize=len(upload.data),
            )
        except (ClientError, TimeoutError) as exc:
            raise SendError(f"upload failed: {type(exc).__name__}", permanent=False) from None
        if not isinstance(resp, UploadResponse):
            status = getattr(resp, "status_code", None)
            raise SendError(f"upload failed: {_describe(resp)}", permanent=status == "M_TOO_LARGE")
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": upload.filename,
            "filename": upload.filename,
            "info": {"mimetype": upload.mimetype, "size": len(upload.data)},
            "m.mentions": {},
        }
        if encrypt and keys is not None:
            content["file"] = {**keys, "url": resp.content_uri, "mimetype": upload.mimetype}
        else:
            content["url"] = resp.content_uri
        await self._send(room_id, content, txn_id, reply_to, thread_root)

    async def _send(
        self,
        room_id: str,
        content: dict[str, Any],
        txn_id: str,
        reply_to: str | None,
        thread_root: str | None,
    ) -> str:
        if thread_root:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        try:
            async with self._rate_limited_turn():
                resp = await self.client.room_send(
                    room_id,
                    "m.room.message",
                    content,
                    tx_id=txn_id,
                    # Members' devices need not be verified to read the bot.
                    ignore_unverified_devices=True,
                )
        except (SendRetryError, LocalProtocolError, OlmUnverifiedDeviceError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        if isinstance(resp, RoomSendError):
            raise SendError(_describe(resp), permanent=resp.status_code in _PERMANENT)
        return str(resp.event_id)

    async def power_level(self, room_id: str, user_id: str) -> float:
        authority = self._authority.get(room_id)
        if authority is None:
            authority = await self._fetch_authority(room_id)
            if authority is None:
                return 0  # unknown: grant nothing
            self._authority[room_id] = authority
        return permissions.power_level(
            user_id, authority.create_sender, authority.create_content, authority.power_levels
        )

    async def _fetch_authority(self, room_id: str) -> _RoomAuthority | None:
        resp = await self.client.room_get_state(room_id)
        if not isinstance(resp, RoomGetStateResponse):
            log.warning("cannot read the state of %s: %s", room_id, _describe(resp))
            return None
        create = pl = None
        for event in resp.events:
            if event.get("state_key") != "":
                continue
            if event.get("type") == "m.room.create":
                create = event
            elif event.get("type") == "m.room.power_levels":
                pl = event
        if create is None:
            return None
        return _RoomAuthority(
            str(create.get("sender", "")),
            dict(create.get("content") or {}),
            dict(pl.get("content") or {}) if pl else None,
        )


def _is_authority_event(event: Any) -> bool:
    source = getattr(event, "source", None) or {}
    return source.get("type") in ("m.room.power_levels", "m.room.create")


def _describe(resp: Any) -> str:
    """An error response as a log line: code and message, never a token."""
    if isinstance(resp, ErrorResponse):
        return f"{resp.status_code or 'error'}: {resp.message or ''}".strip()
    return type(resp).__name__
