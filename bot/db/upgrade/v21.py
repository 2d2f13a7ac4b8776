"""Schema step 21: Room upgrades the bot refused to follow (the new room is not a successor)."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(21, "Room upgrades the bot refused to follow (the new room is not a successor)")
async def upgrade_v21(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- 'refused': the replacement room's m.room.create does not name the old
    -- room as its predecessor; nothing was moved (kept so that a restart,
    -- which shows the tombstone again, does not try again). SQLite cannot
    -- alter a CHECK: the table is rebuilt (its index goes with the old one).
    CREATE TABLE room_upgrades_v21 (
        old_room TEXT PRIMARY KEY,
        new_room TEXT NOT NULL,
        sender   TEXT NOT NULL,
        status   TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'moved', 'refused')),
        seen_at  INTEGER NOT NULL,
        moved_at INTEGER
    );
    INSERT INTO room_upgrades_v21 (old_room, new_room, sender, status, seen_at, moved_at)
        SELECT old_room, new_room, sender, status, seen_at, moved_at FROM room_upgrades;
    DROP TABLE room_upgrades;
    ALTER TABLE room_upgrades_v21 RENAME TO room_upgrades;
    CREATE INDEX room_upgrades_new ON room_upgrades (new_room) WHERE status = 'pending';
    """,
    )
