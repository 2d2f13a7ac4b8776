"""Schema step 4: Subscriptions and the outbox of broadcasts; programme changes marked once
fanned out.
"""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(
    4, "Subscriptions and the outbox of broadcasts; programme changes marked once fanned out"
)
async def upgrade_v4(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Rooms that receive scheduled posts, by kind.
    CREATE TABLE subscriptions (
        room_id  TEXT NOT NULL,
        kind     TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, kind)
    );
    -- One row per (broadcast, room), with its transaction id, written before
    -- sending and marked after: a crash resends with the same id, which the
    -- homeserver deduplicates.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        broadcast  TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        txn_id     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at    INTEGER,
        UNIQUE (broadcast, room_id)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
    ALTER TABLE agenda_changes ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
    """,
    )
