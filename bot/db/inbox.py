"""The inbox: each command received, so that each is answered exactly once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from bot.db.database import Database, Row

# Answered commands are kept (without their text) this long to drop redeliveries.
INBOX_RETENTION_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class InboxItem:
    event_id: str
    room_id: str
    sender: str
    body: str
    thread_root: str | None
    received_at: int
    attempts: int
    direct: bool = False
    # Set for a command no one typed (a 🔔 reaction): its registered name;
    # `body` then holds its arguments.
    command: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["event_id"],
            row["room_id"],
            row["sender"],
            row["body"] or "",
            row["thread_root"],
            int(row["received_at"]),
            int(row["attempts"]),
            bool(row["direct"]),
            row["command"],
        )


class Inbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        event_id: str,
        room_id: str,
        sender: str,
        body: str,
        thread_root: str | None,
        now: float | None = None,
        *,
        direct: bool = False,
        command: str | None = None,
    ) -> bool:
        """Record a command; False when this event was already recorded (redelivery).

        The row counts one attempt already: the caller answers at once, and a
        crash during that first send must count like any other.
        """
        result = await self._db.execute(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, sender, body, thread_root, "
            "received_at, attempts, direct, command) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)",
            event_id,
            room_id,
            sender,
            body,
            thread_root,
            int(now or time.time()),
            direct,
            command,
        )
        return result.rowcount == 1

    async def pending(self) -> list[InboxItem]:
        rows = await self._db.fetch(
            "SELECT event_id, room_id, sender, body, thread_root, received_at, attempts, direct, "
            "command FROM inbox WHERE status = 'pending' ORDER BY received_at"
        )
        return [InboxItem.from_row(r) for r in rows]

    async def attempt(self, event_id: str) -> None:
        await self._db.execute(
            "UPDATE inbox SET attempts = attempts + 1 WHERE event_id = $1", event_id
        )

    async def finish(self, event_id: str, *, failed: bool = False) -> None:
        await self._db.execute(
            "UPDATE inbox SET status = $1, body = NULL, finished_at = $2 WHERE event_id = $3",
            "failed" if failed else "done",
            int(time.time()),
            event_id,
        )

    async def status(self, event_id: str) -> str | None:
        status = await self._db.fetchval("SELECT status FROM inbox WHERE event_id = $1", event_id)
        return None if status is None else str(status)

    async def prune(self, now: float | None = None) -> int:
        cutoff = int((now or time.time()) - INBOX_RETENTION_S)
        result = await self._db.execute(
            "DELETE FROM inbox WHERE status != 'pending' AND finished_at < $1", cutoff
        )
        return result.rowcount
