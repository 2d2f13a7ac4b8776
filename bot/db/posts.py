"""What the bot's posts mean to reactions: each post's marks (`Message.marks`).

A mark is named after the reaction trigger it serves (`bot.commands.core.Reaction`)
and holds the values a reaction to the post hands its command: a 🔔 on a
post presenting sessions asks for reminders of them, a ✅ on a gazette
preview approves what it shows. Nothing here knows which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from bot.db.database import Database, Queries

Marks = Iterable[tuple[str, tuple[str, ...]]]


class PostMarks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, event_id: str, room_id: str, marks: Marks) -> None:
        """Remember what reactions to this post mean."""
        await _insert(self._db, event_id, room_id, marks, ignore=True)

    async def edited(self, event_id: str, room_id: str, marks: Marks) -> None:
        """The post was edited in place: reactions to it now mean what the edit says."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM post_marks WHERE event_id = $1 AND room_id = $2", event_id, room_id
            )
            await _insert(tx, event_id, room_id, marks, ignore=False)

    async def mark(self, event_id: str, room_id: str, name: str) -> tuple[str, ...]:
        """What a reaction of the trigger `name` to this post means (() : nothing,
        or not a post of the bot's)."""
        value = await self._db.fetchval(
            "SELECT value FROM post_marks WHERE event_id = $1 AND room_id = $2 AND name = $3",
            event_id,
            room_id,
            name,
        )
        return () if value is None else tuple(str(v) for v in json.loads(value))


async def _insert(q: Queries, event_id: str, room_id: str, marks: Marks, *, ignore: bool) -> None:
    verb = "INSERT OR IGNORE" if ignore else "INSERT"
    for name, values in marks:
        if values:
            await q.execute(
                verb + " INTO post_marks (event_id, room_id, name, value, posted_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                event_id,
                room_id,
                name,
                json.dumps(list(dict.fromkeys(values))),
                int(time.time()),
            )


async def prune(q: Queries, before: int) -> int:
    result = await q.execute("DELETE FROM post_marks WHERE posted_at < $1", before)
    return result.rowcount


async def move_room(q: Queries, old: str, new: str) -> int:
    """The records of posts in an upgraded room follow it to its replacement."""
    result = await q.execute("UPDATE post_marks SET room_id = $1 WHERE room_id = $2", new, old)
    return result.rowcount
