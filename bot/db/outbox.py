"""The outbox: one row per (broadcast, room), with its transaction id, written before sending.

A crash resends pending rows with the same id, which the homeserver
deduplicates; UNIQUE (broadcast, room_id) keeps a broadcast from being
queued twice for a room. What a broadcast means, and its transaction id for
a room, are its kind's (`bot.broadcasts`): this module stores its text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Self

from bot.db import agenda, subscriptions
from bot.db.database import Database, Queries, Row

# Sent posts are kept this long (then they cannot be due again).
POST_RETENTION_S = 30 * 24 * 3600


class Broadcast(Protocol):
    """A broadcast to queue: stored as `str(broadcast)`, sent with `txn_id(room_id)`."""

    def txn_id(self, room_id: str) -> str: ...


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    broadcast: str
    room_id: str
    txn_id: str
    attempts: int
    # When it was queued (epoch s): no attempt of it is older.
    created_at: int = 0
    # The bot's device when it was last attempted (None: not known, or never).
    device_id: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            int(row["id"]),
            row["broadcast"],
            row["room_id"],
            row["txn_id"],
            int(row["attempts"]),
            int(row["created_at"]),
            row["device_id"],
        )


# Queries are literal strings (no formatting): what OutboxItem.from_row reads.
_SELECT = "SELECT id, broadcast, room_id, txn_id, attempts, created_at, device_id FROM outbox "


class Outbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def queue_for_subscribers(
        self, broadcast: Broadcast, kind: str, *, status: str = "pending"
    ) -> int:
        """An outbox row for every room subscribed to `kind` (once per room); rows added.

        `status='skipped'` records a broadcast that will not be sent (too late),
        so that it is decided, and logged, once.
        """
        async with self._db.transaction() as tx:
            return await queue_for_subscribers(tx, broadcast, kind, status, int(time.time()))

    async def queue(self, broadcast: Broadcast, room_id: str, *, status: str = "pending") -> int:
        """One outbox row for one room (a direct message), once; rows added."""
        return await _insert(self._db, broadcast, room_id, status, int(time.time()))

    async def fan_out_changes(self, kind: str, broadcast: Callable[[str], Broadcast]) -> int:
        """Queue every new programme change for the rooms subscribed to `kind`.

        `broadcast(change key)` is the broadcast of a change. One transaction:
        the outbox rows and the change marked as fanned out, so a crash queues
        a change for its rooms once, never twice.
        """
        now = int(time.time())
        queued = 0
        async with self._db.transaction() as tx:
            keys = await agenda.changes_to_fan_out(tx)
            if keys:
                room_ids = await subscriptions.rooms(tx, kind)
                for key in keys:
                    change = broadcast(key)
                    for room_id in room_ids:
                        queued += await _insert(tx, change, room_id, "pending", now)
            await agenda.mark_fanned_out(tx)
        return queued

    async def pending(self) -> list[OutboxItem]:
        rows = await self._db.fetch(_SELECT + "WHERE status = 'pending' ORDER BY id")
        return [OutboxItem.from_row(r) for r in rows]

    async def attempt(self, item_id: int, device_id: str) -> None:
        """One more attempt, about to be made by the bot's device `device_id`."""
        await self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, device_id = $1 WHERE id = $2",
            device_id,
            item_id,
        )

    async def finish(self, item_id: int, status: str) -> None:
        # Only a pending row: one abandoned meanwhile (the bot left the room)
        # stays abandoned.
        await self._db.execute(
            "UPDATE outbox SET status = $1, sent_at = $2 WHERE id = $3 AND status = 'pending'",
            status,
            int(time.time()),
            item_id,
        )

    async def still_pending(self, item_id: int) -> bool:
        """Whether the row is still to send (not abandoned since it was read)."""
        status = await self._db.fetchval("SELECT status FROM outbox WHERE id = $1", item_id)
        return bool(status == "pending")

    async def count(self, status: str) -> int:
        return int(await self._db.fetchval("SELECT count(*) FROM outbox WHERE status = $1", status))

    async def status(self, broadcast: str) -> dict[str, str]:
        """Status of a broadcast (its stored text) by room."""
        rows = await self._db.fetch(
            "SELECT room_id, status FROM outbox WHERE broadcast = $1", broadcast
        )
        return {str(r["room_id"]): str(r["status"]) for r in rows}


async def queue_for_subscribers(
    q: Queries, broadcast: Broadcast, kind: str, status: str, now: int
) -> int:
    """Rows added for the rooms subscribed to `kind` (call inside a transaction)."""
    queued = 0
    for room_id in await subscriptions.rooms(q, kind):
        queued += await _insert(q, broadcast, room_id, status, now)
    return queued


async def _insert(q: Queries, broadcast: Broadcast, room_id: str, status: str, now: int) -> int:
    result = await q.execute(
        "INSERT OR IGNORE INTO outbox (broadcast, room_id, txn_id, status, created_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        str(broadcast),
        room_id,
        broadcast.txn_id(room_id),
        status,
        now,
    )
    return result.rowcount


async def prune(q: Queries, before: int) -> int:
    """Finished rows older than `before`: a pending row stays whatever its age."""
    result = await q.execute(
        "DELETE FROM outbox WHERE status != 'pending' AND created_at < $1", before
    )
    return result.rowcount


async def abandon_room(q: Queries, room_id: str) -> int:
    """The room's pending rows marked abandoned (the bot is not there any more)."""
    result = await q.execute(
        "UPDATE outbox SET status = 'abandoned', sent_at = $1 "
        "WHERE room_id = $2 AND status = 'pending'",
        int(time.time()),
        room_id,
    )
    return result.rowcount


async def abandon(q: Queries, item_id: int) -> int:
    result = await q.execute(
        "UPDATE outbox SET status = 'abandoned', sent_at = $1 WHERE id = $2 AND status = 'pending'",
        int(time.time()),
        item_id,
    )
    return result.rowcount


async def pending_in(q: Queries, room_id: str) -> list[OutboxItem]:
    rows = await q.fetch(_SELECT + "WHERE room_id = $1 AND status = 'pending' ORDER BY id", room_id)
    return [OutboxItem.from_row(r) for r in rows]


async def move(q: Queries, item_id: int, room_id: str, txn_id: str) -> bool:
    """A pending row sent to another room instead, with that room's transaction id.

    False (and the row skipped) when the broadcast is already queued there.
    """
    result = await q.execute(
        "UPDATE OR IGNORE outbox SET room_id = $1, txn_id = $2, attempts = 0 "
        "WHERE id = $3 AND status = 'pending'",
        room_id,
        txn_id,
        item_id,
    )
    if result.rowcount == 1:
        return True
    await q.execute(
        "UPDATE outbox SET status = 'skipped', sent_at = $1 WHERE id = $2 AND status = 'pending'",
        int(time.time()),
        item_id,
    )
    return False


async def insert(q: Queries, broadcast: Broadcast, room_id: str, status: str = "pending") -> int:
    """One row for one room inside the caller's transaction, once; rows added."""
    return await _insert(q, broadcast, room_id, status, int(time.time()))
