"""The bot's posts that present sessions: a 🔔 on one asks for reminders of them."""

from __future__ import annotations

import time
from collections.abc import Iterable

from bot.db.database import Database, Queries


class PostedSessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, event_id: str, room_id: str, sids: Iterable[str]) -> None:
        """Remember that this post presents these sessions (for 🔔 reactions)."""
        listed = " ".join(dict.fromkeys(sids))
        if not listed:
            return
        await self._db.execute(
            "INSERT OR IGNORE INTO posted_sessions (event_id, room_id, sids, posted_at) "
            "VALUES ($1, $2, $3, $4)",
            event_id,
            room_id,
            listed,
            int(time.time()),
        )

    async def edited(self, event_id: str, room_id: str, sids: Iterable[str]) -> None:
        """The post was edited in place: a 🔔 on it now means these sessions."""
        listed = " ".join(dict.fromkeys(sids))
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM posted_sessions WHERE event_id = $1 AND room_id = $2",
                event_id,
                room_id,
            )
            if listed:
                await tx.execute(
                    "INSERT INTO posted_sessions (event_id, room_id, sids, posted_at) "
                    "VALUES ($1, $2, $3, $4)",
                    event_id,
                    room_id,
                    listed,
                    int(time.time()),
                )

    async def sessions(self, event_id: str, room_id: str) -> list[str]:
        """The session ids a post of the bot presents ([] for any other event)."""
        sids = await self._db.fetchval(
            "SELECT sids FROM posted_sessions WHERE event_id = $1 AND room_id = $2",
            event_id,
            room_id,
        )
        return [] if sids is None else str(sids).split()


async def prune(q: Queries, before: int) -> int:
    result = await q.execute("DELETE FROM posted_sessions WHERE posted_at < $1", before)
    return result.rowcount


async def move_room(q: Queries, old: str, new: str) -> int:
    """The records of posts in an upgraded room follow it to its replacement."""
    result = await q.execute("UPDATE posted_sessions SET room_id = $1 WHERE room_id = $2", new, old)
    return result.rowcount
