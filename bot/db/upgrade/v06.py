"""Schema step 6: Personal reminders and the direct room opened with each person."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(6, "Personal reminders and the direct room opened with each person")
async def upgrade_v6(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Personal reminders: who asked for which session (id, title, start as
    -- asked), and the direct room the bot opened with them.
    CREATE TABLE personal_reminders (
        user_id    TEXT NOT NULL,
        sid        TEXT NOT NULL,
        title      TEXT NOT NULL,
        start      INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, sid)
    );
    CREATE TABLE direct_rooms (
        user_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL
    );
    """,
    )
