"""The mentor directory: mentors, their topics, requests to become one, and the audit log.

The minimum is kept (Matrix ID, display name cache, topics, who added them
and when). Topics: a normalised key and the label as shown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from bot.db import personal
from bot.db.database import Database, Queries, Row

# Who a self-removed mentor becomes in the audit log (their ID is erased);
# the templates show it in the reader's language.
ERASED = ""


@dataclass(frozen=True, slots=True)
class MentorTopic:
    user_id: str
    display_name: str | None
    topic_key: str
    label: str
    added_by: str
    added_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["user_id"],
            row["display_name"],
            row["topic_key"],
            row["label"],
            row["added_by"],
            int(row["added_at"]),
        )


@dataclass(frozen=True, slots=True)
class MentorRequest:
    user_id: str
    topic_key: str
    label: str
    requested_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(row["user_id"], row["topic_key"], row["label"], int(row["requested_at"]))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str  # ERASED for a person who left the directory
    action: str
    target: str  # ERASED likewise
    detail: str
    at: int
    room_id: str = ""  # where the command was typed ("" before schema 19)

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["actor"],
            row["action"],
            row["target"],
            row["detail"],
            int(row["at"]),
            row["room_id"],
        )


@dataclass(frozen=True, slots=True)
class Erased:
    """What `erase_self` removed: topics and requests, and whether a feed link."""

    entries: int
    feed: bool


class MentorDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        user_id: str,
        display_name: str | None,
        topics: list[tuple[str, str]],
        actor: str,
        action: str = "add",
        *,
        room: str = "",
    ) -> int:
        """Give a mentor topics (key, label); returns how many were new. Audited."""
        now = int(time.time())
        added = 0
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO mentors (user_id, display_name) VALUES ($1, $2) "
                "ON CONFLICT (user_id) "
                "DO UPDATE SET display_name = COALESCE(excluded.display_name, display_name)",
                user_id,
                display_name,
            )
            for key, label in topics:
                result = await tx.execute(
                    "INSERT OR IGNORE INTO mentor_topics "
                    "(user_id, topic_key, label, added_by, added_at) VALUES ($1, $2, $3, $4, $5)",
                    user_id,
                    key,
                    label,
                    actor,
                    now,
                )
                added += result.rowcount
                await tx.execute(
                    "DELETE FROM mentor_requests WHERE user_id = $1 AND topic_key = $2",
                    user_id,
                    key,
                )
            labels = ", ".join(label for _, label in topics)
            await _audit(tx, actor, action, user_id, labels, now, room)
        return added

    async def remove(
        self, user_id: str, topic_key: str | None, actor: str, *, room: str = ""
    ) -> int:
        """Remove a mentor's topic (or all); returns topics removed. Audited."""
        async with self._db.transaction() as tx:
            if topic_key is None:
                result = await tx.execute("DELETE FROM mentor_topics WHERE user_id = $1", user_id)
            else:
                result = await tx.execute(
                    "DELETE FROM mentor_topics WHERE user_id = $1 AND topic_key = $2",
                    user_id,
                    topic_key,
                )
            await tx.execute(
                "DELETE FROM mentors WHERE user_id = $1 AND NOT EXISTS "
                "(SELECT 1 FROM mentor_topics WHERE mentor_topics.user_id = mentors.user_id)",
                user_id,
            )
            await _audit(tx, actor, "remove", user_id, topic_key or "*", int(time.time()), room)
        return result.rowcount

    async def erase_self(self, user_id: str) -> Erased:
        """Everything the directory holds about this person goes, and their
        personal calendar link; the audit keeps the facts, not the ID.

        Their personal reminders stay: asked for apart from the directory,
        they are cancelled with `!oublie`.
        """
        async with self._db.transaction() as tx:
            topics = await tx.execute("DELETE FROM mentor_topics WHERE user_id = $1", user_id)
            requests = await tx.execute("DELETE FROM mentor_requests WHERE user_id = $1", user_id)
            await tx.execute("DELETE FROM mentors WHERE user_id = $1", user_id)
            await tx.execute(
                "UPDATE mentor_audit SET target = $1 WHERE target = $2", ERASED, user_id
            )
            await tx.execute("UPDATE mentor_audit SET actor = $1 WHERE actor = $2", ERASED, user_id)
            # A moderator who added other mentors: their topics stay, not who added them.
            await tx.execute(
                "UPDATE mentor_topics SET added_by = $1 WHERE added_by = $2", ERASED, user_id
            )
            await _audit(tx, ERASED, "erase-self", ERASED, "", int(time.time()))
            feed = await personal.drop_feed(tx, user_id)
        return Erased(topics.rowcount + requests.rowcount, feed)

    async def request(self, user_id: str, topics: list[tuple[str, str]]) -> int:
        """Ask to mentor topics (key, label) not held yet; returns requests added."""
        now = int(time.time())
        added = 0
        async with self._db.transaction() as tx:
            for key, label in topics:
                result = await tx.execute(
                    "INSERT OR IGNORE INTO mentor_requests (user_id, topic_key, label, "
                    "requested_at) SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM "
                    "mentor_topics WHERE user_id = $1 AND topic_key = $2)",
                    user_id,
                    key,
                    label,
                    now,
                )
                added += result.rowcount
        return added

    async def requests(self, user_id: str | None = None) -> list[MentorRequest]:
        if user_id is None:
            rows = await self._db.fetch(
                "SELECT user_id, topic_key, label, requested_at FROM mentor_requests "
                "ORDER BY requested_at, user_id, rowid"
            )
        else:
            rows = await self._db.fetch(
                "SELECT user_id, topic_key, label, requested_at FROM mentor_requests "
                "WHERE user_id = $1 ORDER BY requested_at, user_id, rowid",
                user_id,
            )
        return [MentorRequest.from_row(r) for r in rows]

    async def topics(
        self, *, user_id: str | None = None, topic_key: str | None = None
    ) -> list[MentorTopic]:
        """Topics with their mentor, by topic then name; of one mentor and/or one topic."""
        # NULL matches everything: one query for the four combinations.
        rows = await self._db.fetch(
            "SELECT t.user_id, m.display_name, t.topic_key, t.label, t.added_by, t.added_at "
            "FROM mentor_topics t JOIN mentors m ON m.user_id = t.user_id "
            "WHERE ($1 IS NULL OR t.user_id = $1) AND ($2 IS NULL OR t.topic_key = $2) "
            "ORDER BY t.topic_key, COALESCE(m.display_name, t.user_id)",
            user_id,
            topic_key,
        )
        return [MentorTopic.from_row(r) for r in rows]

    async def audit(self, limit: int = 20) -> list[AuditEntry]:
        """The most recent entries of the audit log first."""
        rows = await self._db.fetch(
            "SELECT actor, action, target, detail, at, room_id FROM mentor_audit "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [AuditEntry.from_row(r) for r in rows]


async def _audit(
    q: Queries, actor: str, action: str, target: str, detail: str, at: int, room: str = ""
) -> None:
    await q.execute(
        "INSERT INTO mentor_audit (actor, action, target, detail, at, room_id) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        actor,
        action,
        target,
        detail,
        at,
        room,
    )
