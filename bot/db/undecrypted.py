"""Encrypted events not decrypted yet: kept (ciphertext) until their room key arrives."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Self

from bot.db.database import Database, Queries, Row


@dataclass(frozen=True, slots=True)
class Undecrypted:
    event_id: str
    room_id: str
    sender: str
    session_id: str
    event: dict[str, object]
    received_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["event_id"],
            row["room_id"],
            row["sender"],
            row["session_id"],
            json.loads(row["event"]),
            int(row["received_at"]),
        )


class UndecryptedEvents:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, event_id: str, room_id: str, sender: str, session_id: str, event: dict[str, object]
    ) -> bool:
        result = await self._db.execute(
            "INSERT OR IGNORE INTO undecrypted (event_id, room_id, sender, session_id, "
            "event, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
            event_id,
            room_id,
            sender,
            session_id,
            json.dumps(event),
            int(time.time()),
        )
        return result.rowcount == 1

    async def pending(self, session_id: str | None = None) -> list[Undecrypted]:
        if session_id is None:
            rows = await self._db.fetch(
                "SELECT event_id, room_id, sender, session_id, event, received_at "
                "FROM undecrypted WHERE status = 'pending' ORDER BY received_at"
            )
        else:
            rows = await self._db.fetch(
                "SELECT event_id, room_id, sender, session_id, event, received_at "
                "FROM undecrypted WHERE status = 'pending' AND session_id = $1 "
                "ORDER BY received_at",
                session_id,
            )
        return [Undecrypted.from_row(r) for r in rows]

    async def waiting_from(self, sender: str) -> int:
        """How many events of `sender` wait for their key."""
        count = await self._db.fetchval(
            "SELECT COUNT(*) FROM undecrypted WHERE status = 'pending' AND sender = $1", sender
        )
        return int(count or 0)

    async def finish(self, event_id: str, status: str) -> None:
        """decrypted, told (the sender was answered) or dropped; the ciphertext goes."""
        await self._db.execute(
            "UPDATE undecrypted SET status = $1, event = '', finished_at = $2 WHERE event_id = $3",
            status,
            int(time.time()),
            event_id,
        )

    async def told(self, room_id: str, sender: str, session_id: str) -> bool:
        """Whether this sender was already told, in this room, for this room key."""
        found = await self._db.fetchval(
            "SELECT 1 FROM undecrypted WHERE room_id = $1 AND sender = $2 AND session_id = $3 "
            "AND status = 'told' LIMIT 1",
            room_id,
            sender,
            session_id,
        )
        return found is not None


async def prune(q: Queries, before: int) -> int:
    """Finished rows older than `before` (the pending ones stay whatever their age)."""
    result = await q.execute(
        "DELETE FROM undecrypted WHERE status != 'pending' AND finished_at < $1", before
    )
    return result.rowcount
