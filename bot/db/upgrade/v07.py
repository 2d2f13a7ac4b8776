"""Schema step 7: The bot's posts presenting sessions (for 🔔); commands answered in the direct
room.
"""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(
    7, "The bot's posts presenting sessions (for 🔔); commands answered in the direct room"
)
async def upgrade_v7(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The bot's posts that present sessions (answers, reminders): a 🔔
    -- reaction to one asks for personal reminders of these sessions.
    CREATE TABLE posted_sessions (
        event_id  TEXT PRIMARY KEY,
        room_id   TEXT NOT NULL,
        sids      TEXT NOT NULL,
        posted_at INTEGER NOT NULL
    );
    -- A command to answer in the sender's direct room (a 🔔 reaction).
    ALTER TABLE inbox ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
    """,
    )
