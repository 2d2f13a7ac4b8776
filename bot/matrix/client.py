"""`MatrixChat`: the bot's Matrix client, composed of one part per concern.

`login.Session` holds the nio client (login, Tchap discovery, saved session);
`sync.SyncLoop` runs the sync and hands each batch to `invites.Invites`
(which joins in the background), `rooms.RoomLifecycleEvents` (leaves,
members, tombstones),
`authority.RoomAuthority`, `undecryptable.Undecryptable` and
`events.IncomingEvents` (the core's `Incoming*`); `sending.RoomPoster` posts,
paced by `sending.RatePacer` after 429s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinError,
    ProfileGetDisplayNameResponse,
    RoomLeaveError,
    RoomResolveAliasResponse,
)
from pydantic import SecretStr

from bot.chat import FileUpload, SentCheck, UnknownUser
from bot.config import MatrixConfig, server_name
from bot.db.storage import Storage
from bot.matrix.authority import RoomAuthority
from bot.matrix.events import Handlers, IncomingEvents
from bot.matrix.identity import Identity
from bot.matrix.invites import Invites
from bot.matrix.login import LoginFailed, Session
from bot.matrix.responses import describe
from bot.matrix.rooms import RoomLifecycleEvents
from bot.matrix.sending import RatePacer, RoomPoster
from bot.matrix.sent import find_sent
from bot.matrix.session_state import SessionStates
from bot.matrix.sync import SyncLoop
from bot.matrix.undecryptable import Undecryptable
from bot.permissions import default_allowed_servers
from bot.render import Message

# `connect()` raises `LoginFailed` (`run()` waits in the session's states
# instead): importable with the class.
__all__ = ["LoginFailed", "MatrixChat"]

log = logging.getLogger(__name__)


class MatrixChat:
    """`ChatClient` over matrix-nio."""

    def __init__(
        self,
        config: MatrixConfig,
        storage_dir: Path,
        storage: Storage,
        *,
        store_key: SecretStr | None = None,
    ) -> None:
        # What the core sets before `run()`: where messages, reactions… go.
        self.handlers = Handlers()
        self._pacer = RatePacer()
        # `store_key`: the secret nio's crypto store is pickled with (storage.key).
        self._session = Session(config, storage_dir, on_error=self._on_error, store_key=store_key)
        self._invites = Invites(self._session, storage, config.allowed_servers)
        self._authority = RoomAuthority(self._session)
        events = IncomingEvents(self._session, self.handlers)
        undecryptable = Undecryptable(
            self._session,
            storage,
            self.handlers,
            deliver=events.deliver,
            after=config.undecryptable_after,
        )
        # `wait_for_room` is the sync's, built just below: called only once syncing.
        self._rooms = RoomLifecycleEvents(
            self._session,
            self.handlers,
            authority=self._authority,
            allowed_servers=lambda: self._invites.allowed,
            room_shown=lambda room_id: self._sync.wait_for_room(room_id),
        )
        self._sync = SyncLoop(
            self._session,
            storage,
            self.handlers,
            events=events,
            undecryptable=undecryptable,
            invites=self._invites,
            authority=self._authority,
            rooms=self._rooms,
        )
        self._sender = RoomPoster(self._session, self._pacer, room_shown=self._sync.wait_for_room)

    # -- session and state -----------------------------------------------------------

    @property
    def client(self) -> AsyncClient:
        """The nio client (a placeholder until `connect()`)."""
        return self._session.client

    @property
    def user_id(self) -> str:
        """The bot's Matrix ID (once connected: also with an e-mail login)."""
        return self._session.user_id

    @property
    def device_id(self) -> str:
        return self._session.device_id

    async def connect(self, *, wait_while_expired: bool = True) -> None:
        """Reuse the saved session (same device), or log in once and save it
        (see `Session.connect`)."""
        await self._session.connect(wait_while_expired=wait_while_expired)
        if not self._invites.allowed:  # an e-mail login: the account's server is known now
            self._invites.allowed = default_allowed_servers(server_name(self.user_id))
        log.info("invites accepted from: %s", ", ".join(self._invites.allowed))

    async def _on_error(self, response: ErrorResponse) -> None:
        # Joins have their own limit (rc_joins): a join waiting out a 429 must
        # not make the answers wait too.
        if isinstance(response, JoinError | RoomLeaveError):
            await self._invites.on_error(response)
        else:
            await self._pacer.on_error(response)

    def identity(self) -> Identity:
        """The cross-signing identity of the connected device."""
        return self._session.identity()

    @property
    def states(self) -> SessionStates:
        """Expired, revoked or usable: what the homeserver last said of the session."""
        return self._session.states

    async def close(self) -> None:
        await self._session.close()

    async def run(self) -> None:
        """Sync until cancelled, resuming from the saved token."""
        await self._sync.run()

    @property
    def synced(self) -> asyncio.Event:
        """Set once the first sync batch has been handled."""
        return self._sync.synced

    def seconds_since_sync(self) -> float:
        """Since the last successful sync (since start when none yet)."""
        return self._sync.seconds_since_sync()

    def syncing_recently(self, within: float) -> bool:
        """Whether a sync succeeded in the last `within` seconds (long-polls last 30 s)."""
        return self._sync.syncing_recently(within)

    @property
    def rate_limited(self) -> int:
        """429s received so far (sends and joins)."""
        return self._pacer.rate_limited + self._invites.rate_limited

    @property
    def invites_waiting(self) -> int:
        """Invites received and not yet joined or declined."""
        return self._invites.waiting

    @property
    def invites_rate_limited(self) -> int:
        """429s received while joining rooms."""
        return self._invites.rate_limited

    # -- ChatClient --------------------------------------------------------------------

    async def send_message(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
        replaces: str | None = None,
    ) -> str | None:
        await self._usable(room_id)
        return await self._sender.send_message(
            room_id,
            message,
            txn_id=txn_id,
            reply_to=reply_to,
            thread_root=thread_root,
            replaces=replaces,
        )

    async def send_file(
        self,
        room_id: str,
        upload: FileUpload,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> None:
        await self._usable(room_id)
        await self._sender.send_file(
            room_id, upload, txn_id=txn_id, reply_to=reply_to, thread_root=thread_root
        )

    async def redact(self, room_id: str, event_id: str, *, reason: str, txn_id: str) -> None:
        await self._usable(room_id)
        await self._sender.redact(room_id, event_id, reason=reason, txn_id=txn_id)

    async def find_sent(self, room_id: str, txn_id: str, *, since: float) -> SentCheck:
        await self._usable(room_id)
        return await find_sent(self._session.client, room_id, txn_id, since)

    async def open_direct_room(self, user_id: str) -> str:
        await self._session.states.until_usable()
        return await self._sender.open_direct_room(user_id)

    async def _usable(self, room_id: str) -> None:
        """Until the session is usable (not expired nor revoked: a post waits
        there, its attempts are not used up) and a sync has shown the room."""
        await self._session.states.until_usable()
        await self._rooms.until_shown(room_id)

    async def display_name(self, user_id: str) -> str | None:
        resp = await self._session.client.get_displayname(user_id)
        if isinstance(resp, ProfileGetDisplayNameResponse):
            return resp.displayname or None
        if getattr(resp, "status_code", None) == "M_NOT_FOUND":
            raise UnknownUser(user_id)
        log.info("no display name for %s: %s", user_id, describe(resp))
        return None

    async def power_level(self, room_id: str, user_id: str) -> float:
        return await self._authority.power_level(room_id, user_id)

    async def notification_level(self, room_id: str, key: str = "room") -> float:
        return await self._authority.notification_level(room_id, key)

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return await self._authority.membership(room_id, user_id) == "join"

    async def resolve_alias(self, alias: str) -> str | None:
        resp = await self._session.client.room_resolve_alias(alias)
        if isinstance(resp, RoomResolveAliasResponse):
            return str(resp.room_id)
        log.info("cannot resolve %s: %s", alias, describe(resp))
        return None

    async def join_room(self, room_id: str, *, via: Sequence[str] = ()) -> bool:
        return await self._rooms.join(room_id, via)

    async def predecessor(self, room_id: str) -> str | None:
        create = await self._authority.create(room_id)
        if create is None:
            return None
        predecessor = create[1].get("predecessor")
        named = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        return named if isinstance(named, str) else ""

    async def leave_room(self, room_id: str) -> None:
        await self._rooms.leave(room_id)

    def others_in_rooms(self) -> dict[str, int | None]:
        return self._rooms.others_in_rooms()

    async def joined_rooms(self) -> set[str] | None:
        return await self._rooms.joined_rooms()
