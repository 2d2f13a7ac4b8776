"""Personal reminders (`!rappelle-moi`, 🔔), the direct room opened with each
person, and their personal calendar feed (`!mon-agenda`)."""

from __future__ import annotations

import hashlib
import secrets
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

    async def create_feed(self, user_id: str, now: float | None = None) -> str | None:
        """A new feed token for this person; None when they have one already.

        The token is shown once: only its hash is stored, so an existing
        link cannot be given again (`renew_feed` replaces it).
        """
        token = new_feed_token()
        result = await self._db.execute(
            "INSERT OR IGNORE INTO personal_feeds (user_id, token_hash, created_at) "
            "VALUES ($1, $2, $3)",
            user_id,
            feed_token_hash(token),
            int(now or time.time()),
        )
        return token if result.rowcount == 1 else None

    async def renew_feed(self, user_id: str, now: float | None = None) -> str:
        """A new feed token for this person, replacing theirs: the old link stops working."""
        token = new_feed_token()
        await self._db.execute(
            "INSERT INTO personal_feeds (user_id, token_hash, created_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (user_id) DO UPDATE "
            "SET token_hash = excluded.token_hash, created_at = excluded.created_at",
            user_id,
            feed_token_hash(token),
            int(now or time.time()),
        )
        return token

    async def feed_owner(self, token: str) -> str | None:
        """Whose feed this token (as found in the URL) opens, if anyone's."""
        # An index lookup of the hash: what its timing could tell is about the
        # hash, which says nothing of any other valid token.
        user_id = await self._db.fetchval(
            "SELECT user_id FROM personal_feeds WHERE token_hash = $1", feed_token_hash(token)
        )
        return None if user_id is None else str(user_id)

    async def feed_created(self, user_id: str) -> int | None:
        """When this person's current feed link was made (Unix seconds), if they have one."""
        created = await self._db.fetchval(
            "SELECT created_at FROM personal_feeds WHERE user_id = $1", user_id
        )
        return None if created is None else int(created)

    async def drop_feed(self, user_id: str) -> bool:
        return await drop_feed(self._db, user_id)


def new_feed_token() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def feed_token_hash(token: str) -> str:
    """What is stored of a feed token.

    A plain SHA-256 is enough: the token is 256 random bits, which no one can
    guess or brute-force, so the salted slow hashes made for low-entropy
    passwords would add nothing. A copy of the database then yields no
    working link.
    """
    return hashlib.sha256(token.encode()).hexdigest()


async def drop_feed(q: Queries, user_id: str) -> bool:
    """This person's feed link removed (it stops working); False if they had none."""
    result = await q.execute("DELETE FROM personal_feeds WHERE user_id = $1", user_id)
    return result.rowcount == 1


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
