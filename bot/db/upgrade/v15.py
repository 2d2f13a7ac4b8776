"""Schema step 15: Each source's sessions as the last good refresh left them."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(15, "Each source's sessions as the last good refresh left them")
async def upgrade_v15(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The normalised sessions of each source (before moderators' edits), saved
    -- with the copy they come from: a start serves them without parsing.
    -- `sessions` is bot.agenda.packed (one JSON array per line); `params` says
    -- what they were computed with, to ignore them when that changed.
    CREATE TABLE agenda_sessions (
        source    TEXT PRIMARY KEY,
        params    TEXT NOT NULL,
        parsed_at INTEGER NOT NULL,
        sessions  BLOB NOT NULL
    );
    """,
    )
