"""Schema step 14: Rooms as they live: abandoned posts, the subscriptions' audit trail, empty
rooms, upgrades.
"""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(
    14, "Rooms as they live: abandoned posts, the subscriptions' audit trail, empty rooms, upgrades"
)
async def upgrade_v14(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- A post to a room the bot is no longer in is 'abandoned' (not 'failed':
    -- nothing was tried). SQLite cannot alter a CHECK: the table is rebuilt,
    -- ids kept (AUTOINCREMENT goes on from the largest).
    CREATE TABLE outbox_new (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        broadcast  TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        txn_id     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped', 'abandoned')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at    INTEGER,
        UNIQUE (broadcast, room_id)
    );
    INSERT INTO outbox_new (id, broadcast, room_id, txn_id, status, attempts, created_at, sent_at)
        SELECT id, broadcast, room_id, txn_id, status, attempts, created_at, sent_at FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
    CREATE INDEX outbox_room_pending ON outbox (room_id) WHERE status = 'pending';
    -- Who subscribed, unsubscribed, moved or ended a room's subscription, and
    -- when (a kick ends them: 'ended', detail 'kicked by @x'). For moderators.
    CREATE TABLE subscription_audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        room_id TEXT NOT NULL,
        kind    TEXT NOT NULL,
        action  TEXT NOT NULL,
        actor   TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '',
        at      INTEGER NOT NULL
    );
    CREATE INDEX subscription_audit_room ON subscription_audit (room_id, id);
    -- Rooms where no one but the bot is joined or invited, since when: kept
    -- across restarts so that the delay before leaving is not reset.
    CREATE TABLE alone_rooms (
        room_id TEXT PRIMARY KEY,
        since   INTEGER NOT NULL
    );
    -- Room upgrades (m.room.tombstone) seen: 'pending' until the bot is in the
    -- replacement room and has moved what belonged to the old one there.
    CREATE TABLE room_upgrades (
        old_room TEXT PRIMARY KEY,
        new_room TEXT NOT NULL,
        sender   TEXT NOT NULL,
        status   TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'moved')),
        seen_at  INTEGER NOT NULL,
        moved_at INTEGER
    );
    CREATE INDEX room_upgrades_new ON room_upgrades (new_room) WHERE status = 'pending';
    """,
    )
