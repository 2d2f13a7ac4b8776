"""Encrypted events that arrive before their room key.

Each is kept (ciphertext, in storage) and its key asked for; it is decrypted
and handed to the core when a room key arrives. Past `undecryptable_after`,
the sender is told (`Handlers.on_undecryptable`), and the others waiting
for that key are dropped.

Garbage (events with fresh session ids, that no key will ever open) must
not cost much: the sender is told at most once per key and once an hour per
room (`TELL_EVERY_S`), at most `MAX_PENDING_PER_SENDER` events of a sender
wait at once (the next ones are not kept, nor their keys asked for), and
the keys asked for are forgotten after the delay (asked again if needed).
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
from bot.limits import Clock, Recent
from bot.matrix.events import Handlers
from bot.matrix.login import Session

log = logging.getLogger(__name__)

# A sender is told "could not decrypt" at most once per room in this long.
# Kept in memory: a restart costs at most one more notice per sender and
# room, and no table or migration is needed for it.
TELL_EVERY_S = 3600.0
# Events of one sender waiting for their key at once; the next ones are not
# kept (their sender is told about the first ones anyway).
MAX_PENDING_PER_SENDER = 50
# A key asked for is forgotten after `undecryptable_after`, but not sooner than this.
KEY_REQUEST_KEPT_MIN_S = 60.0


class Undecryptable:
    def __init__(
        self,
        session: Session,
        storage: Storage,
        handlers: Handlers,
        *,
        deliver: Callable[[str, Any], Awaitable[None]],
        after: timedelta,
        clock: Clock = time.monotonic,
    ) -> None:
        self._session = session
        self._storage = storage
        self._handlers = handlers
        # Hands a decrypted timeline event to the core.
        self._deliver = deliver
        self._after = after.total_seconds()
        # Session ids whose key was asked for lately.
        self._key_requested: Recent[str] = Recent(
            max(self._after, KEY_REQUEST_KEPT_MIN_S), clock, on_forget=self._forget_request
        )
        # (room, sender) told lately; senders over MAX_PENDING_PER_SENDER, logged lately.
        self._told: Recent[tuple[str, str]] = Recent(TELL_EVERY_S, clock)
        self._capped: Recent[str] = Recent(TELL_EVERY_S, clock)
        self._background: set[asyncio.Task[None]] = set()

    async def keep(self, room_id: str, event: MegolmEvent) -> None:
        """Keep it (ciphertext) and ask for its key; retried when a room key arrives."""
        if event.sender == self._session.user_id:
            return
        if await self._storage.undecrypted.waiting_from(event.sender) >= MAX_PENDING_PER_SENDER:
            if event.sender not in self._capped:
                self._capped.add(event.sender)
                log.warning(
                    "%s has %d encrypted events waiting for their key: the next ones are not "
                    "kept (logged once an hour)",
                    event.sender,
                    MAX_PENDING_PER_SENDER,
                )
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

    def _forget_request(self, session_id: str) -> None:
        """A key asked for long ago: nio forgets it too (its table of requests,
        kept in its store, would otherwise grow with every unknown key), and
        it may be asked for again."""
        olm = self._session.client.olm
        if olm is None:
            return
        request = olm.outgoing_key_requests.pop(session_id, None)
        if request is not None:
            olm.store.remove_outgoing_key_request(request)

    async def on_room_key(self, event: RoomKeyEvent) -> None:
        """A room key arrived: the events waiting for it can be read now."""
        await self._retry_undecrypted(event.session_id)

    async def _retry_undecrypted(self, session_id: str | None) -> None:
        """Decrypt what can be; past `undecryptable_after`, tell the sender (once per
        key, and once an hour per room)."""
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
            if (row.room_id, row.sender) in self._told or await self._storage.undecrypted.told(
                row.room_id, row.sender, row.session_id
            ):
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
            self._told.add((row.room_id, row.sender))
            await self._storage.undecrypted.finish(row.event_id, "told")

    async def check(self) -> None:
        """Tell the senders of the events still unreadable past the delay (see `watch`)."""
        await self._retry_undecrypted(None)

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
                await self.check()
            except Exception:
                log.exception("checking undecrypted events failed")
