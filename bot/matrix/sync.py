"""The sync loop: filter, saved token, and each batch handed to the other parts.

Commands reach the core as `IncomingMessage`s through one callback, in
timeline order, and the sync token is saved only after that callback has
recorded them: a crash can make the bot see a command twice (the inbox drops
the second), never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nio import MegolmEvent, RoomKeyEvent, RoomMemberEvent, SyncError, SyncResponse

from bot.db.storage import Storage
from bot.matrix import recovery
from bot.matrix.authority import RoomAuthority
from bot.matrix.events import Handlers, IncomingEvents
from bot.matrix.invites import Invites
from bot.matrix.login import Session
from bot.matrix.responses import describe
from bot.matrix.rooms import RoomLifecycleEvents
from bot.matrix.session_state import UNKNOWN_TOKEN
from bot.matrix.state import is_room_state
from bot.matrix.undecryptable import Undecryptable

log = logging.getLogger(__name__)

SYNC_TIMEOUT_MS = 30_000
# Events per room and sync. After a downtime, a busy room's timeline is cut
# ("limited") to this many: larger than Synapse's default 10, so that the
# commands typed while the bot was away are still seen.
TIMELINE_LIMIT = 100
# The room events the bot reads; the homeserver sends nothing else.
TIMELINE_TYPES = [
    "m.room.message",  # commands (events.py)
    "m.room.encrypted",  # the same, encrypted
    "m.reaction",  # 🔔 (events.py)
    "m.room.redaction",  # a command withdrawn (events.py)
    "m.room.member",  # the bot's own join (history before it), leaves; nio: who gets room keys
    "m.room.create",  # v12 creators (authority.py)
    "m.room.power_levels",  # moderators (authority.py)
    "m.room.encryption",  # nio: answers in encrypted rooms are encrypted
    "m.room.tombstone",  # room upgrades
]
# Room state: the same minus what is never state; members lazily, i.e. only
# the senders of the events shown (nio asks for the joined members before its
# first encrypted send to a room: `members_synced`; later arrivals come
# through the timeline). Nor is a room's member count always known: Synapse
# sends its `summary` (`m.joined_member_count`) in a sync without a token or
# when members change, not in a restart's `full_state`; ask `joined_members`.
STATE_TYPES = [
    t
    for t in TIMELINE_TYPES
    if t not in ("m.room.message", "m.room.encrypted", "m.reaction", "m.room.redaction")
]


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """A light sync: no presence, typing, receipts or account data (the bot
    reads its account data through the API: identity.py), only the event
    types above. To-device messages are not filtered: E2EE needs them."""
    return {
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "state": {"types": STATE_TYPES, "lazy_load_members": True},
            "timeline": {
                "types": TIMELINE_TYPES,
                "limit": timeline_limit,
                "lazy_load_members": True,
            },
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    }


SYNC_FILTER = sync_filter(TIMELINE_LIMIT)
# Without a saved token everything is history: ask for as little as possible.
FIRST_RUN_FILTER = sync_filter(1)
# A longer time without a successful sync is logged when syncing resumes.
SYNC_GAP_LOG_S = 45


class SyncLoop:
    def __init__(
        self,
        session: Session,
        storage: Storage,
        handlers: Handlers,
        *,
        events: IncomingEvents,
        undecryptable: Undecryptable,
        invites: Invites,
        authority: RoomAuthority,
        rooms: RoomLifecycleEvents,
    ) -> None:
        self._session = session
        self._storage = storage
        self._handlers = handlers
        self._events = events
        self._undecryptable = undecryptable
        self._invites = invites
        self._authority = authority
        self._rooms = rooms
        self._skip_history = False
        self._sync_failures = 0
        self.synced = asyncio.Event()
        self._last_sync: float | None = None
        self._started = time.monotonic()
        # Set (then replaced) after each sync batch has been handled.
        self._next_batch = asyncio.Event()

    @property
    def _token_key(self) -> str:
        return f"sync_token:{self._session.user_id}"

    async def run(self) -> None:
        """Sync until cancelled, resuming from the saved token."""
        if self._handlers.on_message is None:
            raise RuntimeError("MatrixChat.handlers.on_message must be set before run()")
        client = self._session.client
        since = await self._storage.kv.get(self._token_key)
        # Without a token, everything the first sync shows is history.
        self._skip_history = since is None
        client.add_response_callback(self._on_sync, SyncResponse)
        client.add_response_callback(self._on_sync_error, SyncError)
        client.add_to_device_callback(self._undecryptable.on_room_key, (RoomKeyEvent,))
        log.info("syncing%s", " (first run: history is not answered)" if since is None else "")
        await self._invites.load()
        background = [
            asyncio.create_task(self._undecryptable.watch(), name="undecrypted"),
            asyncio.create_task(self._invites.run(), name="invites"),
        ]
        try:
            await client.sync_forever(
                timeout=SYNC_TIMEOUT_MS,
                sync_filter=SYNC_FILTER,
                first_sync_filter=FIRST_RUN_FILTER if since is None else SYNC_FILTER,
                since=since,
                # nio keeps no room list across restarts (only which rooms are
                # encrypted), and sends only to rooms it knows: every joined
                # room must be shown once. With the filter, that is a few state
                # events per room (bench/first_sync.py).
                full_state=True,
            )
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def seconds_since_sync(self) -> float:
        """Since the last successful sync (since start when none yet)."""
        return time.monotonic() - (self._last_sync or self._started)

    def syncing_recently(self, within: float) -> bool:
        """Whether a sync succeeded in the last `within` seconds (long-polls last 30 s)."""
        return self._last_sync is not None and time.monotonic() - self._last_sync <= within

    async def wait_for_room(self, room_id: str, member: str | None = None) -> None:
        """Until a handled sync batch has shown the room (with `member` in it,
        invited or joined, when given)."""
        while True:
            room = self._session.client.rooms.get(room_id)
            if room is not None and (member is None or member in room.users):
                return
            await self._next_batch.wait()

    async def _on_sync_error(self, response: SyncError) -> None:
        # Both wait here (nio syncs again once this returns): an expired
        # account a minute, a revoked token until the bot has logged in again.
        if recovery.is_expired(response):
            await recovery.expired(self._session)
            return
        if response.status_code == UNKNOWN_TOKEN:
            await recovery.token_refused(self._session, response)
            return
        self._sync_failures += 1
        delay = min(60, 2 ** min(self._sync_failures, 6))
        log.warning("sync failed (%s); retrying in %ds", describe(response), delay)
        await asyncio.sleep(delay)

    async def _on_sync(self, response: SyncResponse) -> None:
        self._sync_failures = 0
        await self._session.states.ok()
        now = time.monotonic()
        if self._last_sync is not None and now - self._last_sync > SYNC_GAP_LOG_S:
            log.info("sync resumed after %.0fs without one", now - self._last_sync)
        self._last_sync = now
        # Queued (and stored) before the token moves on; joined in the background.
        await self._invites.note(response.rooms.invite, left=response.rooms.leave)
        for room_id, left in response.rooms.leave.items():
            await self._rooms.on_left_room(room_id, left)
        for room_id, joined in response.rooms.join.items():
            events = joined.timeline.events
            if joined.timeline.limited:
                self._authority.gap(room_id)
            self._authority.update(room_id, [*joined.state, *events])
            await self._rooms.on_joined_room(room_id, joined)
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
                    await self._undecryptable.keep(room_id, event)
                else:
                    await self._events.deliver(room_id, event)
        await self._storage.kv.put(self._token_key, response.next_batch)
        self._skip_history = False
        if self._handlers.on_batch_end is not None:
            await self._handlers.on_batch_end()
        self.synced.set()
        self._next_batch.set()
        self._next_batch = asyncio.Event()

    def _first_after_own_join(self, events: list[Any]) -> int:
        """Index after the bot's own join in this batch: what precedes it is history."""
        user_id = self._session.user_id
        for i in range(len(events) - 1, -1, -1):
            e = events[i]
            if (
                isinstance(e, RoomMemberEvent)
                and is_room_state(e)
                and e.state_key == user_id
                and e.membership == "join"
                and e.prev_membership != "join"
            ):
                return i + 1
        return 0
