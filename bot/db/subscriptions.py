"""Which rooms receive which scheduled posts."""

from __future__ import annotations

import time

from bot.db.database import Database, Queries

# Subscription kinds (what a room receives), as stored.
REMINDERS = "rappels"
GAZETTE = "gazette"


class Subscriptions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, room_id: str, kind: str, actor: str) -> bool:
        """False when the room was already subscribed."""
        result = await self._db.execute(
            "INSERT OR IGNORE INTO subscriptions (room_id, kind, added_by, added_at) "
            "VALUES ($1, $2, $3, $4)",
            room_id,
            kind,
            actor,
            int(time.time()),
        )
        return result.rowcount == 1

    async def remove(self, room_id: str, kind: str) -> bool:
        result = await self._db.execute(
            "DELETE FROM subscriptions WHERE room_id = $1 AND kind = $2", room_id, kind
        )
        return result.rowcount == 1

    async def kinds(self, room_id: str) -> list[str]:
        """What this room is subscribed to."""
        rows = await self._db.fetch(
            "SELECT kind FROM subscriptions WHERE room_id = $1 ORDER BY kind", room_id
        )
        return [str(r["kind"]) for r in rows]


async def rooms(q: Queries, kind: str) -> list[str]:
    """The rooms subscribed to `kind`, in subscription order."""
    rows = await q.fetch("SELECT room_id FROM subscriptions WHERE kind = $1 ORDER BY rowid", kind)
    return [str(r["room_id"]) for r in rows]
