"""Personal reminders (`!rappelle-moi`, 🔔) and the direct room opened with each person."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from bot.db.database import Database, Queries, Row


@dataclass(frozen=True, slots=True)
class PersonalReminder:
    user_id: str
    sid: str
    title: str
    start: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(row["user_id"], row["sid"], row["title"], int(row["start"]))


class PersonalReminders:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, user_id: str, sid: str, title: str, start: int, *, via: str | None = None
    ) -> bool:
        """`via`: the 🔔 reaction that asked for it, if any."""
        result = await self._db.execute(
            "INSERT OR IGNORE INTO personal_reminders (user_id, sid, title, start, "
            "created_at, via) VALUES ($1, $2, $3, $4, $5, $6)",
            user_id,
            sid,
            title,
            start,
            int(time.time()),
            via,
        )
        return result.rowcount == 1

    async def via(self, user_id: str, via: str) -> list[str]:
        """Session ids of this person's reminders asked for by the reaction `via`."""
        rows = await self._db.fetch(
            "SELECT sid FROM personal_reminders WHERE user_id = $1 AND via = $2 ORDER BY start",
            user_id,
            via,
        )
        return [str(r["sid"]) for r in rows]

    async def remove(self, user_id: str, sid: str) -> bool:
        result = await self._db.execute(
            "DELETE FROM personal_reminders WHERE user_id = $1 AND sid = $2", user_id, sid
        )
        return result.rowcount == 1

    async def reminders(self, user_id: str | None = None) -> list[PersonalReminder]:
        """Everyone's reminders, or one person's, by start."""
        if user_id is None:
            rows = await self._db.fetch(
                "SELECT user_id, sid, title, start FROM personal_reminders ORDER BY start"
            )
        else:
            rows = await self._db.fetch(
                "SELECT user_id, sid, title, start FROM personal_reminders WHERE user_id = $1 "
                "ORDER BY start",
                user_id,
            )
        return [PersonalReminder.from_row(r) for r in rows]

    async def direct_room(self, user_id: str) -> str | None:
        room_id = await self._db.fetchval(
            "SELECT room_id FROM direct_rooms WHERE user_id = $1", user_id
        )
        return None if room_id is None else str(room_id)

    async def set_direct_room(self, user_id: str, room_id: str) -> None:
        await self._db.execute(
            "INSERT INTO direct_rooms (user_id, room_id) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
            user_id,
            room_id,
        )


async def forget_direct_room(q: Queries, user_id: str, room_id: str) -> bool:
    """The person's direct room forgotten, if it is this one (they left it)."""
    result = await q.execute(
        "DELETE FROM direct_rooms WHERE user_id = $1 AND room_id = $2", user_id, room_id
    )
    return result.rowcount == 1


async def forget_room(q: Queries, room_id: str) -> list[str]:
    """Whoever had this room as their direct room forgets it; who they were."""
    rows = await q.fetch("SELECT user_id FROM direct_rooms WHERE room_id = $1", room_id)
    await q.execute("DELETE FROM direct_rooms WHERE room_id = $1", room_id)
    return [str(r["user_id"]) for r in rows]


async def move_room(q: Queries, old: str, new: str) -> int:
    """Direct rooms upgraded: the replacement is the direct room now."""
    result = await q.execute("UPDATE direct_rooms SET room_id = $1 WHERE room_id = $2", new, old)
    return result.rowcount
