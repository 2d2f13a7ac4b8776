"""Schema step 12: Edited commands: the inbox keeps each command's time and answer."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(12, "Edited commands: the inbox keeps each command's time and answer")
async def upgrade_v12(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- When the command was sent (origin_server_ts, ms): an edit counts only
    -- within `bot.edit_window` of it. NULL for rows of earlier versions.
    ALTER TABLE inbox ADD COLUMN sent_ms INTEGER;
    -- The bot's answer (a notice) that an edit of the command replaces;
    -- NULL when unanswered, or answered with a file (which cannot be edited).
    ALTER TABLE inbox ADD COLUMN answer_id TEXT;
    -- Set on an edit: the command it edits (the edit is its own inbox row,
    -- answered once like a command).
    ALTER TABLE inbox ADD COLUMN replaces TEXT;
    CREATE INDEX inbox_edits ON inbox (replaces) WHERE replaces IS NOT NULL;
    """,
    )
