"""Which rooms receive which scheduled posts, and the moderators' audit trail of it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from bot.db.database import Database, Queries, Row

# Subscription kinds (what a room receives), as stored.
REMINDERS = "rappels"
GAZETTE = "gazette"

# What the audit trail records (`subscription_audit.action`).
SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
# The room's subscriptions stopped without a moderator: the bot was kicked,
# banned, or left a room where it was alone. `detail` says which.
ENDED = "ended"
# The room was upgraded: the subscription went to the replacement room
# (recorded for both rooms, `detail` names the other).
MOVED = "moved"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    room_id: str
    kind: str
    action: str
    actor: str
    detail: str
    at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["room_id"], row["kind"], row["action"], row["actor"], row["detail"], int(row["at"])
        )


class Subscriptions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, room_id: str, kind: str, actor: str) -> bool:
        """False when the room was already subscribed."""
        now = int(time.time())
        async with self._db.transaction() as tx:
            result = await tx.execute(
                "INSERT OR IGNORE INTO subscriptions (room_id, kind, added_by, added_at) "
                "VALUES ($1, $2, $3, $4)",
                room_id,
                kind,
                actor,
                now,
            )
            if result.rowcount == 1:
                await audit(tx, room_id, kind, SUBSCRIBED, actor, "", now)
        return result.rowcount == 1

    async def remove(self, room_id: str, kind: str, actor: str = "") -> bool:
        now = int(time.time())
        async with self._db.transaction() as tx:
            result = await tx.execute(
                "DELETE FROM subscriptions WHERE room_id = $1 AND kind = $2", room_id, kind
            )
            if result.rowcount == 1:
                await audit(tx, room_id, kind, UNSUBSCRIBED, actor, "", now)
        return result.rowcount == 1

    async def kinds(self, room_id: str) -> list[str]:
        """What this room is subscribed to."""
        return await kinds(self._db, room_id)

    async def history(self, room_id: str | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first: of one room, or of every room."""
        columns = "SELECT room_id, kind, action, actor, detail, at FROM subscription_audit "
        if room_id is None:
            rows = await self._db.fetch(columns + "ORDER BY id")
        else:
            rows = await self._db.fetch(columns + "WHERE room_id = $1 ORDER BY id", room_id)
        return [AuditEntry.from_row(r) for r in rows]


async def rooms(q: Queries, kind: str) -> list[str]:
    """The rooms subscribed to `kind`, in subscription order."""
    rows = await q.fetch("SELECT room_id FROM subscriptions WHERE kind = $1 ORDER BY rowid", kind)
    return [str(r["room_id"]) for r in rows]


async def kinds(q: Queries, room_id: str) -> list[str]:
    rows = await q.fetch("SELECT kind FROM subscriptions WHERE room_id = $1 ORDER BY kind", room_id)
    return [str(r["kind"]) for r in rows]


async def audit(
    q: Queries, room_id: str, kind: str, action: str, actor: str, detail: str, at: int
) -> None:
    await q.execute(
        "INSERT INTO subscription_audit (room_id, kind, action, actor, detail, at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        room_id,
        kind,
        action,
        actor,
        detail,
        at,
    )


async def end_all(q: Queries, room_id: str, actor: str, detail: str, at: int) -> list[str]:
    """Every subscription of the room removed and audited as ended; their kinds."""
    ended = await kinds(q, room_id)
    for kind in ended:
        await audit(q, room_id, kind, ENDED, actor, detail, at)
    await q.execute("DELETE FROM subscriptions WHERE room_id = $1", room_id)
    return ended


async def move_all(q: Queries, old: str, new: str, actor: str, at: int) -> list[str]:
    """The old room's subscriptions moved to the new room (kept who added them); their kinds."""
    moved = await kinds(q, old)
    for kind in moved:
        await q.execute(
            "INSERT OR IGNORE INTO subscriptions (room_id, kind, added_by, added_at) "
            "SELECT $1, kind, added_by, added_at FROM subscriptions "
            "WHERE room_id = $2 AND kind = $3",
            new,
            old,
            kind,
        )
        await audit(q, old, kind, MOVED, actor, f"to {new}", at)
        await audit(q, new, kind, MOVED, actor, f"from {old}", at)
    await q.execute("DELETE FROM subscriptions WHERE room_id = $1", old)
    return moved
