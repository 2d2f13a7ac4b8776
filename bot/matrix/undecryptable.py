"""Encrypted events that arrive before their room key.

Each is kept (ciphertext, in storage) and its key asked for; it is decrypted
and handed to the core when a room key arrives. Past `undecryptable_after`,
the sender is told once per key (`Handlers.on_undecryptable`), and the
others waiting for that key are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import ClientError
from nio import Event, LocalProtocolError, MegolmEvent, RoomKeyEvent
from nio.exceptions import EncryptionError

from bot.chat import IncomingMessage, SendError
from bot.db.storage import Storage
from bot.matrix.events import Handlers
from bot.matrix.login import Session

log = logging.getLogger(__name__)


class Undecryptable:
    def __init__(
        self,
        session: Session,
        storage: Storage,
        handlers: Handlers,
        *,
        deliver: Callable[[str, Any], Awaitable[None]],
        after: timedelta,
    ) -> None:
        self._session = session
        self._storage = storage
        self._handlers = handlers
        # Hands a decrypted timeline event to the core.
        self._deliver = deliver
        self._after = after.total_seconds()
        self._key_requested: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def keep(self, room_id: str, event: MegolmEvent) -> None:
        """Keep it (ciphertext) and ask for its key; retried when a room key arrives."""
        if event.sender == self._session.user_id:
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
        client = self._session.client
        try:
            # To our own other devices (nio's request, which also lets nio
            # accept a forwarded key), and to the sender's device.
            await client.request_room_key(event)
            await client.to_device(
                event.as_key_request(
                    event.sender, self._session.device_id, device_id=event.device_id
                )
            )
        except (LocalProtocolError, ClientError, TimeoutError) as exc:
            log.info("room key request for %s not sent: %s", event.event_id, exc)

    async def on_room_key(self, event: RoomKeyEvent) -> None:
        """A room key arrived: the events waiting for it can be read now."""
        await self._retry_undecrypted(event.session_id)

    async def _retry_undecrypted(self, session_id: str | None) -> None:
        """Decrypt what can be; past `undecryptable_after`, tell the sender (once per key)."""
        after = self._after
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
            if self._handlers.on_undecryptable is not None:
                try:
                    await self._handlers.on_undecryptable(
                        IncomingMessage(row.room_id, row.event_id, row.sender, "")
                    )
                except SendError as exc:
                    if not exc.permanent:
                        continue  # tried again at the next check
            await self._storage.undecrypted.finish(row.event_id, "told")

    def _decrypt(self, room_id: str, source: dict[str, Any]) -> Any | None:
        olm = self._session.client.olm
        try:
            event = Event.parse_encrypted_event(source)
            if not isinstance(event, MegolmEvent) or olm is None:
                return None
            return olm.decrypt_megolm_event(event, room_id)
        except (EncryptionError, KeyError, ValueError, TypeError):
            return None

    async def watch(self) -> None:
        """Until cancelled: tell the senders of the events still unreadable past the delay."""
        after = self._after
        while True:
            await asyncio.sleep(max(0.5, min(10.0, after / 4)))
            try:
                await self._retry_undecrypted(None)
            except Exception:
                log.exception("checking undecrypted events failed")
