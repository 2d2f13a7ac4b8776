"""Rooms as they live: rooms the bot is alone in, room upgrades, and what
leaving or following a room does to the other tables, each in one transaction.

When the bot leaves a room (kicked, banned, alone too long) the room's
subscriptions end (audited), its pending posts are abandoned and direct rooms
pointing at it are forgotten together: a crash never leaves half of it.
An upgrade moves all of that to the replacement room, also at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from bot.db import outbox, personal, posts, subscriptions
from bot.db.database import Database, Queries, Row
from bot.db.outbox import Broadcast

UPGRADE_PENDING = "pending"
UPGRADE_MOVED = "moved"
# The replacement room does not name the old one as its predecessor.
UPGRADE_REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Ended:
    """What leaving a room ended."""

    kinds: list[str]  # subscriptions ended
    abandoned: int  # pending posts abandoned
    direct_users: list[str]  # people whose direct room it was


@dataclass(frozen=True, slots=True)
class Upgrade:
    old_room: str
    new_room: str
    sender: str
    status: str

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(row["old_room"], row["new_room"], row["sender"], row["status"])


@dataclass(frozen=True, slots=True)
class Moved:
    """What an upgrade moved to the replacement room."""

    kinds: list[str]
    posts: int  # pending posts re-queued there
    abandoned: int  # pending posts that could not follow
    direct_rooms: int
    notice: bool  # the "moved here" notice was queued


class RoomRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- leaving -----------------------------------------------------------------------

    async def end(self, room_id: str, actor: str, detail: str) -> Ended:
        """The bot is not in the room any more: end what it did there (idempotent)."""
        now = int(time.time())
        async with self._db.transaction() as tx:
            kinds = await subscriptions.end_all(tx, room_id, actor, detail, now)
            abandoned = await outbox.abandon_room(tx, room_id)
            users = await personal.forget_room(tx, room_id)
            await _not_alone(tx, room_id)
        return Ended(kinds, abandoned, users)

    async def forget_direct(self, user_id: str, room_id: str) -> int | None:
        """The person left their direct room: forgotten, its pending posts abandoned.

        None when it was not their direct room; else the posts abandoned.
        """
        async with self._db.transaction() as tx:
            if not await personal.forget_direct_room(tx, user_id, room_id):
                return None
            return await outbox.abandon_room(tx, room_id)

    async def rooms_in_use(self) -> set[str]:
        """Rooms something is kept for: subscriptions, direct rooms, pending posts."""
        rows = await self._db.fetch(
            "SELECT room_id FROM subscriptions UNION SELECT room_id FROM direct_rooms "
            "UNION SELECT room_id FROM outbox WHERE status = 'pending'"
        )
        return {str(r["room_id"]) for r in rows}

    # -- alone -------------------------------------------------------------------------

    async def alone_since(self) -> dict[str, int]:
        """Rooms where the bot is alone: since when (Unix time)."""
        rows = await self._db.fetch("SELECT room_id, since FROM alone_rooms")
        return {str(r["room_id"]): int(r["since"]) for r in rows}

    async def mark_alone(self, room_id: str, since: int) -> None:
        """Alone since `since`, unless already known alone (the earlier time stays)."""
        await self._db.execute(
            "INSERT OR IGNORE INTO alone_rooms (room_id, since) VALUES ($1, $2)", room_id, since
        )

    async def not_alone(self, room_id: str) -> None:
        await _not_alone(self._db, room_id)

    # -- upgrades ----------------------------------------------------------------------

    async def upgrade_seen(self, old: str, new: str, sender: str) -> Upgrade:
        """Record an upgrade; the record.

        Once: the first tombstone seen wins, unless it was refused and this
        one names another room (a real upgrade after a bogus tombstone).
        """
        await self._db.execute(
            "INSERT INTO room_upgrades (old_room, new_room, sender, seen_at) "
            "VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (old_room) DO UPDATE SET new_room = excluded.new_room, "
            "sender = excluded.sender, status = 'pending', seen_at = excluded.seen_at, "
            "moved_at = NULL "
            "WHERE room_upgrades.status = 'refused' "
            "AND room_upgrades.new_room <> excluded.new_room",
            old,
            new,
            sender,
            int(time.time()),
        )
        row = await self._db.fetchrow(
            "SELECT old_room, new_room, sender, status FROM room_upgrades WHERE old_room = $1", old
        )
        assert row is not None  # just inserted, or there before
        return Upgrade.from_row(row)

    async def pending_upgrades(self) -> list[Upgrade]:
        rows = await self._db.fetch(
            "SELECT old_room, new_room, sender, status FROM room_upgrades "
            "WHERE status = 'pending' ORDER BY seen_at"
        )
        return [Upgrade.from_row(r) for r in rows]

    async def moved_upgrades(self) -> dict[str, str]:
        """Old room → replacement room, for the upgrades the bot followed."""
        rows = await self._db.fetch(
            "SELECT old_room, new_room FROM room_upgrades WHERE status = 'moved'"
        )
        return {r["old_room"]: r["new_room"] for r in rows}

    async def refuse_upgrade(self, old: str) -> None:
        """The pending upgrade of `old` is not followed (nothing moves)."""
        await self._db.execute(
            "UPDATE room_upgrades SET status = 'refused' "
            "WHERE old_room = $1 AND status = 'pending'",
            old,
        )

    async def move(
        self,
        upgrade: Upgrade,
        txn_id: Callable[[str, str], str | None],
        notice: Broadcast,
    ) -> Moved | None:
        """Move the old room's subscriptions, pending posts, direct rooms and
        post records to the new room, and queue `notice` there if subscriptions
        moved. None if already done (a restart sees the tombstone again).

        `txn_id(broadcast, room)`: the transaction id of a stored broadcast's
        post to a room (None: it cannot be re-queued, it is abandoned).
        """
        old, new = upgrade.old_room, upgrade.new_room
        now = int(time.time())
        async with self._db.transaction() as tx:
            done = await tx.execute(
                "UPDATE room_upgrades SET status = 'moved', moved_at = $1 "
                "WHERE old_room = $2 AND status = 'pending'",
                now,
                old,
            )
            if done.rowcount == 0:
                return None
            kinds = await subscriptions.move_all(tx, old, new, upgrade.sender, now)
            requeued = abandoned = 0
            for item in await outbox.pending_in(tx, old):
                txn = txn_id(item.broadcast, new)
                if txn is not None and await outbox.move(tx, item.id, new, txn):
                    requeued += 1
                elif txn is None:
                    abandoned += await outbox.abandon(tx, item.id)
            direct = await personal.move_room(tx, old, new)
            await posts.move_room(tx, old, new)
            await _not_alone(tx, old)
            queued = bool(kinds) and await outbox.insert(tx, notice, new) == 1
        return Moved(kinds, requeued, abandoned, direct, queued)


async def _not_alone(q: Queries, room_id: str) -> None:
    await q.execute("DELETE FROM alone_rooms WHERE room_id = $1", room_id)
